"""Group-relative advantage estimators (docs/design.md, section 4, "Advantages").

Pure functions on ``rewards[B, G]`` (B prompt groups of G completions).

``grpo_advantages`` reproduces TRL 1.16 ``GRPOTrainer._generate_and_score_completions``
(``multi_objective_aggregation="sum_then_normalize"``) operation for operation, so the numbers are
bit-identical: a masked completion plays the role of TRL's unscorable completion (reward NaN),
i.e. it is left out of the group mean and std and gets advantage 0.

- ``scale="group"``: ``A = (r - mean_g) / (std_g + eps)`` with the Bessel-corrected (``n - 1``)
  std over the group's valid members.
- ``scale="batch"``: the same with one Bessel-corrected std over every valid reward of the batch
  (the mean stays per group, as in TRL).
- ``scale="none"``: ``A = r - mean_g``.

Degenerate cases, as in TRL: with ``G = 1`` (TRL's ``num_generations == 1``) the std is taken
as 0, so ``A = 0``; a group with a single valid member among ``G > 1`` has an undefined (NaN)
Bessel std, and TRL's final ``nan_to_num`` turns its advantage into 0; an all-masked group and
masked entries give 0. With ``scale="batch"`` and a single valid reward in the whole batch TRL
uses std 0. Call these on the rewards gathered over all processes (TRL normalises before slicing
the local part).
"""

from __future__ import annotations

from typing import Any

import torch

from gcpo.validation import check_mask, float_tensor, shape_of

__all__ = [
    "SCALES",
    "grpo_advantages",
    "gcpo_advantages",
    "weight_advantages",
]

SCALES = ("group", "batch", "none")


def _nanstd(x: torch.Tensor, dim: int | None = None) -> torch.Tensor:
    """Bessel-corrected std ignoring NaNs, op-for-op as ``trl.trainer.utils.nanstd``."""
    if dim is None:
        mean = torch.nanmean(x, dim=None, keepdim=True)
        variance = torch.nanmean((x - mean) ** 2, dim=None, keepdim=True)
        count = torch.sum(~torch.isnan(x), dim=None, keepdim=True)
    else:
        mean = torch.nanmean(x, dim=dim, keepdim=True)
        variance = torch.nanmean((x - mean) ** 2, dim=dim, keepdim=True)
        count = torch.sum(~torch.isnan(x), dim=dim, keepdim=True)
    correction = count / (count - 1)
    correction = torch.where(count > 1, correction, torch.full_like(correction, float("nan")))
    variance = variance * correction
    std = torch.sqrt(variance)
    return std.squeeze(dim) if dim is not None else std.reshape(())


def grpo_advantages(
    rewards: Any, scale: str = "group", eps: float = 1e-4, mask: Any | None = None
) -> torch.Tensor:
    """GRPO group-relative advantages, numerically identical to TRL 1.16.

    Args:
        rewards: ``[B, G]`` float rewards (finite).
        scale: ``"group"`` | ``"batch"`` | ``"none"`` (TRL's ``scale_rewards``).
        eps: added to the std before dividing (TRL uses ``1e-4``), ``>= 0``.
        mask: ``[B, G]`` bool, True = valid completion; masked entries get advantage 0.

    Returns:
        ``[B, G]`` advantages in the rewards' dtype; never NaN.
    """
    if scale not in SCALES:
        raise ValueError(f"scale: got {scale!r}, allowed: {', '.join(SCALES)}")
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps >= 0:
        raise ValueError(f"eps: expected a number >= 0, got {eps!r}")
    r = float_tensor(rewards, "rewards", 2)
    m = check_mask(mask, (r.shape[0], r.shape[1]), r.device)
    bsz, g = r.shape
    r = r.masked_fill(~m, float("nan")).reshape(-1)  # TRL's flat layout, NaN = unscorable
    mean_grouped = torch.nanmean(r.view(-1, g), dim=1).repeat_interleave(g, dim=0)
    if scale in ("group", "none"):
        if g > 1:
            std = _nanstd(r.view(-1, g), dim=1).repeat_interleave(g, dim=0)
        else:
            std = torch.zeros_like(r)
    else:  # batch
        std = _nanstd(r).expand_as(r) if r.numel() > 1 else torch.zeros_like(r)
    adv = r - mean_grouped
    if scale != "none":
        adv = adv / (std + eps)
    adv = torch.nan_to_num(adv, nan=0.0)
    return adv.view(bsz, g)


def weight_advantages(advantages: Any, weights: Any) -> torch.Tensor:
    """The GCPO step, ``A^ = w * A``: row ``n`` of ``advantages[N, ...]`` (TRL: one per
    completion; verl: ``[N, T]`` per token; :func:`gcpo_advantages`: ``[B, G]``) times
    ``weights[n]`` (finite, ``>= 0``), in the dtype and on the device of ``advantages``. The one
    definition TRL, verl and :func:`gcpo_advantages` apply."""
    adv = advantages if isinstance(advantages, torch.Tensor) else torch.as_tensor(advantages)
    w = float_tensor(weights, "weights", 1).to(device=adv.device)
    if adv.dim() < 1 or w.shape[0] != adv.shape[0]:
        rows = adv.shape[0] if adv.dim() else 0
        raise ValueError(f"weights: expected shape ({rows},), got {shape_of(w)}")
    if bool((w < 0).any()):
        raise ValueError(f"weights: must be >= 0, got minimum {w.min().item()}")
    return adv * w.to(adv.dtype).reshape(-1, *([1] * (adv.dim() - 1)))


def gcpo_advantages(
    rewards: Any,
    weights: Any,
    scale: str = "group",
    eps: float = 1e-4,
    mask: Any | None = None,
) -> torch.Tensor:
    """GCPO advantages ``A^[b, i] = weights[b] * A_grpo[b, i]`` of ``rewards[B, G]`` with the
    ``[B]`` weights of :func:`gcpo.weighting.group_weights`; ``scale``, ``eps``, ``mask`` as in
    :func:`grpo_advantages` (masked entries are 0)."""
    return weight_advantages(grpo_advantages(rewards, scale=scale, eps=eps, mask=mask), weights)
