"""From a group's uncertainty signal to a weight on its advantages (docs/design.md, section 4).

``group_weights(U[B], RD[B], config, state)`` runs four steps, each a small pure function:

1. **normalise** ``U`` to ``[0, 1]``: ``bound`` (divide by the signal's bound, clip) or ``rank``
   (mid-rank percentile within a running window of recent groups);
2. **calibrate** with reward dispersion: ``residual`` (the gcpo default: ``U~`` = rank of the
   part of ``Un`` that reward dispersion does not predict, fitted over the window of active
   groups, so ``U~`` is uniform on [0, 1] and carries no pass-rate information), ``product``
   (``U~ = Un * (1 - RDn)``), ``snr`` (the weight is directly ``RDn / (RDn + lambda * Un)``) or
   ``none``, where ``RDn = clip(RD / rd_max, 0, 1)`` and ``rd_max`` is configured or, when null,
   half the reward range seen so far;
3. **modulate**: ``weight = f(alpha * U~)`` with ``f`` = ``exp`` ``e^-x`` (the gcpo default:
   with U~ in [0, 1] the largest weight is at most ``e^alpha`` times the smallest), ``linear``
   ``max(1 - x, w_min)``, ``focal`` ``max(1 - x, 0)^gamma`` or ``inverse`` ``1 / (1 + x)``
   (skipped for ``snr``);
4. **renormalise** (optional): multiply the weights of the *active* groups (``RD > 0``, see
   :func:`active_groups`; every group when ``RD`` is not given) by one factor so that their mean
   is 1. Computed in float64 relative to the largest active weight, so the result is always
   finite (``exp`` modulation is renormalised from its exponents). When every active weight is
   0 the weights fall back to 1 (plain GRPO for that batch) and
   :attr:`WeightingResult.fallback` says so, for the caller to warn and count.

A group with ``RD = 0`` gets weight exactly 1: its GRPO advantages are all 0, so it is left
untouched. Whatever carries over between batches (the window, the reward range) is an explicit
:class:`WeightingState` that training saves in its checkpoints.

Named presets are YAML files in ``gcpo/configs/presets`` -- the source of truth -- loaded by
:func:`gcpo.presets.preset` (above this module, which reads no file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch

from gcpo.fields import ConfigError, field, validate
from gcpo.peers import DGPO_SCALES, RULES, get_rule
from gcpo.signals import SIGNALS, get_signal, signal_names
from gcpo.validation import as_tensor, float_tensor, shape_of

__all__ = [
    "WeightingConfig",
    "WeightingResult",
    "WeightingState",
    "initial_state",
    "needs_state",
    "is_weighted",
    "normalize",
    "calibrate",
    "residual_calibrate",
    "modulate",
    "renormalize",
    "active_groups",
    "group_weights",
    "group_weights_detailed",
]

@dataclass
class WeightingConfig:
    """How a group's uncertainty signal becomes a weight on its advantages (defaults = ``gcpo``)."""

    rule: str = field(
        "uncertainty",
        help="where the weight comes from: 'uncertainty' (the signal below, normalised, calibrated "
        "and modulated: gcpo, seed-grpo) or a peer weighting of gcpo.peers.RULES that weights "
        "from the rewards alone (set signal: none)",
        names=lambda: ["uncertainty", *RULES],
    )
    signal: str = field(
        "cosine_dispersion",
        help="uncertainty signal: a name or alias of gcpo.signals.SIGNALS, or 'none' (weight 1 = "
        "plain GRPO)",
        names=signal_names,
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
        "residual",
        help="reward-dispersion calibration: 'residual' (U~ = rank of what is left of Un once "
        "reward dispersion is regressed out, over the window of active groups: the disagreement "
        "the pass rate does not explain; U~ is uniform on [0,1], so alpha alone sets the spread), "
        "'product' (Un * (1 - RD/rd_max)), 'snr' (weight = RDn / (RDn + snr_lambda * Un)) or "
        "'none'",
        choices=("none", "product", "snr", "residual"),
    )
    snr_lambda: float = field(1.0, help="calibration=snr: weight of U against RDn", min=0.0)
    rd_max: float | None = field(
        None,
        help="scale of reward dispersion RDn = RD / rd_max, half the reward range (0.5 for rewards "
        "in [0,1]); null = auto: half the range of the rewards seen so far (kept in the weighting "
        "state), so any reward scale works. A set value that a group's RD exceeds is clipped, "
        "warned about once and counted (gcpo/rd_clipped). Also the bound of reward_dispersion",
        min=1e-12,
    )
    modulation: str = field(
        "exp",
        help="f in weight = f(alpha * U~): 'linear' max(1-x, w_min), 'exp' e^-x, 'focal' "
        "max(1-x, 0)^focal_gamma, 'inverse' 1/(1+x) (the released SEED-GRPO form)",
        choices=("linear", "exp", "focal", "inverse"),
    )
    alpha: float = field(
        1.0,
        help="strength of the modulation (0 = plain GRPO). With exp modulation of a U~ in [0,1] "
        "the largest weight is at most e^alpha times the smallest; "
        "per-step spread (std of the active groups' weights, whose mean is 1) by alpha for "
        "2/4/8 active groups, with residual calibration at any G and reward scale: "
        "0.25: 0.04/0.06/0.07, 0.5: 0.08/0.12/0.13, 1: 0.16/0.23/0.26, 2: 0.30/0.45/0.51, "
        "3: 0.42/0.64/0.74",
        min=0.0,
    )
    w_min: float = field(0.1, help="floor of the linear modulation", min=0.0, max=1.0)
    focal_gamma: float = field(2.0, help="exponent of the focal modulation", min=0.0)
    renormalize: bool = field(
        True,
        help="rescale the weights so their mean over groups with RD > 0 is 1 (re-allocates the "
        "update across prompts instead of lowering the learning rate)",
    )
    mgpo_lambda: float = field(
        0.5,
        help="rule=mgpo: strength lambda in w = exp(-lambda KL(Bern(p) || Bern(p0))) (0 = GRPO)",
        min=0.0,
    )
    mgpo_p0: float = field(
        0.5, help="rule=mgpo: the accuracy p0 where the weight peaks", min=1e-6, max=1 - 1e-6
    )
    dgpo_temperature: float = field(
        2.0,
        help="rule=dgpo: temperature T of the difficulty weights |A| softmax(-p/T); lower = more "
        "weight on the hardest questions",
        min=1e-6,
    )
    dgpo_scale_rewards: str = field(
        "group",
        help="rule=dgpo: the std the trainer's advantages were divided by (TRL's scale_rewards; "
        "must match it): group, batch, or none (no MAD factor)",
        choices=DGPO_SCALES,
    )
    dgpo_dgae: bool = field(True, help="rule=dgpo: apply the MAD advantage normaliser (DGAE)")
    dgpo_dqw: bool = field(True, help="rule=dgpo: apply the difficulty weights (DQW)")
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
        if self.rule != "uncertainty":
            if self.rule not in RULES:
                raise ConfigError(
                    f"rule: got {self.rule!r}, allowed: uncertainty, {', '.join(sorted(RULES))}"
                )
            if self.signal != "none":
                raise ConfigError(
                    f"signal: rule {self.rule!r} weights from the rewards alone; set signal: none "
                    f"(got {self.signal!r})"
                )
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
        if self.signal != "none" and self.calibration == "residual" and self.normalization != "rank":
            raise ConfigError(
                "calibration: 'residual' ranks the signal itself over the window of recent groups; "
                f"set normalization: rank (got {self.normalization!r})"
            )


@dataclass(frozen=True)
class WeightingResult:
    """``weights[B]``, the intermediate ``normalized[B]`` / ``calibrated[B]`` signal (U~), the
    ``active[B]`` mask renormalisation used, ``fallback`` (True when every active group got
    weight 0 and the weights fell back to 1, see :func:`renormalize`), ``rd_scale`` (the
    ``rd_max`` used: the configured one, or half the reward range seen) and ``rd_clipped`` (how
    many groups had ``RD > rd_max`` and were clipped: only possible with a configured
    ``rd_max``; the caller warns and counts)."""

    weights: torch.Tensor
    normalized: torch.Tensor
    calibrated: torch.Tensor
    active: torch.Tensor
    fallback: bool = False
    rd_scale: float = 0.5
    rd_clipped: int = 0


# --------------------------------------------------------------------------------------------
# Weighting state: the window of recent groups and the reward range seen
# --------------------------------------------------------------------------------------------


def _mid_ranks(
    values: torch.Tensor, pool: torch.Tensor, in_pool: torch.Tensor | float = 1.0
) -> torch.Tensor:
    """Mid-rank percentile of each of ``values`` among the other members of ``pool``:
    ``(#{v < u} + 0.5 #{v == u, other}) / #others``; 0.5 for a lone value. ``in_pool`` (1, or a
    ``[len(values)]`` 0/1 tensor) says whether each value is itself a member of ``pool``; one
    that is not is ranked as if it were added."""
    less = (pool.unsqueeze(0) < values.unsqueeze(1)).sum(dim=1).to(torch.float64)
    equal = (pool.unsqueeze(0) == values.unsqueeze(1)).sum(dim=1).to(torch.float64)
    own = torch.as_tensor(in_pool, dtype=torch.float64).expand_as(less)
    others = pool.numel() - own
    return torch.where(
        others > 0, (less + 0.5 * (equal - own)) / others.clamp_min(1), torch.full_like(less, 0.5)
    )


class WeightingState:
    """What a weighting carries from batch to batch, saved in every checkpoint.

    - a running **window** of the last ``window`` groups' raw signal values ``U`` (``values``)
      and reward dispersions ``RD`` (``rds``; NaN where unknown), used by ``rank``
      normalisation and ``residual`` calibration;
    - the **reward range** seen so far (``reward_low``, ``reward_high``; None before any valid
      reward), whose half is ``rd_max`` when the config leaves it to ``null`` (auto), so that
      RD is normalised on the scale the rewards actually have.

    ``rank(u)`` is the mid-rank of each value of ``u`` among the other members of the *pool*
    (the window followed by the whole current batch)::

        rank(u) = (#{v in others: v < u} + 0.5 * #{v in others: v == u}) / #others

    so the smallest distinct value maps to 0, the largest to 1, ties share the mean of their
    ranks, and a lone value (empty window, batch of one) maps to 0.5. Deterministic;
    ``state_dict()`` is plain Python data (JSON, pickle).
    """

    def __init__(self, window: int = 1024, values: list[float] | None = None) -> None:
        if isinstance(window, bool) or not isinstance(window, int) or window < 1:
            raise ValueError(f"window: expected an int >= 1, got {window!r}")
        self.window = window
        self.values: list[float] = []
        self.rds: list[float] = []
        self.reward_low: float | None = None
        self.reward_high: float | None = None
        if values is not None:
            self.load_state_dict({"window": window, "values": values})

    def __len__(self) -> int:
        return len(self.values)

    def __repr__(self) -> str:
        return (
            f"WeightingState(window={self.window}, len={len(self.values)}, "
            f"reward_range={self.reward_range})"
        )

    @property
    def reward_range(self) -> tuple[float, float] | None:
        if self.reward_low is None or self.reward_high is None:
            return None
        return (self.reward_low, self.reward_high)

    def pool(self, u: torch.Tensor, rd: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
        """``(U, RD)`` of the window followed by the batch, float64 (RD NaN where unknown)."""
        batch = u.detach().to(torch.float64).cpu().reshape(-1)
        rdb = (
            torch.full_like(batch, math.nan)
            if rd is None
            else rd.detach().to(torch.float64).cpu().reshape(-1)
        )
        pool_u = torch.cat([torch.tensor(self.values, dtype=torch.float64), batch])
        pool_rd = torch.cat([torch.tensor(self.rds, dtype=torch.float64), rdb])
        return pool_u, pool_rd

    def rank(
        self, u: torch.Tensor, rd: torch.Tensor | None = None, update: bool = True
    ) -> torch.Tensor:
        """Mid-rank percentiles ``[B]`` in ``[0, 1]`` of ``u[B]`` in the window and the batch:
        among the *active* groups (RD > 0) when ``rd[B]`` is given (see :func:`_active_rank`),
        else among all; appends ``u`` (and ``rd``) when ``update``."""
        ranks = _active_rank(u, rd, self)
        if update:
            self.push(u, rd)
        return ranks

    def push(self, u: torch.Tensor, rd: torch.Tensor | None) -> None:
        """Append a batch's ``U`` (and ``RD``) and keep the last ``window`` groups."""
        pool_u, pool_rd = self.pool(u, rd)
        self.values = pool_u.tolist()[-self.window :]
        self.rds = pool_rd.tolist()[-self.window :]

    def observe_rewards(self, rewards: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        """Widen the reward range by a batch's valid rewards (``[B, G]``, ``mask`` True = valid)."""
        r = rewards.detach().to(torch.float64).cpu().reshape(-1)
        if mask is not None:
            r = r[mask.detach().cpu().reshape(-1).to(torch.bool)]
        r = r[torch.isfinite(r)]
        if r.numel() == 0:
            return
        lo, hi = float(r.min()), float(r.max())
        self.reward_low = lo if self.reward_low is None else min(self.reward_low, lo)
        self.reward_high = hi if self.reward_high is None else max(self.reward_high, hi)

    def state_dict(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "values": list(self.values),
            "rds": list(self.rds),
            "reward_low": self.reward_low,
            "reward_high": self.reward_high,
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict` output (also a rank window saved by gcpo 0.1, which
        has ``values`` only: its RDs are unknown and stay out of ``residual`` calibration);
        keeps this object's ``window`` (the last ``window`` groups are kept if the saved window
        was larger)."""
        if not isinstance(state, dict) or "values" not in state:
            raise ValueError(f"state: expected a dict with 'values', got {type(state).__name__}")
        values = self._numbers(state["values"], "values", allow_nan=False)
        rds = self._numbers(state.get("rds", [math.nan] * len(values)), "rds", allow_nan=True)
        if len(rds) != len(values):
            raise ValueError(
                f"state['rds']: expected {len(values)} values like state['values'], got {len(rds)}"
            )
        bounds = []
        for key in ("reward_low", "reward_high"):
            v = state.get(key)
            if v is not None and (
                isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v)
            ):
                raise ValueError(f"state[{key!r}]: expected a finite number or null, got {v!r}")
            bounds.append(None if v is None else float(v))
        if (bounds[0] is None) != (bounds[1] is None) or (
            bounds[0] is not None and bounds[1] is not None and bounds[0] > bounds[1]
        ):
            raise ValueError(f"state: reward_low/reward_high must be both null or low <= high, got {bounds}")
        self.values = values[-self.window :]
        self.rds = rds[-self.window :]
        self.reward_low, self.reward_high = bounds

    @staticmethod
    def _numbers(vals: Any, key: str, *, allow_nan: bool) -> list[float]:
        if isinstance(vals, torch.Tensor):
            vals = vals.detach().cpu().reshape(-1).tolist()
        if not isinstance(vals, (list, tuple)):
            raise ValueError(
                f"state[{key!r}]: expected a list of numbers, got {type(vals).__name__}"
            )
        out = []
        for i, v in enumerate(vals):
            if v is None and allow_nan:
                v = math.nan
            ok = not isinstance(v, bool) and isinstance(v, (int, float))
            if not ok or (not math.isfinite(v) and not (allow_nan and math.isnan(v))):
                raise ValueError(f"state[{key!r}][{i}]: expected a finite number, got {v!r}")
            out.append(float(v))
        return out


def is_weighted(config: WeightingConfig) -> bool:
    """False for plain GRPO (weight 1 everywhere): no signal and no peer rule."""
    return config.signal != "none" or config.rule != "uncertainty"


def needs_state(config: WeightingConfig) -> bool:
    """Whether ``config`` carries state across batches: a rank window, a residual fit, or the
    reward range behind an automatic ``rd_max`` or a peer rule's accuracy."""
    if config.rule != "uncertainty":
        return True
    if config.signal == "none":
        return False
    uses_rd_scale = config.calibration in ("product", "snr") or (
        config.signal == "reward_dispersion" and config.normalization == "bound"
    )
    return (
        config.normalization == "rank"
        or config.calibration == "residual"
        or (uses_rd_scale and config.rd_max is None)
    )


def initial_state(config: WeightingConfig) -> WeightingState | None:
    """A fresh :class:`WeightingState` when ``config`` needs one (:func:`needs_state`), else None."""
    return WeightingState(window=config.rank_window) if needs_state(config) else None


# --------------------------------------------------------------------------------------------
# The steps
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


def _check_state(state: Any, why: str) -> WeightingState:
    if state is None:
        raise ValueError(
            f"state: {why} needs a WeightingState (got None); create one with "
            "gcpo.weighting.initial_state(config) and save it with your checkpoints"
        )
    if not isinstance(state, WeightingState):
        raise ValueError(f"state: expected a WeightingState, got {type(state).__name__}")
    return state


def normalize(
    uncertainty: torch.Tensor,
    config: WeightingConfig,
    state: WeightingState | None = None,
    *,
    group_size: Any = None,
    bound: Any = None,
    rd_scale: float | None = None,
    reward_dispersion: torch.Tensor | None = None,
) -> torch.Tensor:
    """Step 1: ``U[B]`` -> ``Un[B]`` in ``[0, 1]`` (``rank`` updates ``state``'s window).

    ``rank`` normalisation ranks among the window's and batch's active groups when
    ``reward_dispersion[B]`` is given (as :func:`group_weights` does), else among all of them.

    ``bound`` normalisation divides by ``bound`` when given, else by the registered bound of
    ``config.signal`` evaluated at ``group_size`` (an int or ``[B]`` tensor of valid group sizes;
    needed for ``semantic_entropy``, whose bound is ``log G``) and ``rd_scale`` (the bound of
    ``reward_dispersion``; default ``config.rd_max``). A bound of 0 (e.g. ``log 1``) gives
    ``Un = 0``.
    """
    u = uncertainty.to(torch.float64)
    if config.normalization == "rank":
        return _check_state(state, "rank normalisation").rank(u, reward_dispersion)
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
        scale = rd_scale if rd_scale is not None else config.rd_max
        if scale is None and config.signal == "reward_dispersion":
            raise ValueError(
                "rd_max: bound normalisation of reward_dispersion with rd_max=null (auto) needs "
                "the reward range: call group_weights with rewards= or set rd_max"
            )
        bound = spec.bound_value(gs, scale if scale is not None else 0.5)
    b_t = _bound_tensor(bound, u)
    return torch.where(b_t > 0, u / b_t.clamp_min(1e-300), torch.zeros_like(u)).clamp(0.0, 1.0)


def calibrate(
    normalized: torch.Tensor,
    reward_dispersion: torch.Tensor | None,
    config: WeightingConfig,
    *,
    rd_scale: float | None = None,
) -> torch.Tensor:
    """Step 2 for ``none`` / ``product`` / ``snr``: ``Un[B]`` -> ``U~[B]`` in ``[0, 1]``, with
    ``RDn = clip(RD / rd_scale, 0, 1)`` (``rd_scale`` default ``config.rd_max``).

    ``snr`` returns ``U~ = 1 - RDn / (RDn + lambda * Un)`` (so the weight is ``1 - U~``); when
    ``RDn + lambda * Un = 0`` (no reward dispersion and no disagreement) ``U~ = 0``. ``residual``
    needs the window of recent groups: use :func:`group_weights_detailed`.
    """
    if config.calibration == "none":
        return normalized
    if config.calibration == "residual":
        raise ValueError(
            "calibration: 'residual' regresses over the window of recent groups; use "
            "group_weights / group_weights_detailed with a WeightingState"
        )
    if reward_dispersion is None:
        raise ValueError(
            f"reward_dispersion: calibration={config.calibration!r} needs the groups' reward "
            "dispersion [B], got None"
        )
    scale = rd_scale if rd_scale is not None else config.rd_max
    if scale is None:
        raise ValueError(
            "rd_max: null (auto) needs the reward range; call group_weights with rewards= "
            "or set rd_max"
        )
    rdn = (reward_dispersion.to(torch.float64) / scale).clamp(0.0, 1.0)
    if config.calibration == "product":
        return (normalized * (1.0 - rdn)).clamp(0.0, 1.0)
    noise = config.snr_lambda * normalized
    denom = rdn + noise
    return torch.where(denom > 0, noise / denom.clamp_min(1e-300), torch.zeros_like(denom))


def residual_calibrate(
    uncertainty: torch.Tensor, reward_dispersion: torch.Tensor, state: WeightingState
) -> tuple[torch.Tensor, torch.Tensor]:
    """Step 2 for ``residual``: ``(Un[B], U~[B])`` of a batch against the window in ``state``.

    Over the *active pool* (the window's and the batch's groups with RD > 0): ``Un`` is the
    mid-rank of U; a least-squares fit ``Un ~ b0 + b1 x + b2 x^2`` with ``x = RD / max RD``
    removes what reward dispersion (for binary rewards, the pass rate up to p <-> 1-p)
    predicts; ``U~`` is the mid-rank of the residual. So U~ is uniform on [0, 1] over the
    pool whatever G, the pass rates or the reward scale (the fit is invariant to RD's scale),
    and carries only the disagreement the rewards do not account for. Inactive groups get
    ``Un = U~ = 0``. Does not update the window (the caller pushes the batch afterwards).
    """
    pool_u, pool_rd = state.pool(uncertainty, reward_dispersion)
    n_window = len(state.values)
    active = torch.isfinite(pool_rd) & (pool_rd > 0)
    batch_active = active[n_window:]
    un = torch.zeros(uncertainty.numel(), dtype=torch.float64)
    ut = torch.zeros_like(un)
    if not bool(batch_active.any()):
        return un, ut
    u_act, rd_act = pool_u[active], pool_rd[active]
    ranks = _mid_ranks(u_act, u_act)
    x = rd_act / rd_act.max()
    design = torch.stack([torch.ones_like(x), x, x * x], dim=1)
    coef = torch.linalg.lstsq(design, ranks.unsqueeze(1), driver="gelsd").solution
    resid = ranks - (design @ coef).squeeze(1)
    # ties in U and RD must stay ties: round away the last bits of the least-squares solve
    resid = torch.round(resid * 1e12) / 1e12
    batch_pos = active.nonzero().squeeze(1) >= n_window
    un[batch_active] = ranks[batch_pos]
    ut[batch_active] = _mid_ranks(resid[batch_pos], resid)
    return un, ut


def _active_rank(u: torch.Tensor, rd: torch.Tensor | None, state: WeightingState) -> torch.Tensor:
    """``rank`` normalisation: the mid-rank of each batch value among the pool's *active*
    groups (RD > 0) when RD is known, so groups with no learning signal (whose signal may sit at
    an extreme, e.g. NSR = 0) do not squeeze the active groups' ranks; among the whole pool when
    RD is not given (or for the window entries whose RD is unknown). Inactive batch groups get
    their rank among the active pool too (it does not matter: their weight is 1)."""
    pool_u, pool_rd = state.pool(u, rd)
    if rd is None:
        return _mid_ranks(pool_u[len(state.values) :], pool_u).to(u.device)
    keep = ~(torch.isfinite(pool_rd) & (pool_rd <= 0))  # active, or RD unknown (old windows)
    batch = pool_u[len(state.values) :]
    if not bool(keep.any()):
        return torch.zeros_like(batch).to(u.device)
    in_ref = keep[len(state.values) :].to(torch.float64)
    return _mid_ranks(batch, pool_u[keep], in_ref).to(u.device)


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


def _rd_scale(
    config: WeightingConfig,
    state: WeightingState | None,
    rewards: Any,
    mask: Any,
) -> float | None:
    """The ``rd_max`` in use: the configured one, else half the reward range seen (after adding
    this batch's ``rewards`` to ``state``), else None (unknown)."""
    if rewards is not None and state is not None:
        r = float_tensor(rewards, "rewards", 2)
        m = None if mask is None else as_tensor(mask, "mask").to(torch.bool)
        if m is not None and m.shape != r.shape:
            raise ValueError(f"mask: expected shape {tuple(r.shape)} like rewards, got {shape_of(m)}")
        state.observe_rewards(r, m)
    if config.rd_max is not None:
        return float(config.rd_max)
    if state is not None and state.reward_range is not None:
        lo, hi = state.reward_range
        return (hi - lo) / 2.0 if hi > lo else 0.5  # no dispersion seen yet: any scale will do
    return None


def group_weights_detailed(
    uncertainty: Any,
    reward_dispersion: Any | None,
    config: WeightingConfig,
    state: WeightingState | None = None,
    *,
    group_size: Any = None,
    bound: Any = None,
    rewards: Any = None,
    mask: Any = None,
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
    active = torch.ones_like(u, dtype=torch.bool) if rd is None else active_groups(rd)
    if not is_weighted(config):
        zeros = torch.zeros_like(u, dtype=out_dtype)
        return WeightingResult(torch.ones_like(u, dtype=out_dtype), zeros, zeros, active)
    if config.rule != "uncertainty":
        return _rule_weights(config, u, rd, active, state, rewards, mask)
    if needs_state(config):
        state = _check_state(
            state, f"weighting {config.signal!r} ({config.normalization}, {config.calibration})"
        )
    scale = _rd_scale(config, state, rewards, mask)
    clipped = 0
    if rd is not None and config.rd_max is not None:
        clipped = int((rd.to(torch.float64) > config.rd_max * (1 + 1e-6)).sum())
    if config.calibration == "residual":
        if rd is None:
            raise ValueError(
                "reward_dispersion: calibration='residual' needs the groups' reward dispersion "
                "[B], got None"
            )
        assert state is not None
        un, ut = residual_calibrate(u, rd, state)
        state.push(u, rd)
    else:
        un = normalize(
            u, config, state, group_size=group_size, bound=bound, rd_scale=scale,
            reward_dispersion=rd,
        )  # fmt: skip
        ut = calibrate(un, rd, config, rd_scale=scale)
    w = modulate(ut, config)
    fallback = False
    if config.renormalize:
        log_w = None
        if config.modulation == "exp" and config.calibration != "snr":
            log_w = -config.alpha * ut
        w, fallback = renormalize(w, rd, log_weights=log_w)
    # a group with no learning signal is left untouched (its GRPO advantages are 0 anyway)
    w = torch.where(active, w.to(torch.float64), torch.ones_like(w, dtype=torch.float64))
    return WeightingResult(
        w.to(out_dtype),
        un.to(out_dtype),
        ut.to(out_dtype),
        active,
        fallback,
        rd_scale=float(scale) if scale is not None else float("nan"),
        rd_clipped=clipped,
    )


def _rule_weights(
    config: WeightingConfig,
    u: torch.Tensor,
    rd: torch.Tensor | None,
    active: torch.Tensor,
    state: WeightingState | None,
    rewards: Any,
    mask: Any,
) -> WeightingResult:
    """A peer rule's weights (:mod:`gcpo.peers`), renormalised like gcpo's."""
    if rewards is None:
        raise ValueError(f"rewards: rule {config.rule!r} weights from the rewards [B, G], got None")
    st = _check_state(state, f"rule {config.rule!r}")
    _rd_scale(config, st, rewards, mask)  # widens the reward range by this batch
    assert st.reward_range is not None or not bool(active.any())
    low, high = st.reward_range if st.reward_range is not None else (0.0, 1.0)
    rule = get_rule(config.rule)
    raw = rule(rewards, mask, low=low, high=high, **rule.kwargs_for(config)).to(torch.float64)
    if raw.shape != u.shape:
        raise ValueError(f"rule {config.rule!r}: returned shape {shape_of(raw)}, expected {tuple(u.shape)}")
    w, fallback = renormalize(raw, rd) if config.renormalize else (raw, False)
    w = torch.where(active.to(w.device), w, torch.ones_like(w))
    zeros = torch.zeros_like(u)
    scale = (high - low) / 2.0 if high > low else 0.5
    return WeightingResult(w.to(u.dtype), zeros, zeros, active, fallback, rd_scale=scale)


def group_weights(
    uncertainty: Any,
    reward_dispersion: Any | None,
    config: WeightingConfig,
    state: WeightingState | None = None,
    *,
    group_size: Any = None,
    bound: Any = None,
    rewards: Any = None,
    mask: Any = None,
) -> torch.Tensor:
    """Per-group advantage weights (docs/design.md, section 4).

    Args:
        uncertainty: ``[B]`` raw signal values ``U`` (higher = more uncertain).
        reward_dispersion: ``[B]`` ``RD`` (population reward std), needed by ``residual`` /
            ``product`` / ``snr`` calibration and used by renormalisation; may be None
            otherwise (every group then counts as active).
        config: :class:`WeightingConfig`.
        state: :class:`WeightingState`, required (and updated) when the config carries state
            across batches (:func:`needs_state`: rank normalisation, residual calibration, an
            automatic ``rd_max``).
        group_size: valid group sizes (int or ``[B]``) for ``bound`` normalisation of
            ``semantic_entropy`` (bound ``log G``).
        bound: explicit bound (number or ``[B]``) overriding the registered one.
        rewards, mask: the batch's rewards ``[B, G]`` and validity mask; they widen the reward
            range in ``state`` behind ``rd_max: null`` (auto).

    Returns:
        ``[B]`` finite weights ``>= 0``: 1 for a group with ``RD = 0`` (no learning signal) and
        everywhere for ``signal: none``.
    """
    return group_weights_detailed(
        uncertainty,
        reward_dispersion,
        config,
        state,
        group_size=group_size,
        bound=bound,
        rewards=rewards,
        mask=mask,
    ).weights


def spread_table(
    alphas: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 3.0),
    active: tuple[int, ...] = (2, 4, 8),
    *,
    draws: int = 20000,
    seed: int = 0,
) -> dict[tuple[float, int], float]:
    """Expected per-step weight spread of ``exp`` modulation of a uniform ``U~`` (what
    ``residual`` calibration gives, whatever G or the reward scale): the mean over ``draws``
    steps of the population std of ``n`` active groups' renormalised weights, for each
    ``alpha`` and ``n`` in ``active``. Deterministic (seeded); the numbers behind the ``alpha``
    help text and docs/design.md's table."""
    gen = torch.Generator().manual_seed(seed)
    out: dict[tuple[float, int], float] = {}
    for n in active:
        ut = torch.rand(draws, n, generator=gen, dtype=torch.float64)
        for alpha in alphas:
            w = torch.exp(-alpha * (ut - ut.min(dim=1, keepdim=True).values))
            w = w / w.mean(dim=1, keepdim=True)
            out[(alpha, n)] = float(w.std(dim=1, unbiased=False).mean())
    return out
