"""Which signal columns ``gcpo analyze`` reports, how each is computed, and the per-preset
calibrated uncertainty and weight of every group."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "RD_COLUMN",
    "signal_label",
    "signal_plan",
    "make_scorers",
    "group_signals",
    "preset_columns",
]

#: the calibrator's column (not a signal label: every table filters and partials on it)
RD_COLUMN = "reward_dispersion"


def signal_label(config: Any) -> str:
    """The unique label of ``config``'s signal (``se_lik``, ``cd``, ``bot_seg16``, ...): the same
    name the trainer's metrics (``gcpo/signal/<label>``) and ``gcpo signals`` use."""
    from gcpo.signals import get_signal

    return get_signal(config.signal).label_for(config)


def signal_plan(
    presets: Sequence[str], cluster_threshold: float = 0.9, signals: Sequence[str] = ()
) -> tuple[dict[str, Any], dict[str, str]]:
    """Which WeightingConfig computes each output column, and which column each preset weights.

    Columns are keyed by the signal's unique label. The baselines are semantic entropy as
    SEED-GRPO computes it (``seed-grpo`` settings: answer clusters, likelihood weighting ->
    ``se_lik``; with the embedding clusterer -> ``se_emb_lik``) and every other built-in signal
    with the ``gcpo`` preset's settings (``cd``, ``bot``, ``eig``, ``te``, ``nll``), plus
    ``signals`` (registered names or aliases, e.g. a plugin's) and RD (:data:`RD_COLUMN`). A
    preset whose signal configuration is already a column reuses it; otherwise its label is a
    column of its own.
    """
    import dataclasses

    from gcpo.presets import preset
    from gcpo.scoring import resolve_signal_names

    seed, gcpo = preset("seed-grpo"), preset("gcpo")
    configs = [
        seed,
        dataclasses.replace(seed, se_clusterer="embedding", cluster_threshold=cluster_threshold),
    ]
    builtin = ["cosine_dispersion", "barycentric_transport", "eigenscore", "token_entropy",
               "negative_log_likelihood"]  # fmt: skip
    extra = [n for n in resolve_signal_names(list(signals)) if n not in builtin]
    configs += [dataclasses.replace(gcpo, signal=name) for name in [*builtin, *extra]]
    columns: dict[str, Any] = {signal_label(c): c for c in configs}
    columns[RD_COLUMN] = dataclasses.replace(gcpo, signal="reward_dispersion")
    preset_column: dict[str, str] = {}
    for name in presets:
        config = preset(name)
        if config.signal == "none":
            continue
        label = signal_label(config)
        columns.setdefault(label, config)
        preset_column[name] = label
    return columns, preset_column


def group_signals(groups: Any, scorers: list[tuple[Any, list[str]]]) -> dict[str, float]:
    """Every planned column for one group (``scorers``: (GroupScorer, its columns) pairs)."""
    out: dict[str, float] = {}
    for scorer, cols in scorers:
        values = scorer.signals(groups, [scorer.config.signal])
        (value,) = values.values()
        for col in cols:
            out[col] = float(value.reshape(-1)[0])
    return out


def make_scorers(
    columns: dict[str, Any], embedder: Any, answer_fn: Callable[[str], str | None] | None = None
) -> list[tuple[Any, list[str]]]:
    """One GroupScorer per column (columns are distinct signal configurations), with the column
    it fills. ``answer_fn`` is the answer key of answer-clustered semantic entropy (the task
    kind's, as in training)."""
    from gcpo.scoring import GroupScorer

    return [(GroupScorer(config, embedder, answer_fn), [col]) for col, config in columns.items()]


def preset_columns(
    rows: Sequence[dict[str, Any]], presets: Sequence[str], preset_column: dict[str, str]
) -> list[dict[str, float]]:
    """Per group, ``cal_<preset>`` (calibrated uncertainty U~) and ``weight_<preset>``.

    All groups are weighted in one call, so ``rank`` normalisation ranks each group among all
    analysed groups (a fresh window), and ``renormalize`` averages over all groups with RD > 0.
    """
    import torch

    from gcpo.presets import preset
    from gcpo.weighting import group_weights_detailed, initial_state

    out: list[dict[str, float]] = [{} for _ in rows]
    if not rows:
        return out
    rd = torch.tensor([float(r[RD_COLUMN]) for r in rows], dtype=torch.float64)
    group_size = torch.tensor([len(r["rewards"]) for r in rows])
    g_max = int(group_size.max())
    rewards = torch.zeros(len(rows), g_max, dtype=torch.float64)
    mask = torch.zeros(len(rows), g_max, dtype=torch.bool)
    for b, r in enumerate(rows):  # peer rules (learnability, mgpo, dgpo) weight from the rewards
        n = len(r["rewards"])
        rewards[b, :n] = torch.tensor([float(x) for x in r["rewards"]], dtype=torch.float64)
        mask[b, :n] = True
    for name in presets:
        config = preset(name)
        col = preset_column.get(name)
        u = (
            torch.zeros(len(rows), dtype=torch.float64)
            if col is None
            else torch.tensor([float(r[col]) for r in rows], dtype=torch.float64)
        )
        res = group_weights_detailed(
            u, rd, config, initial_state(config), group_size=group_size, rewards=rewards, mask=mask
        )
        for i, o in enumerate(out):
            o[f"cal_{name}"] = float(res.calibrated[i])
            o[f"weight_{name}"] = float(res.weights[i])
    return out
