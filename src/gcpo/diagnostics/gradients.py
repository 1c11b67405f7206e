"""Per-completion policy gradients on a parameter subset (docs/design.md section 8).

For completion i of a group, ``g_i = A_i * grad_theta l_i`` where ``l_i`` is the length-normalised
sequence log-likelihood (mean log-prob of the completion tokens given the prompt; objective
``mean``, the default) or the sequence log-probability itself (their sum; objective ``sum``), and
``theta`` is a chosen parameter subset. With ``mean``, a long completion's gradient is an average
over more tokens, so V depends on completion length by construction; ``sum`` weights every token
alike (the REINFORCE gradient of the sequence), which separates that length effect. Each completion gets its own forward and backward pass (batch of one):
for small G on CPU this is cheaper than a batched forward with G backward passes, whose cost is
quadratic in G, and it needs no padding, so l_i is exactly the single-sequence value. Everything
outside the subset is frozen for the duration, so autograd records (and back-propagates through)
only the layers from the subset onwards.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass

import torch
from torch import nn

from gcpo.diagnostics.projection import CountSketch

__all__ = [
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
