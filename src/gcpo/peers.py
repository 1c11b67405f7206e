"""Peer group weightings: published per-group advantage weights, for comparison with GCPO.

Each rule is a pure function of the batch's rewards::

    fn(rewards[B, G], mask[B, G], *, low, high, **params) -> raw weights [B] (float64, finite, >= 0)

registered under a name in :data:`RULES` (:func:`register_rule`, :func:`get_rule`). ``low`` /
``high`` are the reward range the caller has seen (a running min / max); rules that need a group
"accuracy" read it on the normalised scale ``z = (r - low) / (high - low)`` in ``[0, 1]``, so for
binary rewards ``{low, high}`` it is exactly the fraction of correct completions, and for graded
rewards it is the group's mean normalised reward (not a thresholded success rate). Every rule is
therefore invariant under increasing affine maps of the rewards applied to ``low``/``high`` too
(``dgpo``'s MAD factor up to its ``1e-4`` constants, exactly as in its source). Invalid completions
(``mask`` False) are left out of every statistic, the range check included.

The caller (:mod:`gcpo.weighting`) multiplies TRL's final GRPO advantages (Bessel std,
``eps = 1e-4``, see :mod:`gcpo.advantages`) by these weights after its own renormalisation (mean 1
over the active groups, ``RD > 0``; inactive groups get exactly 1), so the rules return raw
weights. A group is *inactive* when its valid rewards are all equal (constant, single-member or
all-masked): its advantages are 0 whatever its weight; each rule documents the value it returns
for such groups.

Rules (sources read: the released code where there is one, else the paper / PR text):

- ``learnability``: ``w = Var(z)``, the population variance of the normalised rewards; for binary
  rewards exactly ``p (1 - p)``, the "learnability" of LILO (Foster & Foerster, arXiv 2502.12272,
  which *samples* prompts with probability proportional to ``p (1 - p)``; as a weight this is the
  same allocation in expectation) and the per-prompt gradient-variance factor VIP (arXiv
  2602.01601) allocates rollouts by. For graded rewards it is ``RD^2`` on the normalised scale
  (``RD^2`` generalises ``p (1 - p)``, docs/design.md section 3). Not mean-1. Inactive: 0.
- ``mgpo``: MaxEnt-Guided Policy Optimization (VibeThinker, arXiv 2511.06221, section 3.4, as
  proposed for TRL in huggingface/trl issue 5127 / PR 5126, head 84d8b50, closed unmerged:
  ``GRPOTrainer._compute_mgpo_weights``): ``D = p log(p/p0) + (1-p) log((1-p)/(1-p0))`` (the KL
  divergence of Bernoulli(p) from Bernoulli(p0)), ``w = exp(-lambda D)``, defaults ``lambda =
  0.5``, ``p0 = 0.5`` (the PR's). Peak 1 at ``p = p0``, symmetric about 0.5 when ``p0 = 0.5``,
  ``(1-p0)^lambda`` at ``p = 0``. Applied by the PR after the std scaling, as here. Not mean-1.
- ``dgpo``: MathForge's DGPO (Dai et al., arXiv 2601.20614, ICLR 2026; released code
  AMAP-ML/MathForge ``trl-0.20.0/trl/trainer/grpo_trainer.py`` ``_generate_and_score_completions``,
  commit 83edda0; TRL PR 5102, head d161e1c, closed unmerged): the product of

  * DGAE (difficulty-balanced group advantage estimation): the release replaces
    ``(r - mean) / (std + 1e-4)`` by ``G (r - mean) / (sum_i |r_i - mean| + 1e-4)``, i.e. the mean
    absolute deviation (MAD) normaliser, so that ``sum_i |A_i| = G`` for every group. On top of
    gcpo's (TRL's) advantages this is exactly the per-group factor
    ``n (std + 1e-4) / (sum_i |r_i - mean| + 1e-4)`` (``n`` valid members, ``std`` the
    Bessel-corrected std TRL divided by: the group's for ``scale_rewards='group'``, the batch's for
    ``'batch'``); with ``scale_rewards='none'`` the release and the PR apply no DGAE (it sits
    inside their ``if scale_rewards`` branch), so the factor is 1. The scale mode is therefore a
    parameter, ``dgpo_scale_rewards``, that must equal the trainer's ``scale_rewards``.
  * DQW (difficulty-aware question-level weighting): over the batch's active groups ``A``,
    ``w_b = |A| softmax_{b in A}(-p_b / T)`` with ``T = 2.0`` (the release's default and the value
    in every ``scripts_mathforge/*/run_dgpo.sh``); inactive groups get 1. Its mean over ``A`` is
    exactly 1 (the release's own normalisation). Harder questions (lower ``p``) weigh more.

  Omitted on purpose: the release's two token-count scalars ``zero_mask_ratio`` (total tokens /
  tokens of active groups) and ``global_balancing_ratio`` (per-process token share), which are
  batch-level loss-aggregation corrections, not per-group weights (gcpo's renormalisation over
  active groups plays the role of the first); and the release's remap of an all-wrong group's
  accuracy to 1 before the softmax, which only matters when a *second* reward function makes such
  a group active and cannot arise with one reward (an active group has ``p > 0``).

  Choices where the sources are silent or differ: masked completions (the release has none) are
  left out, so ``G`` becomes the group's valid count ``n``; "active" is gcpo's exact test (valid
  rewards not all equal, i.e. ``RD > 0``) where the release uses ``isclose(std, 0)`` and PR 5102
  ``std < 1e-8``; the ``1e-4`` sits on ``sum |r - mean|`` as in the release (PR 5102 puts it on
  the MAD). The whole weight is not mean 1 (DQW is; the DGAE factor restores the release's
  ``sum |A| = G`` magnitude): gcpo's renormalisation keeps DGPO's relative weights and rescales
  the batch by one factor, ``renormalize: false`` keeps the release's magnitude.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch

from gcpo.validation import check_mask, float_tensor

__all__ = [
    "WeightRule",
    "RULES",
    "register_rule",
    "get_rule",
    "learnability",
    "mgpo",
    "dgpo",
    "ADVANTAGE_EPS",
    "DGAE_EPS",
    "DGPO_SCALES",
]

ADVANTAGE_EPS = 1e-4  # TRL's (and gcpo.advantages') eps in (r - mean) / (std + eps)
DGAE_EPS = 1e-4  # MathForge's eps in G (r - mean) / (sum |r - mean| + eps)
DGPO_SCALES = ("group", "batch", "none")  # TRL's scale_rewards


@dataclass(frozen=True)
class WeightRule:
    """A registered peer weighting.

    Attributes:
        name: registered name (``WeightingConfig.rule``).
        fn: ``fn(rewards[B, G], mask[B, G], *, low, high, **params) -> [B]`` raw weights
            (float64, finite, ``>= 0``).
        description: one line for tables and ``--help``.
        params: the ``WeightingConfig`` field names ``fn`` reads, passed under those names.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    description: str
    params: tuple[str, ...]

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.fn(*args, **kwargs)

    def kwargs_for(self, config: Any) -> dict[str, Any]:
        """``{param: getattr(config, param)}`` for this rule's parameters."""
        return {p: getattr(config, p) for p in self.params}


RULES: dict[str, WeightRule] = {}


def register_rule(
    name: str, *, params: tuple[str, ...] = (), description: str
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Decorator registering ``fn`` as the weighting rule ``name`` in :data:`RULES`.

    ``params`` are the config field names the function takes as keyword arguments. Raises
    ValueError for a non-identifier or taken name, or a bad ``params`` / ``description``.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected an identifier-like string, got {name!r}")
    if name in RULES:
        raise ValueError(f"rule name {name!r} is already registered")
    if isinstance(params, str) or not isinstance(params, tuple):
        raise ValueError(f"params: expected a tuple of field names, got {params!r}")
    bad = [p for p in params if not isinstance(p, str) or not p.isidentifier()]
    if bad or len(set(params)) != len(params):
        raise ValueError(f"params: expected distinct identifier-like names, got {params!r}")
    if not isinstance(description, str) or not description:
        raise ValueError(f"description: expected a non-empty string, got {description!r}")

    def deco(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        RULES[name] = WeightRule(name, fn, description, tuple(params))
        return fn

    return deco


def get_rule(name: str) -> WeightRule:
    """The registered :class:`WeightRule` called ``name``."""
    if isinstance(name, str) and name in RULES:
        return RULES[name]
    raise ValueError(f"rule: unknown name {name!r}; registered: {', '.join(sorted(RULES))}")


# --------------------------------------------------------------------------------------------
# Shared input handling
# --------------------------------------------------------------------------------------------


def _real(x: Any, name: str) -> float:
    if isinstance(x, torch.Tensor) and x.dim() == 0 and not x.is_complex():
        x = x.item()
    if isinstance(x, bool) or not isinstance(x, (int, float)):
        raise ValueError(f"{name}: expected a real number, got {x!r}")
    v = float(x)
    if not math.isfinite(v):
        raise ValueError(f"{name}: expected a finite number, got {x!r}")
    return v


def _flag(x: Any, name: str) -> bool:
    if not isinstance(x, bool):
        raise ValueError(f"{name}: expected a bool, got {x!r}")
    return x


@dataclass(frozen=True)
class _Batch:
    r: torch.Tensor  # [B, G] float64 raw rewards (masked entries 0)
    z: torch.Tensor  # [B, G] float64 normalised rewards in [0, 1] (masked entries 0)
    m: torch.Tensor  # [B, G] bool
    n: torch.Tensor  # [B] float64 number of valid members
    constant: torch.Tensor  # [B] bool: valid rewards all equal (inactive group)


def _prepare(rewards: Any, mask: Any, low: Any, high: Any) -> _Batch:
    r = float_tensor(rewards, "rewards", 2)
    m = check_mask(mask, (r.shape[0], r.shape[1]), r.device)
    lo = _real(low, "low")
    hi = _real(high, "high")
    if hi < lo:
        raise ValueError(f"high: expected >= low = {lo!r}, got {hi!r}")
    x = r.to(torch.float64)
    if bool(m.any()):
        valid = x[m]
        vmin, vmax = float(valid.min()), float(valid.max())
        if vmin < lo or vmax > hi:
            raise ValueError(
                f"rewards: valid values span [{vmin!r}, {vmax!r}], outside the range "
                f"[low, high] = [{lo!r}, {hi!r}] (pass the range seen so far, this batch included)"
            )
    x = torch.where(m, x, torch.zeros_like(x))
    span = hi - lo
    # span 0: every valid reward equals low == high (no range seen yet), so z = 0
    z = ((x - lo) / span).clamp(0.0, 1.0) if span > 0 else torch.zeros_like(x)
    z = torch.where(m, z, torch.zeros_like(z))
    if x.shape[1] == 0:  # no completions at all: every group is empty
        constant = torch.ones(x.shape[0], dtype=torch.bool, device=x.device)
    else:
        first = m.to(torch.int8).argmax(dim=1, keepdim=True)
        constant = (torch.where(m, x - x.gather(1, first), torch.zeros_like(x)) == 0).all(dim=1)
    n = m.sum(dim=1).to(torch.float64)
    return _Batch(x, z, m, n, constant)


def _group_mean(v: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    """Mean of the valid entries per row, exact for constant rows (0 for an empty row).

    Computed as the first valid value plus the mean deviation from it, so equal values give
    exactly that value (a plain ``sum / n`` does not for some ``n``).
    """
    if v.shape[1] == 0:
        return torch.zeros(v.shape[0], dtype=v.dtype, device=v.device)
    first = m.to(torch.int8).argmax(dim=1, keepdim=True)
    base = torch.where(m.any(dim=1, keepdim=True), v.gather(1, first), torch.zeros_like(v[:, :1]))
    d = torch.where(m, v - base, torch.zeros_like(v))
    n = m.sum(dim=1, keepdim=True).clamp_min(1).to(v.dtype)
    return (base + d.sum(dim=1, keepdim=True) / n).squeeze(1)


def _accuracy(b: _Batch) -> torch.Tensor:
    """Group accuracy ``p`` in [0, 1]: mean normalised reward of the valid members."""
    return _group_mean(b.z, b.m).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Rules
# --------------------------------------------------------------------------------------------


@register_rule(
    "learnability",
    params=(),
    description="p(1-p) learnability (LILO 2502.12272; VIP 2602.01601): population variance of "
    "the rewards normalised to [0,1]",
)
def learnability(rewards: Any, mask: Any = None, *, low: Any, high: Any) -> torch.Tensor:
    """Learnability weight ``Var(z)`` of each group.

    ``z = (r - low) / (high - low)``; the population variance (no Bessel correction) over the
    valid members, ``= p (1 - p)`` for binary rewards (``p`` = fraction correct), in
    ``[0, 1/4]``. Constant, single-member and all-masked groups give exactly 0.

    Returns:
        ``[B]`` float64.
    """
    b = _prepare(rewards, mask, low, high)
    mean = _group_mean(b.z, b.m).unsqueeze(1)
    dev = torch.where(b.m, b.z - mean, torch.zeros_like(b.z))
    var = (dev * dev).sum(dim=1) / b.n.clamp_min(1.0)
    return torch.where(b.constant, torch.zeros_like(var), var.clamp_min(0.0))


def _check_mgpo(mgpo_lambda: Any, mgpo_p0: Any) -> tuple[float, float]:
    lam = _real(mgpo_lambda, "mgpo_lambda")
    if lam < 0:
        raise ValueError(f"mgpo_lambda: expected >= 0, got {mgpo_lambda!r}")
    p0 = _real(mgpo_p0, "mgpo_p0")
    if not 0.0 < p0 < 1.0:
        raise ValueError(f"mgpo_p0: expected a number in (0, 1), got {mgpo_p0!r}")
    return lam, p0


@register_rule(
    "mgpo",
    params=("mgpo_lambda", "mgpo_p0"),
    description="MGPO (VibeThinker 2511.06221; TRL PR 5126): exp(-lambda KL(Bern(p) || Bern(p0))), "
    "peak 1 at accuracy p = p0",
)
def mgpo(
    rewards: Any,
    mask: Any = None,
    *,
    low: Any,
    high: Any,
    mgpo_lambda: float = 0.5,
    mgpo_p0: float = 0.5,
) -> torch.Tensor:
    """MaxEnt-Guided weight ``w = exp(-lambda D_ME(p || p0))`` of each group.

    ``p`` is the group's accuracy on the normalised scale (fraction correct for binary rewards,
    mean normalised reward for graded ones) and
    ``D_ME = p log(p / p0) + (1 - p) log((1 - p) / (1 - p0))`` with ``0 log 0 = 0`` (PR 5126 adds
    ``1e-8`` inside each log instead, a difference below ``1e-8`` in ``D``). Weights are in
    ``(0, 1]``; ``lambda = 0`` gives 1 everywhere (plain GRPO). An all-masked group has no
    accuracy and gets 1; constant groups get the formula's value at their ``p``.

    Returns:
        ``[B]`` float64.
    """
    lam, p0 = _check_mgpo(mgpo_lambda, mgpo_p0)
    b = _prepare(rewards, mask, low, high)
    p = _accuracy(b)
    q = 1.0 - p
    d = torch.xlogy(p, p / p0) + torch.xlogy(q, q / (1.0 - p0))
    w = torch.exp(-lam * d.clamp_min(0.0))  # D >= 0 (Gibbs); clamp rounding near p0
    return torch.where(b.n > 0, w, torch.ones_like(w))


def _check_dgpo(
    dgpo_temperature: Any, dgpo_scale_rewards: Any, dgpo_dgae: Any, dgpo_dqw: Any
) -> float:
    t = _real(dgpo_temperature, "dgpo_temperature")
    if not t > 0:
        raise ValueError(f"dgpo_temperature: expected > 0, got {dgpo_temperature!r}")
    if dgpo_scale_rewards not in DGPO_SCALES:
        raise ValueError(
            f"dgpo_scale_rewards: got {dgpo_scale_rewards!r}, allowed: {', '.join(DGPO_SCALES)}"
        )
    _flag(dgpo_dgae, "dgpo_dgae")
    _flag(dgpo_dqw, "dgpo_dqw")
    return t


def _bessel_std(x: torch.Tensor, m: torch.Tensor, dim: int | None) -> torch.Tensor:
    """Bessel-corrected std of the valid entries (0 where fewer than 2), float64.

    As TRL's ``nanstd`` (and :func:`gcpo.advantages._nanstd`): population variance times the
    correction ``count / (count - 1)`` computed from integer counts, i.e. in torch's default
    float dtype, so that the DGAE factor cancels the std the advantages were divided by to
    float64 rounding.
    """
    if dim is None:
        cnt = m.sum()
        if int(cnt) < 2:
            return torch.zeros((), dtype=x.dtype, device=x.device)
        vals = x[m]
        mean = vals.mean()
        var = ((vals - mean) ** 2).mean()
        return torch.sqrt(var * (cnt / (cnt - 1)))
    cnt = m.sum(dim=dim)
    mean = _group_mean(x, m).unsqueeze(1)
    dev = torch.where(m, x - mean, torch.zeros_like(x))
    var = (dev * dev).sum(dim=dim) / cnt.clamp_min(1).to(x.dtype)
    correction = cnt / (cnt - 1).clamp_min(1)
    return torch.where(cnt >= 2, (var * correction).sqrt(), torch.zeros_like(var))


@register_rule(
    "dgpo",
    params=("dgpo_temperature", "dgpo_scale_rewards", "dgpo_dgae", "dgpo_dqw"),
    description="DGPO (MathForge 2601.20614; TRL PR 5102): MAD advantage normaliser as a factor "
    "(std+eps)/(MAD+eps/n) times |A| softmax(-p/T) difficulty weights over the batch",
)
def dgpo(
    rewards: Any,
    mask: Any = None,
    *,
    low: Any,
    high: Any,
    dgpo_temperature: float = 2.0,
    dgpo_scale_rewards: str = "group",
    dgpo_dgae: bool = True,
    dgpo_dqw: bool = True,
) -> torch.Tensor:
    """DGPO weight of each group: ``dgae_factor * dqw``.

    Args:
        rewards: ``[B, G]`` raw rewards, exactly those TRL normalised (the DGAE factor depends on
            their scale through the ``1e-4`` constants, as the released advantages do).
        mask: ``[B, G]`` bool, True = valid completion.
        low, high: reward range seen so far; DQW's accuracy ``p`` is the mean of
            ``(r - low) / (high - low)`` over the valid members.
        dgpo_temperature: DQW softmax temperature ``T > 0`` (release default 2.0).
        dgpo_scale_rewards: the trainer's ``scale_rewards`` (``group`` | ``batch`` | ``none``):
            which std the given advantages were divided by. ``none``: no DGAE (factor 1), as in
            the release and PR 5102.
        dgpo_dgae: apply the MAD factor (DGAE); ``False`` = DQW only.
        dgpo_dqw: apply the difficulty weights (DQW); ``False`` = DGAE only.

    The DGAE factor of an active group with ``n`` valid members is
    ``n (std + 1e-4) / (sum_i |r_i - mean| + 1e-4)``: multiplied into TRL's
    ``(r - mean) / (std + 1e-4)`` it gives the release's ``n (r - mean) / (sum |r - mean| + 1e-4)``
    (MathForge puts the ``1e-4`` on the sum, i.e. ``MAD + 1e-4 / n``; PR 5102 uses
    ``MAD + 1e-4``, a difference of order ``1e-4`` relative to MAD; this follows the authors'
    release). The DQW weight is ``|A| softmax(-p / T)`` over the active groups ``A`` of the batch
    (mean exactly 1 over ``A``). Inactive groups (valid rewards all equal) get 1.

    Returns:
        ``[B]`` float64, finite, ``> 0`` on active groups (a softmax can underflow to 0 for an
        extreme ``T``).
    """
    temp = _check_dgpo(dgpo_temperature, dgpo_scale_rewards, dgpo_dgae, dgpo_dqw)
    b = _prepare(rewards, mask, low, high)
    active = ~b.constant
    w = torch.ones(b.r.shape[0], dtype=torch.float64, device=b.r.device)
    if not bool(active.any()):
        return w
    if dgpo_dgae and dgpo_scale_rewards != "none":
        if dgpo_scale_rewards == "group":
            std = _bessel_std(b.r, b.m, dim=1)
        else:
            std = _bessel_std(b.r, b.m, dim=None).expand(b.r.shape[0])
        mean = _group_mean(b.r, b.m).unsqueeze(1)
        abs_dev = torch.where(b.m, (b.r - mean).abs(), torch.zeros_like(b.r)).sum(dim=1)
        factor = b.n * (std + ADVANTAGE_EPS) / (abs_dev + DGAE_EPS)
        w = torch.where(active, factor, w)
    if dgpo_dqw:
        p = _accuracy(b)
        logits = torch.where(active, -p / temp, torch.full_like(p, -math.inf))
        dqw = active.sum().to(torch.float64) * torch.softmax(logits, dim=0)
        w = torch.where(active, w * dqw, w)
    return w
