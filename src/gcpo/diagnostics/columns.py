"""Which signal columns ``gcpo analyze`` reports, how each is computed, and the per-preset
calibrated uncertainty and weight of every group."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

__all__ = ["SIGNAL_COLUMNS", "signal_plan", "make_scorers", "group_signals", "preset_columns"]

# name in the outputs -> what it is (higher = more uncertain for every one of them)
SIGNAL_COLUMNS: dict[str, str] = {
    "se_answer": "semantic entropy, answer clusters, likelihood-weighted (SEED-GRPO's signal)",
    "se_embedding": "semantic entropy, embedding clusters (cosine >= threshold), likelihood-weighted",
    "cosine_dispersion": "CD = 1 - ||mean unit embedding||",
    "barycentric_transport": "BoT over segment point clouds",
    "eigenscore": "EigenScore (INSIDE) of the completion embeddings",
    "token_entropy": "mean next-token entropy of the completions",
    "negative_log_likelihood": "mean of -l_i (length-normalised sequence NLL)",
    "reward_dispersion": "RD, population std of the rewards (the calibrator)",
}


# Fields of a WeightingConfig that change a signal's value (the rest only shape the weight).
_SIGNAL_FIELDS = (
    "signal",
    "se_clusterer",
    "se_likelihood_weighting",
    "cluster_threshold",
    "completion_weighting",
    "bot_max_segments",
    "bot_support_size",
    "bot_max_iter",
    "eigenscore_alpha",
)


def _signal_key(config: Any) -> tuple[Any, ...]:
    key = {f: getattr(config, f) for f in _SIGNAL_FIELDS}
    if config.signal != "semantic_entropy" or config.se_clusterer != "embedding":
        key["cluster_threshold"] = None
    if config.signal != "semantic_entropy":
        key.update(se_clusterer=None, se_likelihood_weighting=None)
    if config.signal not in ("cosine_dispersion", "barycentric_transport"):
        key["completion_weighting"] = None
    if config.signal != "barycentric_transport":
        key.update(bot_max_segments=None, bot_support_size=None, bot_max_iter=None)
    if config.signal != "eigenscore":
        key["eigenscore_alpha"] = None
    return tuple(key.values())


def signal_plan(
    presets: Sequence[str], cluster_threshold: float = 0.9
) -> tuple[dict[str, Any], dict[str, str]]:
    """Which WeightingConfig computes each output column, and which column each preset weights.

    The baseline columns (:data:`SIGNAL_COLUMNS`) use the ``seed-grpo`` preset's settings for
    semantic entropy (answer clusters, likelihood weighting; ``se_embedding`` swaps in the
    embedding clusterer) and the ``gcpo`` preset's settings for everything else. A preset whose
    signal settings match a column reuses it; otherwise it gets its own column ``u_<preset>``.
    """
    import dataclasses

    from gcpo.presets import preset

    seed, gcpo = preset("seed-grpo"), preset("gcpo")
    columns: dict[str, Any] = {
        "se_answer": seed,
        "se_embedding": dataclasses.replace(
            seed, se_clusterer="embedding", cluster_threshold=cluster_threshold
        ),
    }
    for name in list(SIGNAL_COLUMNS)[2:]:
        columns[name] = dataclasses.replace(gcpo, signal=name)
    by_key = {_signal_key(c): name for name, c in columns.items()}
    preset_column: dict[str, str] = {}
    for name in presets:
        config = preset(name)
        if config.signal == "none":
            continue
        key = _signal_key(config)
        if key not in by_key:
            by_key[key] = f"u_{name}"
            columns[f"u_{name}"] = config
        preset_column[name] = by_key[key]
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
    """One GroupScorer per distinct signal setting, with the columns it fills. ``answer_fn`` is
    the answer key of answer-clustered semantic entropy (the task kind's, as in training)."""
    from gcpo.scoring import GroupScorer

    merged: dict[tuple[Any, ...], tuple[Any, list[str]]] = {}
    for col, config in columns.items():
        key = _signal_key(config)
        if key not in merged:
            merged[key] = (GroupScorer(config, embedder, answer_fn), [])
        merged[key][1].append(col)
    return list(merged.values())


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
    rd = torch.tensor([float(r["reward_dispersion"]) for r in rows], dtype=torch.float64)
    group_size = torch.tensor([len(r["rewards"]) for r in rows])
    for name in presets:
        config = preset(name)
        col = preset_column.get(name)
        u = (
            torch.zeros(len(rows), dtype=torch.float64)
            if col is None
            else torch.tensor([float(r[col]) for r in rows], dtype=torch.float64)
        )
        res = group_weights_detailed(u, rd, config, initial_state(config), group_size=group_size)
        for i, o in enumerate(out):
            o[f"cal_{name}"] = float(res.calibrated[i])
            o[f"weight_{name}"] = float(res.weights[i])
    return out
