"""From a group's uncertainty signal to a weight on its advantages (docs/design.md, section 4).

``group_weights(U[B], RD[B], config, state)`` runs four steps, each a small pure function:

1. **normalise** ``U`` to ``[0, 1]``: ``bound`` (divide by the signal's bound, clip) or ``rank``
   (mid-rank percentile within a running window of recent groups, kept in an explicit
   :class:`RankNormalizerState` that training saves in its checkpoints);
2. **calibrate** with reward dispersion: ``none`` (``U~ = Un``), ``product``
   (``U~ = Un * (1 - RDn)``), or ``snr`` (the weight is directly ``RDn / (RDn + lambda * Un)``),
   where ``RDn = clip(RD / rd_max, 0, 1)``;
3. **modulate**: ``weight = f(alpha * U~)`` with ``f`` = ``linear`` ``max(1 - x, w_min)``,
   ``exp`` ``e^-x``, ``focal`` ``max(1 - x, 0)^gamma`` or ``inverse`` ``1 / (1 + x)`` (skipped
   for ``snr``);
4. **renormalise** (optional): multiply the weights of the *active* groups (``RD > 0``, see
   :func:`active_groups`; every group when ``RD`` is not given) by one factor so that their mean
   is 1. Inactive groups keep their unscaled weight: their GRPO advantages are 0 (or, in verl, a
   single-response group's raw score), so nothing of the re-allocation may reach them. Computed
   in float64 relative to the largest active weight, so the result is always finite (``exp``
   modulation is renormalised from its exponents, exact however large ``alpha * U~``). When every
   active weight is 0 (e.g. ``focal`` with ``alpha >= 1`` and no calibration) the batch would
   not move the policy at all: the weights fall back to 1 (plain GRPO for that batch) and
   :attr:`WeightingResult.fallback` says so, for the caller to warn and count.

Named presets (``grpo``, ``seed-grpo``, ``seed-grpo-strong``, ``gcpo``, ``gcpo-bot``) are YAML
files in ``gcpo/configs/presets`` -- the source of truth -- loaded by :func:`gcpo.presets.preset`
(above this module, which reads no file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from gcpo.fields import ConfigError, field, validate
from gcpo.signals import SIGNALS, get_signal
from gcpo.validation import as_tensor, float_tensor, shape_of

__all__ = [
    "WeightingConfig",
    "WeightingResult",
    "RankNormalizerState",
    "initial_state",
    "normalize",
    "calibrate",
    "modulate",
    "renormalize",
    "active_groups",
    "group_weights",
    "group_weights_detailed",
]

@dataclass
class WeightingConfig:
    """How a group's uncertainty signal becomes a weight on its advantages (defaults = ``gcpo``)."""

    signal: str = field(
        "cosine_dispersion",
        help="uncertainty signal: a name registered in gcpo.signals.SIGNALS (semantic_entropy, "
        "cosine_dispersion, barycentric_transport, reward_dispersion, eigenscore, token_entropy, "
        "negative_log_likelihood) or 'none' (weight 1 = plain GRPO)",
    )
    se_clusterer: str = field(
        "answer",
        help="semantic_entropy clusters: 'answer' (exact match of the extracted final answer; "
        "unparseable = own cluster) or 'embedding' (cosine >= cluster_threshold, greedy anchors)",
        choices=("answer", "embedding"),
    )
    se_likelihood_weighting: bool = field(
        False,
        help="semantic_entropy: weight completions by softmax of their length-normalised "
        "log-likelihoods (else uniform = discrete SE)",
    )
    cluster_threshold: float = field(
        0.9,
        help="cosine similarity needed to join a cluster (se_clusterer=embedding)",
        min=-1.0,
        max=1.0,
    )
    completion_weighting: str = field(
        "uniform",
        help="completion weights w_i inside cosine_dispersion / barycentric_transport: 'uniform' or "
        "'likelihood' (softmax of length-normalised log-likelihoods)",
        choices=("uniform", "likelihood"),
    )
    normalization: str = field(
        "rank",
        help="map the signal to [0,1]: 'bound' (divide by the signal's bound, e.g. log G for SE, "
        "and clip) or 'rank' (mid-rank percentile in a running window of recent groups)",
        choices=("bound", "rank"),
    )
    rank_window: int = field(
        1024, help="rank normalisation: number of recent group values kept in the window", min=1
    )
    calibration: str = field(
        "product",
        help="reward-dispersion calibration: 'none', 'product' (U * (1 - RD/rd_max)) or 'snr' "
        "(weight = RDn / (RDn + snr_lambda * U))",
        choices=("none", "product", "snr"),
    )
    snr_lambda: float = field(1.0, help="calibration=snr: weight of U against RDn", min=0.0)
    rd_max: float = field(
        0.5,
        help="largest reward dispersion, half the reward range (0.5 for rewards in [0,1]); also the "
        "bound of the reward_dispersion signal",
        min=1e-12,
    )
    modulation: str = field(
        "linear",
        help="f in weight = f(alpha * U~): 'linear' max(1-x, w_min), 'exp' e^-x, 'focal' "
        "max(1-x, 0)^focal_gamma, 'inverse' 1/(1+x) (the released SEED-GRPO form)",
        choices=("linear", "exp", "focal", "inverse"),
    )
    alpha: float = field(1.0, help="strength of the modulation (0 = plain GRPO)", min=0.0)
    w_min: float = field(0.1, help="floor of the linear modulation", min=0.0, max=1.0)
    focal_gamma: float = field(2.0, help="exponent of the focal modulation", min=0.0)
    renormalize: bool = field(
        True,
        help="rescale the weights so their mean over groups with RD > 0 is 1 (re-allocates the "
        "update across prompts instead of lowering the learning rate)",
    )
    bot_max_segments: int = field(
        8, help="barycentric_transport: at most this many segments (points) per completion", min=1
    )
    bot_support_size: int = field(
        0,
        help="barycentric_transport: barycenter support size k (0 = the largest cloud in the group)",
        min=0,
    )
    bot_max_iter: int = field(
        5, help="barycentric_transport: fixed-point iterations of the barycenter solver", min=1
    )
    eigenscore_alpha: float = field(
        1e-3, help="eigenscore: ridge alpha in log det(K + alpha I)", min=1e-12
    )

    def __post_init__(self) -> None:
        validate(self)
        if self.signal != "none" and self.signal not in SIGNALS:
            raise ConfigError(
                f"signal: got {self.signal!r}, allowed: none, {', '.join(sorted(SIGNALS))}"
            )
        if (
            self.signal != "none"
            and self.normalization == "bound"
            and not SIGNALS[self.signal].bounded
        ):
            raise ConfigError(
                f"normalization: got 'bound' but signal {self.signal!r} has no bound; use 'rank'"
            )


@dataclass(frozen=True)
class WeightingResult:
    """``weights[B]``, the intermediate ``normalized[B]`` / ``calibrated[B]`` signal (U~), the
    ``active[B]`` mask renormalisation used, and ``fallback``: True when every active group got
    weight 0 and the weights fell back to 1 (see :func:`renormalize`)."""

    weights: torch.Tensor
    normalized: torch.Tensor
    calibrated: torch.Tensor
    active: torch.Tensor
    fallback: bool = False


# --------------------------------------------------------------------------------------------
# Rank normalisation state
# --------------------------------------------------------------------------------------------


class RankNormalizerState:
    """Running window of recent raw signal values for ``rank`` normalisation.

    The rank of a value ``u`` of the current batch is computed against the *pool* = the window
    followed by the whole current batch (``u`` itself included), as its mid-rank among the other
    pool members::

        rank(u) = (#{v in others: v < u} + 0.5 * #{v in others: v == u}) / #others

    where ``others`` is the pool minus one copy of ``u``. So the smallest distinct value maps to
    0, the largest to 1, ties share the mean of their ranks, and a lone value (empty window,
    batch of one) maps to 0.5. After ranking, the batch is appended and only the last ``window``
    values are kept. Deterministic; ``state_dict()`` is plain Python data (picklable, goes into
    checkpoints).
    """

    def __init__(self, window: int = 1024, values: list[float] | None = None) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window: expected an int >= 1, got {window!r}")
        self.window = window
        self.values: list[float] = []
        if values is not None:
            self.load_state_dict({"window": window, "values": values})

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return f"RankNormalizerState(window={self.window}, len={len(self.values)})"

    def rank(self, u: torch.Tensor, update: bool = True) -> torch.Tensor:
        """Mid-rank percentiles ``[B]`` in ``[0, 1]`` of ``u[B]``; appends ``u`` when ``update``."""
        batch = u.detach().to(torch.float64).cpu().reshape(-1)
        pool = torch.cat([torch.tensor(self.values, dtype=torch.float64), batch])
        less = (pool.unsqueeze(0) < batch.unsqueeze(1)).sum(dim=1).to(torch.float64)
        equal = (pool.unsqueeze(0) == batch.unsqueeze(1)).sum(dim=1).to(torch.float64)
        others = pool.numel() - 1
        lone = torch.full_like(batch, 0.5)
        ranks = (less + 0.5 * (equal - 1.0)) / others if others > 0 else lone
        if update:
            self.values = pool.tolist()[-self.window :]
        return ranks.to(device=u.device)

    def state_dict(self) -> dict[str, Any]:
        return {"window": self.window, "values": list(self.values)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output; keeps this object's ``window`` (the last
        ``window`` values are kept if the saved window was larger)."""
        if not isinstance(state, dict) or "values" not in state:
            raise ValueError(f"state: expected a dict with 'values', got {type(state).__name__}")
        vals = state["values"]
        if isinstance(vals, torch.Tensor):
            vals = vals.detach().cpu().reshape(-1).tolist()
        if not isinstance(vals, (list, tuple)):
            raise ValueError(
                f"state['values']: expected a list of numbers, got {type(vals).__name__}"
            )
        out = []
        for i, v in enumerate(vals):
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"state['values'][{i}]: expected a finite number, got {v!r}")
            out.append(float(v))
        self.values = out[-self.window :]


def initial_state(config: WeightingConfig) -> RankNormalizerState | None:
    """A fresh :class:`RankNormalizerState` when ``config`` uses ``rank`` normalisation, else None."""
    if config.signal != "none" and config.normalization == "rank":
        return RankNormalizerState(window=config.rank_window)
    return None


# --------------------------------------------------------------------------------------------
# The four steps
# --------------------------------------------------------------------------------------------


def _bound_tensor(bound: Any, u: torch.Tensor) -> torch.Tensor:
    """``bound`` (number, 0-d or ``[B]``) as a float64 tensor on ``u``'s device, checked."""
    t = as_tensor(bound, "bound") if not isinstance(bound, (int, float)) else torch.tensor(bound)
    t = t.to(device=u.device, dtype=torch.float64)
    if t.dim() > 1 or (t.dim() == 1 and t.shape[0] != u.shape[0]):
        raise ValueError(f"bound: expected a number or shape ({u.shape[0]},), got {shape_of(t)}")
    if not bool(torch.isfinite(t).all()) or bool((t < 0).any()):
        raise ValueError(f"bound: expected finite values >= 0, got {t.flatten()[:4].tolist()}")
    return t


def normalize(
    uncertainty: torch.Tensor,
    config: WeightingConfig,
    state: RankNormalizerState | None = None,
    *,
    group_size: Any = None,
    bound: Any = None,
) -> torch.Tensor:
    """Step 1: ``U[B]`` -> ``Un[B]`` in ``[0, 1]`` (``rank`` updates ``state``).

    ``bound`` normalisation divides by ``bound`` when given, else by the registered bound of
    ``config.signal`` evaluated at ``group_size`` (an int or ``[B]`` tensor of valid group sizes;
    needed for ``semantic_entropy``, whose bound is ``log G``). A bound of 0 (e.g. ``log 1``)
    gives ``Un = 0``.
    """
    u = uncertainty.to(torch.float64)
    if config.normalization == "rank":
        if state is None:
            raise ValueError(
                "state: rank normalisation needs a RankNormalizerState (got None); create one "
                "with gcpo.weighting.initial_state(config) and save it with your checkpoints"
            )
        if not isinstance(state, RankNormalizerState):
            raise ValueError(f"state: expected a RankNormalizerState, got {type(state).__name__}")
        return state.rank(u)
    if bound is None:
        spec = get_signal(config.signal)
        if spec.bound is None:
            raise ValueError(
                f"bound: signal {config.signal!r} has no bound; use rank normalisation"
            )
        if config.signal == "semantic_entropy" and group_size is None:
            raise ValueError(
                "group_size: bound normalisation of semantic_entropy divides by log G; pass "
                "group_size (int or [B] tensor of valid group sizes) or bound"
            )
        gs = group_size
        if gs is not None and not isinstance(gs, int):
            gs = float_tensor(gs, "group_size", 1).to(u.device)
        bound = spec.bound_value(gs, config.rd_max)
    b_t = _bound_tensor(bound, u)
    return torch.where(b_t > 0, u / b_t.clamp_min(1e-300), torch.zeros_like(u)).clamp(0.0, 1.0)


def _rd_normalized(rd: torch.Tensor, config: WeightingConfig) -> torch.Tensor:
    return (rd.to(torch.float64) / config.rd_max).clamp(0.0, 1.0)


def calibrate(
    normalized: torch.Tensor, reward_dispersion: torch.Tensor | None, config: WeightingConfig
) -> torch.Tensor:
    """Step 2: ``Un[B]`` -> ``U~[B]`` in ``[0, 1]``.

    ``snr`` returns ``U~ = 1 - RDn / (RDn + lambda * Un)`` (so the weight is ``1 - U~``); when
    ``RDn + lambda * Un = 0`` (no reward dispersion and no disagreement) ``U~ = 0``.
    """
    if config.calibration == "none":
        return normalized
    if reward_dispersion is None:
        raise ValueError(
            f"reward_dispersion: calibration={config.calibration!r} needs the groups' reward "
            "dispersion [B], got None"
        )
    rdn = _rd_normalized(reward_dispersion, config)
    if config.calibration == "product":
        return (normalized * (1.0 - rdn)).clamp(0.0, 1.0)
    noise = config.snr_lambda * normalized
    denom = rdn + noise
    return torch.where(denom > 0, noise / denom.clamp_min(1e-300), torch.zeros_like(denom))


def modulate(calibrated: torch.Tensor, config: WeightingConfig) -> torch.Tensor:
    """Step 3: ``weight = f(alpha * U~)`` (``snr``: ``weight = 1 - U~``)."""
    if config.calibration == "snr":
        return 1.0 - calibrated
    x = config.alpha * calibrated
    if config.modulation == "linear":
        return (1.0 - x).clamp_min(config.w_min)
    if config.modulation == "exp":
        return torch.exp(-x)
    if config.modulation == "focal":
        return (1.0 - x).clamp_min(0.0) ** config.focal_gamma
    return 1.0 / (1.0 + x)


def active_groups(reward_dispersion: torch.Tensor) -> torch.Tensor:
    """``[B]`` bool: the groups that carry learning signal, ``RD > 0``.

    The one definition used by renormalisation, the trainers' metrics and the diagnostics.
    :func:`gcpo.signals.reward_dispersion` is exactly 0 for a group whose valid rewards are all
    equal, so this is exact: an active group is one whose GRPO advantages are not all zero.
    """
    return reward_dispersion > 0


def renormalize(
    weights: torch.Tensor,
    reward_dispersion: torch.Tensor | None,
    *,
    log_weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, bool]:
    """Step 4: one factor on the active groups making their mean weight 1.

    Returns ``(weights, fallback)``. ``log_weights`` (optional, ``[B]``) are the weights' logs
    (``exp`` modulation passes ``-alpha * U~``): the active weights are then recomputed relative
    to the largest one in log space, so no weight underflows to 0 before renormalising. Inactive
    groups (``RD = 0``) keep their weight; with no active group the weights are returned as they
    are; when every active weight is 0 they fall back to 1 and ``fallback`` is True.
    """
    w = weights.to(torch.float64)
    active = (
        torch.ones_like(w, dtype=torch.bool)
        if reward_dispersion is None
        else active_groups(reward_dispersion.to(w.device))
    )
    if not bool(active.any()):
        return weights, False
    if log_weights is not None:
        lw = log_weights.to(torch.float64)
        scaled = torch.exp(lw - lw[active].max())  # the largest active weight becomes exactly 1
    else:
        peak = w[active].max()
        if not bool(peak > 0):
            return torch.where(active, torch.ones_like(w), w).to(weights.dtype), True
        scaled = w / peak
    factor = 1.0 / scaled[active].mean()  # the mean is >= 1/n: finite
    out = torch.where(active, scaled * factor, w)
    return out.to(weights.dtype), False


def group_weights_detailed(
    uncertainty: Any,
    reward_dispersion: Any | None,
    config: WeightingConfig,
    state: RankNormalizerState | None = None,
    *,
    group_size: Any = None,
    bound: Any = None,
) -> WeightingResult:
    """:func:`group_weights` plus the intermediate normalised and calibrated signal."""
    if not isinstance(config, WeightingConfig):
        raise ValueError(f"config: expected a WeightingConfig, got {type(config).__name__}")
    u = float_tensor(uncertainty, "uncertainty", 1)
    out_dtype = u.dtype
    rd = None
    if reward_dispersion is not None:
        rd = float_tensor(reward_dispersion, "reward_dispersion", 1).to(u.device)
        if rd.shape != u.shape:
            raise ValueError(
                f"reward_dispersion: expected shape {tuple(u.shape)} like uncertainty, got {shape_of(rd)}"
            )
        if bool((rd < 0).any()):
            raise ValueError(f"reward_dispersion: must be >= 0, got minimum {rd.min().item()}")
    if config.signal == "none":
        zeros = torch.zeros_like(u, dtype=out_dtype)
        active = torch.ones_like(u, dtype=torch.bool) if rd is None else active_groups(rd)
        return WeightingResult(torch.ones_like(u, dtype=out_dtype), zeros, zeros, active)
    un = normalize(u, config, state, group_size=group_size, bound=bound)
    ut = calibrate(un, rd, config)
    w = modulate(ut, config)
    fallback = False
    if config.renormalize:
        log_w = None
        if config.modulation == "exp" and config.calibration != "snr":
            log_w = -config.alpha * ut
        w, fallback = renormalize(w, rd, log_weights=log_w)
    active = torch.ones_like(u, dtype=torch.bool) if rd is None else active_groups(rd)
    return WeightingResult(
        w.to(out_dtype), un.to(out_dtype), ut.to(out_dtype), active, fallback
    )


def group_weights(
    uncertainty: Any,
    reward_dispersion: Any | None,
    config: WeightingConfig,
    state: RankNormalizerState | None = None,
    *,
    group_size: Any = None,
    bound: Any = None,
) -> torch.Tensor:
    """Per-group advantage weights (docs/design.md, section 4).

    Args:
        uncertainty: ``[B]`` raw signal values ``U`` (higher = more uncertain).
        reward_dispersion: ``[B]`` ``RD`` (population reward std), needed by ``product`` / ``snr``
            calibration and used by renormalisation; may be None otherwise.
        config: :class:`WeightingConfig`.
        state: :class:`RankNormalizerState`, required (and updated) by ``rank`` normalisation.
        group_size: valid group sizes (int or ``[B]``) for ``bound`` normalisation of
            ``semantic_entropy`` (bound ``log G``).
        bound: explicit bound (number or ``[B]``) overriding the registered one.

    Returns:
        ``[B]`` finite weights ``>= 0`` (all 1 for ``signal: none``).
    """
    return group_weights_detailed(
        uncertainty, reward_dispersion, config, state, group_size=group_size, bound=bound
    ).weights
