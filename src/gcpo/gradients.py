"""Per-completion policy gradients on a parameter subset, and their CountSketch projection.

The gradient machinery shared by ``gcpo analyze`` (:mod:`gcpo.diagnostics`) and the trainer's
oracle signal / live monitor (:mod:`gcpo.trl`): parameter selection, ``frozen_except``,
:func:`completion_gradients` and :class:`CountSketch` (docs/design.md section 8). Glue above the
core: it runs a model (torch only, no training framework), and the core's ``grad_nsr`` signal
consumes what it computes.

Gradients. For completion i of a group, ``g_i = A_i * grad_theta l_i`` where ``l_i`` is the
length-normalised sequence log-likelihood (mean log-prob of the completion tokens given the
prompt; objective ``mean``, the default) or the sequence log-probability itself (their sum;
objective ``sum``), and ``theta`` is a chosen parameter subset. With ``mean``, a long
completion's gradient is an average over more tokens, so V depends on completion length by
construction; ``sum`` weights every token alike (the REINFORCE gradient of the sequence), which
separates that length effect. Each completion gets its own forward and backward pass (batch of
one): for small G on CPU this is cheaper than a batched forward with G backward passes, whose
cost is quadratic in G, and it needs no padding, so l_i is exactly the single-sequence value.
Everything outside the subset is frozen for the duration, so autograd records (and
back-propagates through) only the layers from the subset onwards.

Projection (CountSketch).
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

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import ClassVar

import torch
from torch import nn

from gcpo.fields import ConfigError, field, validate

__all__ = [
    "CountSketch",
    "GradientConfig",
    "GradientProbe",
    "DEFAULT_PROJECT_DIM",
    "unpadded_sequences",
    "PARAM_SUBSETS",
    "OBJECTIVES",
    "select_parameters",
    "frozen_except",
    "CompletionGradients",
    "completion_gradients",
]

PARAM_SUBSETS = ("last-block", "lm_head", "all")
OBJECTIVES = ("mean", "sum")


def _transformer_blocks(model: nn.Module) -> tuple[str, nn.ModuleList]:
    """The ModuleList of repeated transformer blocks: the one holding the most parameters."""
    best: tuple[str, nn.ModuleList] | None = None
    best_size = -1
    for name, module in model.named_modules():
        if not isinstance(module, nn.ModuleList) or len(module) < 1:
            continue
        if len({type(m) for m in module}) != 1:
            continue
        size = sum(p.numel() for p in module.parameters())
        if size > best_size:
            best, best_size = (name, module), size
    if best is None:
        raise ValueError(
            f"model {type(model).__name__}: found no ModuleList of transformer blocks; "
            "pass a parameter-name regex instead of 'last-block'"
        )
    return best


def select_parameters(model: nn.Module, spec: str = "last-block") -> list[tuple[str, nn.Parameter]]:
    """Named parameters of a subset: ``last-block`` (default), ``lm_head``, ``all``, or a regex.

    ``last-block`` is the last element of the model's transformer-block ModuleList (for HF Llama:
    ``model.layers.<L-1>``). ``lm_head`` is the output embedding matrix (tied to the input
    embedding in SmolLM2, in which case its gradient includes the embedding-lookup part, which is
    the true gradient of that shared parameter). Anything else is a regular expression searched
    in the parameter names (``re.search``).
    """
    named = list(model.named_parameters())
    if spec == "all":
        chosen = named
    elif spec == "last-block":
        prefix, blocks = _transformer_blocks(model)
        last = f"{prefix}.{len(blocks) - 1}." if prefix else f"{len(blocks) - 1}."
        chosen = [(n, p) for n, p in named if n.startswith(last)]
    elif spec == "lm_head":
        getter = getattr(model, "get_output_embeddings", None)
        head = getter() if callable(getter) else None
        weight = getattr(head, "weight", None)
        if not isinstance(weight, torch.Tensor):
            raise ValueError(
                f"params='lm_head': model {type(model).__name__} has no output embedding"
            )
        chosen = [(n, p) for n, p in named if p is weight]
        if not chosen and isinstance(weight, nn.Parameter):  # registered under another name only
            chosen = [("lm_head.weight", weight)]
    else:
        try:
            pattern = re.compile(spec)
        except re.error as exc:
            raise ValueError(
                f"params={spec!r} is neither one of {PARAM_SUBSETS} nor a valid regex: {exc}"
            ) from None
        chosen = [(n, p) for n, p in named if pattern.search(n)]
    if not chosen:
        examples = ", ".join(n for n, _ in named[:5])
        raise ValueError(
            f"params={spec!r} matches no parameter of {type(model).__name__} "
            f"(allowed: {', '.join(PARAM_SUBSETS)} or a regex; names look like: {examples}, ...)"
        )
    return chosen


@contextmanager
def frozen_except(model: nn.Module, params: Sequence[nn.Parameter]) -> Iterator[None]:
    """Temporarily set ``requires_grad`` only on ``params``; restore every flag afterwards."""
    keep = {id(p) for p in params}
    saved = [(p, p.requires_grad) for p in model.parameters()]
    try:
        for p in model.parameters():
            p.requires_grad_(id(p) in keep)
        for p in params:  # parameters not registered on ``model`` (e.g. a tied head)
            p.requires_grad_(True)
        yield
    finally:
        for p, flag in saved:
            p.requires_grad_(flag)


@dataclass
class CompletionGradients:
    """Per-completion results for one group (G completions).

    grads: ``[G, P]`` (exact, P = subset size) or ``[G, k]`` (projected) float32, g_i = A_i grad l_i.
    mean_logprob: ``[G]`` mean completion-token log-prob (0 for an empty completion), whatever
      the objective.
    mean_entropy: ``[G]`` mean next-token entropy over the completion tokens, in nats.
    num_tokens: ``[G]`` completion lengths.
    """

    grads: torch.Tensor
    mean_logprob: torch.Tensor
    mean_entropy: torch.Tensor
    num_tokens: torch.Tensor


def completion_gradients(
    model: nn.Module,
    params: Sequence[nn.Parameter],
    sequences: Sequence[torch.Tensor],
    prompt_lengths: Sequence[int],
    coefficients: torch.Tensor | Sequence[float],
    *,
    sketch: CountSketch | None = None,
    temperature: float = 1.0,
    skip_zero: bool = False,
    objective: str = "mean",
) -> CompletionGradients:
    """Gradients ``g_i = c_i * grad_params l_i`` for each sequence, one forward/backward each.

    sequences: G tensors ``[T_i]`` of token ids, prompt followed by completion.
    prompt_lengths: G ints; tokens at positions >= prompt_lengths[i] are the completion.
    coefficients: ``[G]`` c_i (the advantages A_i). A zero coefficient skips the backward pass.
    sketch: optional CountSketch over ``[p.numel() for p in params]``; the result is then ``[G, k]``.
    temperature: the sampling temperature; log-probs are taken from ``logits / temperature``.
    skip_zero: also skip the forward pass of zero-coefficient sequences (their gradient is 0;
      their mean_logprob / mean_entropy are then reported as 0). Saves the whole cost of a
      group whose rewards are all equal.
    objective: ``mean`` (l_i = mean token log-prob) or ``sum`` (l_i = sequence log-prob).
    """
    coeffs = torch.as_tensor(coefficients, dtype=torch.float32).reshape(-1)
    g = len(sequences)
    if len(prompt_lengths) != g or coeffs.numel() != g:
        raise ValueError(
            f"sequences ({g}), prompt_lengths ({len(prompt_lengths)}) and coefficients "
            f"({coeffs.numel()}) must have the same length"
        )
    if not torch.isfinite(coeffs).all():
        raise ValueError(f"coefficients must be finite, got {coeffs.tolist()}")
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if objective not in OBJECTIVES:
        raise ValueError(f"objective: got {objective!r}, allowed: {', '.join(OBJECTIVES)}")
    params = list(params)
    sizes = [p.numel() for p in params]
    if sketch is not None and sketch.sizes != sizes:
        raise ValueError(
            f"sketch was built for sizes {sketch.sizes[:4]}..., params have {sizes[:4]}..."
        )
    width = sketch.dim if sketch is not None else sum(sizes)
    grads = torch.zeros(g, width, dtype=torch.float32)
    logprob = torch.zeros(g)
    entropy = torch.zeros(g)
    ntok = torch.zeros(g, dtype=torch.long)
    device = next(iter(model.parameters())).device
    was_training = model.training
    model.eval()
    try:
        with frozen_except(model, params):
            for i, (seq, plen) in enumerate(zip(sequences, prompt_lengths, strict=True)):
                seq = torch.as_tensor(seq, dtype=torch.long).reshape(-1)
                if not 1 <= plen <= seq.numel():
                    raise ValueError(
                        f"prompt_lengths[{i}]={plen} must be in [1, {seq.numel()}] (sequence length)"
                    )
                n = seq.numel() - plen
                ntok[i] = n
                if n == 0:
                    continue
                need_grad = bool(coeffs[i] != 0)
                if skip_zero and not need_grad:
                    continue
                with torch.set_grad_enabled(need_grad):
                    logits = model(input_ids=seq[None].to(device)).logits[0, plen - 1 : -1]
                    logp_all = torch.log_softmax(logits.float() / temperature, dim=-1)
                    targets = seq[plen:].to(device)
                    token_logp = logp_all.gather(-1, targets[:, None])
                    l_i = token_logp.sum() if objective == "sum" else token_logp.mean()
                logprob[i] = token_logp.detach().mean().cpu()
                with torch.no_grad():
                    entropy[i] = -(logp_all.exp() * logp_all).sum(-1).mean().cpu()
                if not need_grad:
                    continue
                raw = torch.autograd.grad(coeffs[i].to(device) * l_i, params, allow_unused=True)
                parts = [
                    torch.zeros_like(p) if d is None else d
                    for p, d in zip(params, raw, strict=True)
                ]
                if sketch is not None:
                    grads[i] = sketch.project_parts(parts)
                else:
                    grads[i] = torch.cat([d.detach().reshape(-1).float().cpu() for d in parts])
    finally:
        model.train(was_training)
    return CompletionGradients(
        grads=grads, mean_logprob=logprob, mean_entropy=entropy, num_tokens=ntok
    )


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


# --------------------------------------------------------------------------------------------
# During training: the same gradients, for the grad_nsr oracle and the live monitor
# --------------------------------------------------------------------------------------------

#: CountSketch dimension of the trainer's per-completion gradients (0 = exact). Exact gradients
#: of one SmolLM2-135M block are 3.5 M floats per completion (14 MB, gathered over processes,
#: and 28 MB in the float64 NSR); at k = 4096 each squared norm, hence V and ||g_bar||^2, keeps a
#: relative standard deviation of at most sqrt(2/k) = 2.2 %, far below the spread of NSR across
#: groups that rank normalisation sees.
DEFAULT_PROJECT_DIM = 4096


@dataclass
class GradientConfig:
    """Which per-completion policy gradients a trainer measures (``grad_nsr``, the monitor).

    ``gradients: lm_head`` (a plain value) sets ``params``.
    """

    config_shorthand: ClassVar[str] = "params"

    params: str = field(
        "last-block",
        help="parameter subset of the per-completion gradients: last-block, lm_head, all, or a "
        "parameter-name regex (as gcpo analyze --params)",
    )
    project_dim: int = field(
        DEFAULT_PROJECT_DIM,
        help="CountSketch the per-completion gradients to this many dims (0 = exact; squared "
        "norms keep a relative std <= sqrt(2/k), 2.2 % at 4096)",
        min=0,
    )
    seed: int = field(0, help="seed of the CountSketch projection")
    objective: str = field(
        "mean",
        help="l_i whose gradient is taken: 'mean' (per-token mean log-prob, GRPO's objective) or "
        "'sum' (sequence log-prob)",
        choices=OBJECTIVES,
    )

    def __post_init__(self) -> None:
        validate(self)
        if isinstance(self.params, str) and self.params not in PARAM_SUBSETS:
            try:
                re.compile(self.params)
            except re.error as exc:
                raise ConfigError(
                    f"params: {self.params!r} is neither one of {', '.join(PARAM_SUBSETS)} nor a "
                    f"valid regex ({exc})"
                ) from None


def unpadded_sequences(
    prompt_ids: torch.Tensor,
    prompt_mask: torch.Tensor,
    completion_ids: torch.Tensor,
    lengths: Sequence[int],
    rows: Sequence[int],
) -> tuple[list[torch.Tensor], list[int]]:
    """The token sequences (prompt without padding + the completion's real tokens) of ``rows``
    of a padded batch, and their prompt lengths, as :func:`completion_gradients` takes them."""
    seqs: list[torch.Tensor] = []
    plens: list[int] = []
    for i in rows:
        prompt = prompt_ids[i][prompt_mask[i].bool()].cpu()
        seqs.append(torch.cat([prompt, completion_ids[i, : int(lengths[i])].cpu()]))
        plens.append(int(prompt.numel()))
    return seqs, plens


class GradientProbe:
    """Per-completion gradients ``g_i = A_i * grad l_i`` of one model under a
    :class:`GradientConfig`; the parameter subset and the CountSketch are built on first use.

    Needs whole parameters on the calling process: sharded ones (DeepSpeed ZeRO-3, FSDP) are
    refused with one clear error.
    """

    def __init__(self, model: nn.Module, config: GradientConfig | None = None) -> None:
        self.model = model
        self.config = config or GradientConfig()
        self._params: list[nn.Parameter] | None = None
        self._sketch: CountSketch | None = None

    @property
    def params(self) -> list[nn.Parameter]:
        if self._params is None:
            named = select_parameters(self.model, self.config.params)
            sharded = [n for n, p in named if p.numel() == 0 or hasattr(p, "ds_numel")]
            if sharded:
                raise ValueError(
                    f"gradients: parameter {sharded[0]!r} is sharded across processes (DeepSpeed "
                    "ZeRO-3 / FSDP); the grad_nsr oracle and the monitor need whole parameters "
                    "(use DDP or ZeRO-1/2)"
                )
            self._params = [p for _, p in named]
            if self.config.project_dim:
                self._sketch = CountSketch(
                    [p.numel() for p in self._params], self.config.project_dim, self.config.seed
                )
        return self._params

    @property
    def dim(self) -> int:
        """Length of each gradient vector: the projection dimension, or the subset size."""
        params = self.params
        return self._sketch.dim if self._sketch is not None else sum(p.numel() for p in params)

    def gradients(
        self,
        sequences: Sequence[torch.Tensor],
        prompt_lengths: Sequence[int],
        coefficients: torch.Tensor | Sequence[float],
        temperature: float = 1.0,
    ) -> torch.Tensor:
        """``[N, dim]`` float32 on the CPU; a zero coefficient costs nothing and gives 0."""
        params = self.params
        return completion_gradients(
            self.model,
            params,
            sequences,
            prompt_lengths,
            coefficients,
            sketch=self._sketch,
            temperature=temperature,
            skip_zero=True,
            objective=self.config.objective,
        ).grads
