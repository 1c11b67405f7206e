"""The per-step ``gcpo/*`` metrics of a scored batch, one definition for every trainer, and
what they add up to over a run (:func:`weight_summary`, :func:`train_reward_span`).

:func:`score_metrics` is what the TRL trainer (``gcpo.trl.GCPOTrainer``) and the verl trainer
mode (``gcpo.verl``) log each step, so a dashboard or ``gcpo compare`` reads the same names from
either engine. Weights are reported over the *active* groups only (reward dispersion > 0): the
ones whose advantages the weights actually scale.
"""

from __future__ import annotations

from typing import Any

import torch

from gcpo.scoring import ScoreResult

__all__ = ["score_metrics", "train_reward_span", "weight_summary"]


def score_metrics(result: ScoreResult) -> dict[str, float]:
    """``gcpo/*`` numbers of one scored batch.

    ``gcpo/active_groups``, ``gcpo/frac_zero_reward_dispersion``, ``gcpo/weight_mean|min|max|std``
    (over the active groups; absent when none is active), ``gcpo/uniform_fallback``,
    ``gcpo/rd_clipped`` (groups whose RD exceeded a configured rd_max), ``gcpo/inert_step`` (1
    when the weights could not change the update),
    ``gcpo/reward_dispersion`` (mean over groups), ``gcpo/signal/<label>`` (mean of every other
    signal computed, by its unique label, e.g. ``cd``, ``se_lik``), ``gcpo/embed_s`` and
    ``gcpo/signals_s``.
    """
    out: dict[str, float] = {}
    active = result.active
    n_active = int(active.sum())
    rd = result.reward_dispersion.to(torch.float64)
    out["gcpo/active_groups"] = float(n_active)
    out["gcpo/frac_zero_reward_dispersion"] = 1.0 - n_active / max(rd.numel(), 1)
    if n_active:
        w = result.weights.to(torch.float64)[active]
        out["gcpo/weight_mean"] = float(w.mean())
        out["gcpo/weight_min"] = float(w.min())
        out["gcpo/weight_max"] = float(w.max())
        out["gcpo/weight_std"] = float(w.std(unbiased=False))
    out["gcpo/uniform_fallback"] = float(result.fallback)
    out["gcpo/rd_clipped"] = float(result.rd_clipped)
    if result.weighted:
        out["gcpo/inert_step"] = float(not result.acts)
    out["gcpo/reward_dispersion"] = float(rd.mean()) if rd.numel() else 0.0
    for name, value in result.signals.items():
        if name != "reward_dispersion":
            label = result.labels.get(name, name)
            out[f"gcpo/signal/{label}"] = float(value.to(torch.float64).mean())
    out["gcpo/embed_s"] = float(result.timings.get("embed_s", 0.0))
    out["gcpo/signals_s"] = float(result.timings.get("signals_s", 0.0))
    return out


def weight_summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """What the weighting did over a run, from its logged steps: the applied weights (over
    active groups, RD > 0), their spread, and how many groups per step were active.

    ``few_active_groups`` is set when fewer than 2 groups were active in most steps: then
    renormalisation forces the single active group's weight to 1 and the run is plain GRPO.
    """

    def values(key: str) -> list[float]:
        return [float(r[key]) for r in rows if isinstance(r.get(key), (int, float))]

    means, mins, maxs = values("gcpo/weight_mean"), values("gcpo/weight_min"), values("gcpo/weight_max")
    stds, active = values("gcpo/weight_std"), values("gcpo/active_groups")
    few = sum(a < 2 for a in active)
    return {
        "mean_weight": sum(means) / len(means) if means else None,
        "min_weight": min(mins) if mins else None,
        "max_weight": max(maxs) if maxs else None,
        "weight_spread": sum(stds) / len(stds) if stds else None,
        "mean_active_groups": sum(active) / len(active) if active else None,
        "few_active_groups": bool(active) and few > len(active) / 2,
    }


def train_reward_span(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The training reward of the first and of the last logged step that has one."""
    rewards = [r["reward"] for r in rows if r.get("reward") is not None]
    return {
        "train_reward_first": rewards[0] if rewards else None,
        "train_reward_last": rewards[-1] if rewards else None,
    }
