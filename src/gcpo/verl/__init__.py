"""verl plugin: the ``"gcpo"`` advantage estimator.

``import gcpo.verl`` registers :func:`compute_gcpo_outcome_advantage` in verl's
``verl.trainer.ppo.core_algos`` registry (``register_adv_est("gcpo")``) when verl is installed;
without verl the module still imports (nothing of gcpo needs verl) and :func:`register` raises an
``ImportError`` saying so. Select it with ``algorithm.adv_estimator=gcpo`` and import ``gcpo.verl``
in the driver process before training starts.

Numbers: with weight 1 the estimator reproduces verl's ``compute_grpo_outcome_advantage``
(group by ``index``/uid, ``torch.std`` with Bessel correction, ``epsilon=1e-6``, a single-response
group gets mean 0 / std 1, ``norm_adv_by_std_in_grpo`` from the algorithm config), then multiplies
each group by its GCPO weight from :func:`gcpo.weighting.group_weights_detailed`.

Settings come from ``config.gcpo`` (the ``algorithm`` config verl passes in), a mapping with an
optional ``preset`` (default ``"gcpo"``), ``uncertainty_key`` (default ``"gcpo_uncertainty"``) and
any :class:`gcpo.weighting.WeightingConfig` field as an override.

Where the uncertainty comes from: verl 0.9.1's ``compute_advantage`` passes a custom estimator
only ``token_level_rewards``, ``response_mask``, ``config`` and ``index`` -- not the responses'
text or the ``non_tensor_batch``. So:

- ``signal: none`` and ``signal: reward_dispersion`` work from the rewards alone;
- any other signal needs a per-response value (constant within a group, e.g. computed with
  :class:`gcpo.scoring.GroupScorer` in a batch reward function and returned as reward extra info
  under ``uncertainty_key``), passed either as ``uncertainty=`` or inside ``non_tensor_batch=``.
  Stock verl 0.9.1 does not forward ``non_tensor_batch`` to custom estimators (it does only for
  its own ``gdpo``), so that needs the trainer to add ``adv_kwargs["non_tensor_batch"] =
  data.non_tensor_batch`` for ``gcpo``; without it the estimator raises a ``ValueError`` that says
  so rather than silently falling back to GRPO.

``rank`` normalisation keeps its window in :data:`RANK_STATE` (driver process); save
``rank_state_dict()`` with your checkpoints and restore it with ``load_rank_state_dict``.
"""

from __future__ import annotations

import importlib.util
import sys
import warnings
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch

from gcpo import config as cfg
from gcpo.signals import reward_dispersion
from gcpo.validation import float_tensor as _float_tensor
from gcpo.validation import shape_of as _shape
from gcpo.weighting import (
    RankNormalizerState,
    WeightingConfig,
    group_weights_detailed,
    initial_state,
    preset,
)

__all__ = [
    "ESTIMATOR_NAME",
    "DEFAULT_UNCERTAINTY_KEY",
    "RANK_STATE",
    "register",
    "compute_gcpo_outcome_advantage",
    "group_rewards",
    "verl_grpo_advantages",
    "weighting_from_verl_config",
    "rank_state_dict",
    "load_rank_state_dict",
]

ESTIMATOR_NAME = "gcpo"
DEFAULT_UNCERTAINTY_KEY = "gcpo_uncertainty"

RANK_STATE: dict[str, RankNormalizerState] = {}


def _get(config: Any, key: str, default: Any = None) -> Any:
    if config is None:
        return default
    if isinstance(config, Mapping):
        return config.get(key, default)
    getter = getattr(config, "get", None)
    if callable(getter):  # omegaconf DictConfig / verl AlgoConfig
        return getter(key, default)
    return getattr(config, key, default)


def weighting_from_verl_config(config: Any) -> tuple[WeightingConfig, str]:
    """``(WeightingConfig, uncertainty_key)`` from ``config.gcpo`` (preset + field overrides)."""
    section = _get(config, "gcpo", None)
    data: dict[str, Any] = {}
    if section is not None:
        items = section.items() if hasattr(section, "items") else None
        if items is None:
            raise ValueError(f"config.gcpo: expected a mapping, got {type(section).__name__}")
        data = {str(k): v for k, v in items}
    name = data.pop("preset", "gcpo")
    key = data.pop("uncertainty_key", DEFAULT_UNCERTAINTY_KEY)
    base = cfg.to_dict(preset(name))
    base.update(data)
    return cfg.from_dict(WeightingConfig, base, prefix="config.gcpo."), str(key)


def group_rewards(
    scores: torch.Tensor, index: Any
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """Regroup flat per-response scores ``[bs]`` by uid.

    Returns ``(rewards[B, Gmax], mask[B, Gmax], group_of[bs], slot_of[bs])``: groups in order of
    first appearance of their uid, responses in batch order within a group.
    """
    uids = list(np.asarray(index, dtype=object).reshape(-1))
    if len(uids) != scores.shape[0]:
        raise ValueError(f"index: expected {scores.shape[0]} uids, got {len(uids)}")
    gid: dict[Any, int] = {}
    group_of: list[int] = []
    slot_of: list[int] = []
    counts: list[int] = []
    for uid in uids:
        g = gid.setdefault(uid, len(gid))
        if g == len(counts):
            counts.append(0)
        group_of.append(g)
        slot_of.append(counts[g])
        counts[g] += 1
    g_max = max(counts, default=0)
    go = torch.tensor(group_of, dtype=torch.long)
    so = torch.tensor(slot_of, dtype=torch.long)
    rewards = torch.zeros((len(counts), g_max), dtype=scores.dtype)
    mask = torch.zeros((len(counts), g_max), dtype=torch.bool)
    rewards[go, so] = scores.detach().cpu()
    mask[go, so] = True
    return rewards, mask, go, so


def verl_grpo_advantages(
    scores: torch.Tensor, index: Any, epsilon: float = 1e-6, norm_adv_by_std_in_grpo: bool = True
) -> torch.Tensor:
    """verl's GRPO outcome advantage ``[bs]`` (vectorised, same convention as
    ``verl.trainer.ppo.core_algos.compute_grpo_outcome_advantage``)."""
    rewards, mask, go, so = group_rewards(scores, index)
    n = mask.sum(dim=1, keepdim=True)
    valid = mask.to(rewards.dtype)
    mean = (rewards * valid).sum(dim=1, keepdim=True) / n.clamp_min(1)
    var = (((rewards - mean) * valid) ** 2).sum(dim=1, keepdim=True) / (n - 1).clamp_min(1)
    std = var.sqrt()
    single = n == 1  # verl: a lone response keeps its raw score (mean 0, std 1)
    mean = torch.where(single, torch.zeros_like(mean), mean)
    std = torch.where(single, torch.ones_like(std), std)
    adv = rewards - mean
    if norm_adv_by_std_in_grpo:
        adv = adv / (std + epsilon)
    return adv[go, so].to(scores.device)


def _state_for(config: WeightingConfig) -> RankNormalizerState | None:
    if initial_state(config) is None:
        return None
    key = f"{config.signal}/{config.rank_window}"
    if key not in RANK_STATE:
        RANK_STATE[key] = RankNormalizerState(window=config.rank_window)
    return RANK_STATE[key]


def rank_state_dict() -> dict[str, Any]:
    """Plain-data snapshot of the rank windows (save it with your checkpoints)."""
    return {k: v.state_dict() for k, v in RANK_STATE.items()}


def load_rank_state_dict(state: Mapping[str, Any]) -> None:
    RANK_STATE.clear()
    for k, v in state.items():
        st = RankNormalizerState(window=int(v["window"]))
        st.load_state_dict(dict(v))
        RANK_STATE[str(k)] = st


def _per_group(values: Any, name: str, group_of: torch.Tensor, n_groups: int) -> torch.Tensor:
    """Per-response values ``[bs]`` (constant within a group) -> per-group ``[B]``."""
    v = _float_tensor(np.asarray(values, dtype=np.float64).reshape(-1), name, 1)
    if v.shape[0] != group_of.shape[0]:
        raise ValueError(
            f"{name}: expected one value per response ({group_of.shape[0]}), got {_shape(v)}"
        )
    out = torch.zeros(n_groups, dtype=torch.float64)
    out[group_of] = v  # last write wins; check constancy below
    if not torch.allclose(out[group_of], v, atol=1e-6, rtol=1e-6):
        raise ValueError(
            f"{name}: values differ within a group (one value per prompt group expected)"
        )
    return out


def compute_gcpo_outcome_advantage(
    token_level_rewards: torch.Tensor,
    response_mask: torch.Tensor,
    index: Any = None,
    config: Any = None,
    *,
    non_tensor_batch: Mapping[str, Any] | None = None,
    uncertainty: Any = None,
    epsilon: float = 1e-6,
    norm_adv_by_std_in_grpo: bool | None = None,
    **kwargs: Any,
) -> tuple[torch.Tensor, torch.Tensor]:
    """GCPO outcome advantage for verl.

    Args:
        token_level_rewards: ``(bs, response_length)``; the outcome score is its row sum.
        response_mask: ``(bs, response_length)``.
        index: ``(bs,)`` uid per response; responses with the same uid form a group.
        config: verl's algorithm config; ``config.gcpo`` holds the weighting settings,
            ``config.norm_adv_by_std_in_grpo`` (default True) the GRPO scaling.
        non_tensor_batch: optional mapping holding per-response ``uncertainty_key`` values.
        uncertainty: optional per-response ``(bs,)`` uncertainty (overrides ``non_tensor_batch``).
        epsilon: added to the group std (verl's default ``1e-6``).
        norm_adv_by_std_in_grpo: overrides the config value.

    Returns:
        ``(advantages, returns)``, both ``(bs, response_length)`` = weight(group) * A * mask.
    """
    if index is None:
        raise ValueError("index: the gcpo estimator needs the uid of every response (got None)")
    scores = token_level_rewards.sum(dim=-1)
    if norm_adv_by_std_in_grpo is None:
        norm_adv_by_std_in_grpo = bool(_get(config, "norm_adv_by_std_in_grpo", True))
    weighting, key = weighting_from_verl_config(config)
    with torch.no_grad():
        adv = verl_grpo_advantages(scores, index, epsilon, norm_adv_by_std_in_grpo)
        rewards, mask, go, _ = group_rewards(scores, index)
        n_groups = rewards.shape[0]
        rd = _population_std(rewards, mask)
        if weighting.signal == "none":
            u = torch.zeros(n_groups, dtype=torch.float64)
        elif weighting.signal == "reward_dispersion":
            u = rd.clone()
        else:
            values = uncertainty
            if values is None and non_tensor_batch is not None and key in non_tensor_batch:
                values = non_tensor_batch[key]
            if values is None:
                raise ValueError(
                    f"uncertainty: signal {weighting.signal!r} needs a per-response value under "
                    f"{key!r}; verl passes custom estimators only rewards, masks and uids, so put "
                    f"it in the batch (reward extra info) and forward non_tensor_batch to the "
                    f"estimator (see gcpo.verl docstring), or use signal reward_dispersion/none"
                )
            u = _per_group(values, key if uncertainty is None else "uncertainty", go, n_groups)
        res = group_weights_detailed(
            u, rd, weighting, _state_for(weighting), group_size=mask.sum(dim=1)
        )
        w = res.weights.to(adv.dtype).to(adv.device)[go.to(adv.device)]
        out = (w * adv).unsqueeze(-1) * response_mask
    return out, out


def _population_std(rewards: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return reward_dispersion(rewards.to(torch.float64), mask)


def register() -> None:
    """Register the ``"gcpo"`` estimator in verl's registry (idempotent)."""
    try:
        from verl.trainer.ppo.core_algos import register_adv_est
    except ImportError as exc:
        raise ImportError(
            "gcpo.verl.register(): verl is not installed (pip install verl); gcpo itself does "
            f"not need it ({exc})"
        ) from exc
    register_adv_est(ESTIMATOR_NAME)(compute_gcpo_outcome_advantage)


def _register_if_installed() -> None:
    try:
        installed = importlib.util.find_spec("verl") is not None
    except ValueError:  # a stub module without a spec in sys.modules
        installed = "verl" in sys.modules
    if not installed:
        return
    try:
        register()
    except ImportError as exc:  # verl present but broken: gcpo still works, say why
        warnings.warn(
            f"gcpo.verl: verl is installed but could not be imported ({exc})", stacklevel=2
        )


_register_if_installed()
