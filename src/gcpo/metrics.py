"""The per-step ``gcpo/*`` metrics of a scored batch, one definition for every trainer.

:func:`score_metrics` is what the TRL trainer (``gcpo.trl.GCPOTrainer``) and the verl trainer
mode (``gcpo.verl``) log each step, so a dashboard or ``gcpo compare`` reads the same names from
either engine. Weights are reported over the *active* groups only (reward dispersion > 0): the
ones whose advantages the weights actually scale.
"""

from __future__ import annotations

import torch

from gcpo.scoring import ScoreResult

__all__ = ["score_metrics"]


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
