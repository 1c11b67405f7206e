"""Seeded, memory-bounded random projection of gradient vectors (CountSketch).

Projecting millions of gradient coordinates to ``k`` dimensions with a dense Gaussian matrix
would need a ``P x k`` matrix (14 G numbers for one SmolLM2 block at k = 4096) or regenerating it
for every vector. A CountSketch (Clarkson-Woodruff; the sparse Johnson-Lindenstrauss transform
with one non-zero per column) needs only one bucket index and one sign per coordinate and costs
O(P) per vector:

    (S x)_j = sum_{p : h(p) = j} s(p) x_p,      h(p) uniform in [0, k), s(p) uniform in {-1, +1}

Norm preservation (the tolerance the tests check): for any fixed vector x,
``E ||S x||^2 = ||x||^2`` and ``Var ||S x||^2 = (2/k) (||x||^4 - sum_p x_p^4) <= 2 ||x||^4 / k``,
so the relative error of a squared norm has standard deviation at most ``sqrt(2/k)``
(2.2 % at k = 4096; the same as a dense Gaussian JL projection), and by Chebyshev it exceeds
``sqrt(2 / (k delta))`` with probability at most ``delta``. Because S is linear, the same
tolerance applies to every quantity the diagnostics compute from projected gradients
(``||g_i - g_bar||^2`` and ``||g_bar||^2``, hence V and NSR).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

__all__ = ["CountSketch"]


class CountSketch:
    """A fixed random CountSketch from parameter tensors of the given sizes to ``dim`` numbers.

    The hash and signs are drawn once from ``torch.Generator().manual_seed(seed)``, one block per
    parameter, so the same (sizes, dim, seed) always gives the same projection. Memory: 5 bytes
    per projected coordinate (int32 bucket + int8 sign), never a dense matrix.
    """

    def __init__(self, sizes: Sequence[int], dim: int, seed: int = 0) -> None:
        if dim < 1:
            raise ValueError(f"dim must be >= 1, got {dim}")
        if not sizes or any(int(n) < 1 for n in sizes):
            raise ValueError(f"sizes must be a non-empty list of positive ints, got {list(sizes)}")
        self.dim = int(dim)
        self.seed = int(seed)
        self.sizes = [int(n) for n in sizes]
        gen = torch.Generator().manual_seed(self.seed)
        self._buckets: list[torch.Tensor] = []
        self._signs: list[torch.Tensor] = []
        for n in self.sizes:
            self._buckets.append(torch.randint(0, self.dim, (n,), generator=gen, dtype=torch.int32))
            self._signs.append(torch.randint(0, 2, (n,), generator=gen, dtype=torch.int8) * 2 - 1)

    @property
    def input_dim(self) -> int:
        return sum(self.sizes)

    def project_parts(self, parts: Sequence[torch.Tensor]) -> torch.Tensor:
        """Project one vector given as per-parameter pieces (any shapes) -> ``[dim]`` float32."""
        if len(parts) != len(self.sizes):
            raise ValueError(f"parts: expected {len(self.sizes)} tensors, got {len(parts)}")
        out = torch.zeros(self.dim, dtype=torch.float32)
        for i, (part, bucket, sign) in enumerate(
            zip(parts, self._buckets, self._signs, strict=True)
        ):
            flat = part.detach().reshape(-1).to(torch.float32).cpu()
            if flat.numel() != bucket.numel():
                raise ValueError(
                    f"parts[{i}]: expected {bucket.numel()} elements, got {flat.numel()}"
                )
            out.index_add_(0, bucket.long(), flat * sign)
        return out

    def project(self, x: torch.Tensor) -> torch.Tensor:
        """Project flat vectors ``x[..., P]`` (P = sum of sizes) -> ``[..., dim]``."""
        x = torch.as_tensor(x, dtype=torch.float32)
        if x.shape[-1] != self.input_dim:
            raise ValueError(f"x: last dim must be {self.input_dim}, got shape {tuple(x.shape)}")
        lead = x.shape[:-1]
        flat = x.reshape(-1, self.input_dim)
        bucket = torch.cat(self._buckets).long()
        sign = torch.cat(self._signs).to(torch.float32)
        out = torch.zeros(flat.shape[0], self.dim, dtype=torch.float32)
        out.index_add_(1, bucket, flat * sign)
        return out.reshape(*lead, self.dim)
