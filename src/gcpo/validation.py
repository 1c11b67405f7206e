"""Input checks shared by the core modules (signals, weighting, advantages).

Every core function converts its tensor arguments with these, so bad input raises the same
``ValueError`` everywhere: it names the argument and the shape or value found.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

__all__ = [
    "shape_of",
    "as_tensor",
    "float_tensor",
    "check_mask",
    "completion_weights",
    "unit_rows",
]


def shape_of(x: Any) -> str:
    return str(tuple(x.shape)) if hasattr(x, "shape") else type(x).__name__


def as_tensor(x: Any, name: str) -> torch.Tensor:
    """Tensor view of ``x`` (torch tensor, numpy array or nested list), detached."""
    if isinstance(x, torch.Tensor):
        return x.detach()
    if isinstance(x, np.ndarray):
        if x.dtype == object:
            raise ValueError(f"{name}: expected a numeric array, got dtype object")
        return torch.from_numpy(np.ascontiguousarray(x))
    if isinstance(x, (list, tuple)):
        try:
            return torch.as_tensor(x)
        except (TypeError, ValueError, RuntimeError) as exc:
            raise ValueError(f"{name}: cannot convert to a tensor ({exc})") from None
    raise ValueError(f"{name}: expected a torch tensor or numpy array, got {type(x).__name__}")


def float_tensor(x: Any, name: str, ndim: int) -> torch.Tensor:
    """Finite floating tensor with ``ndim`` dims (ints/bools are promoted to float32)."""
    t = as_tensor(x, name)
    if t.dim() != ndim:
        raise ValueError(f"{name}: expected {ndim} dims, got shape {shape_of(t)}")
    if t.is_complex():
        raise ValueError(f"{name}: expected real values, got dtype {t.dtype}")
    if not t.is_floating_point():
        t = t.to(torch.float32)
    if not bool(torch.isfinite(t).all()):
        bad = t[~torch.isfinite(t)].flatten()[0].item()
        raise ValueError(f"{name}: contains a non-finite value ({bad}) in shape {shape_of(t)}")
    return t


def check_mask(mask: Any, shape: tuple[int, int], device: torch.device) -> torch.Tensor:
    """Bool ``mask[B, G]`` (all True when None)."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    m = as_tensor(mask, "mask")
    if tuple(m.shape) != tuple(shape):
        raise ValueError(f"mask: expected shape {tuple(shape)}, got {shape_of(m)}")
    if m.dtype != torch.bool:
        if m.is_floating_point() or m.is_complex():
            raise ValueError(f"mask: expected a bool tensor, got dtype {m.dtype}")
        if bool(((m != 0) & (m != 1)).any()):
            raise ValueError(f"mask: expected bool (or 0/1) values, got dtype {m.dtype}")
        m = m != 0
    return m.to(device)


def completion_weights(
    weights: Any, mask: torch.Tensor, dtype: torch.dtype, name: str = "weights"
) -> torch.Tensor:
    """Normalised completion weights ``w[B, G]``: uniform over valid members by default.

    Explicit weights must be finite and >= 0; they are renormalised over the valid members.
    Masked entries get weight 0; an all-masked group gets all zeros.
    """
    valid = mask.to(dtype)
    if weights is None:
        w = valid
    else:
        w = float_tensor(weights, name, 2).to(dtype=dtype, device=mask.device)
        if tuple(w.shape) != tuple(mask.shape):
            raise ValueError(f"{name}: expected shape {tuple(mask.shape)}, got {shape_of(w)}")
        if bool((w < 0).any()):
            raise ValueError(f"{name}: must be >= 0, got minimum {w.min().item()}")
        w = w * valid
        zero = (w.sum(dim=1) <= 0) & mask.any(dim=1)
        if bool(zero.any()):
            b = int(torch.nonzero(zero)[0, 0])
            raise ValueError(f"{name}: group {b} has zero total weight over its valid members")
    total = w.sum(dim=1, keepdim=True)
    return torch.where(total > 0, w / total.clamp_min(torch.finfo(dtype).tiny), torch.zeros_like(w))


def unit_rows(x: torch.Tensor) -> torch.Tensor:
    """Rows scaled to unit L2 norm; all-zero rows stay zero (an empty completion's embedding)."""
    norm = torch.linalg.vector_norm(x, dim=-1, keepdim=True)
    return torch.where(norm > 0, x / norm.clamp_min(torch.finfo(x.dtype).tiny), torch.zeros_like(x))
