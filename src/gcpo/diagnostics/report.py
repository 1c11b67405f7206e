"""Correlation tables and scatter plots from per-group diagnostic rows.

Input: one dict per prompt group holding the signal columns and the targets ``grad_variance``
(V) and ``grad_nsr`` (NSR) plus ``reward_dispersion`` (RD) and ``mean_tokens`` (mean completion
length, the second covariate of the partial correlations). Only groups with RD > 0 enter the
correlations: with RD = 0 every GRPO advantage is zero, so V = 0 by construction and the group
says nothing about which signal tracks noise.
"""

from __future__ import annotations

import csv
import io
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from gcpo.diagnostics.stats import (
    Correlation,
    bootstrap_ci,
    correlate,
    partial_spearman,
    spearman,
    spearman_difference,
)

__all__ = [
    "TARGETS",
    "PAPER_PAIRS",
    "correlation_rows",
    "correlations_markdown",
    "comparison_rows",
    "comparison_markdown",
    "level_rows",
    "level_markdown",
    "rows_to_csv",
    "scatter_plot",
]

TARGETS = {"grad_variance": "V", "grad_nsr": "NSR"}
LENGTH = "mean_tokens"
LEVEL = "level"  # a task kind's difficulty level (graded-arithmetic, MATH levels), when it has one
# the paper's claim: the geometric signals track gradient noise better than semantic entropy
PAPER_PAIRS = (("cd", "se_lik"), ("bot", "se_lik"))
# the partial correlation needs at least 4 points (3 for plain Spearman); below that the table
# says n/a instead of printing the 0.0 that the statistics return for degenerate input
MIN_GROUPS = 4


def _informative(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if float(r.get("reward_dispersion", 0.0)) > 0.0]


def correlation_rows(
    rows: Sequence[dict[str, Any]],
    signals: Sequence[str],
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    targets: Mapping[str, str] = TARGETS,
) -> list[dict[str, Any]]:
    """One row per (signal, target): Spearman rho, 95 % CI, partial rho given RD and partial rho
    given RD and mean completion length jointly (when the rows have ``mean_tokens``), with CIs."""
    used = _informative(rows)
    out: list[dict[str, Any]] = []
    rd = [float(r["reward_dispersion"]) for r in used]
    length = [float(r[LENGTH]) for r in used] if all(LENGTH in r for r in used) else None
    for name in signals:
        x = [float(r[name]) for r in used]
        for target, label in targets.items():
            y = [float(r[target]) for r in used]
            c: Correlation = correlate(
                x, y, rd, second_covariate=length, n_resamples=n_resamples, seed=seed
            )
            out.append(
                {
                    "signal": name,
                    "target": label,
                    "n_groups": c.n,
                    "spearman": c.rho,
                    "ci_low": c.ci_low,
                    "ci_high": c.ci_high,
                    "partial_given_rd": c.partial,
                    "partial_ci_low": c.partial_ci_low,
                    "partial_ci_high": c.partial_ci_high,
                    "partial_given_rd_len": c.partial2,
                    "partial_rd_len_ci_low": c.partial2_ci_low,
                    "partial_rd_len_ci_high": c.partial2_ci_high,
                }
            )
    return out


def comparison_rows(
    rows: Sequence[dict[str, Any]],
    pairs: Sequence[tuple[str, str]] = PAPER_PAIRS,
    *,
    n_resamples: int = 1000,
    seed: int = 0,
    targets: Mapping[str, str] = TARGETS,
) -> list[dict[str, Any]]:
    """The paper's comparison: ``rho(a, T) - rho(b, T)`` for each pair (a, b) and target T, over
    the groups with RD > 0, with a paired percentile-bootstrap 95 % CI (each resample of groups
    gives both rhos); the same for the partial rhos given RD and mean completion length."""
    used = _informative(rows)
    out: list[dict[str, Any]] = []
    rd = [float(r["reward_dispersion"]) for r in used]
    length = [float(r[LENGTH]) for r in used] if all(LENGTH in r for r in used) else None
    for a_name, b_name in pairs:
        if not rows or a_name not in rows[0] or b_name not in rows[0]:
            continue
        a = [float(r[a_name]) for r in used]
        b = [float(r[b_name]) for r in used]
        for target, label in targets.items():
            y = [float(r[target]) for r in used]
            row: dict[str, Any] = {
                "signal": a_name,
                "versus": b_name,
                "target": label,
                "n_groups": len(used),
                "difference": spearman_difference(a, b, y),
            }
            row["ci_low"], row["ci_high"] = bootstrap_ci(
                spearman_difference, a, b, y, n_resamples=n_resamples, seed=seed
            )
            if length is not None:
                row["partial_difference"] = _partial_difference(a, b, y, rd, length)
                row["partial_ci_low"], row["partial_ci_high"] = bootstrap_ci(
                    _partial_difference, a, b, y, rd, length,
                    n_resamples=n_resamples, seed=seed,
                )  # fmt: skip
            out.append(row)
    return out


def comparison_markdown(comp: Sequence[dict[str, Any]], *, n_groups: int) -> str:
    """A Markdown table of :func:`comparison_rows`."""
    lines = [
        f"Difference of Spearman rho against the target, signal minus the signal it is compared "
        f"with, over the {n_groups} groups with RD > 0, [paired bootstrap 95 % CI: both rhos on "
        "the same resample of groups]; > 0 means the first signal tracks the target better. "
        "Partial = the same for the partial rhos given RD and mean completion length.",
        "",
        "| signal − versus | target | rho difference | partial difference (RD, length) |",
        "|---|---|---|---|",
    ]
    for r in comp:
        partial = (
            _fmt(r["partial_difference"], r["partial_ci_low"], r["partial_ci_high"])
            if "partial_difference" in r
            else "n/a"
        )
        if n_groups < MIN_GROUPS:
            lines.append(f"| {r['signal']} − {r['versus']} | {r['target']} | n/a | n/a |")
            continue
        lines.append(
            f"| {r['signal']} − {r['versus']} | {r['target']} | "
            f"{_fmt(r['difference'], r['ci_low'], r['ci_high'])} | {partial} |"
        )
    return "\n".join(lines) + "\n"


def _partial_difference(a: object, b: object, y: object, *covariates: object) -> float:
    return partial_spearman(a, y, *covariates) - partial_spearman(b, y, *covariates)


def level_rows(
    rows: Sequence[dict[str, Any]],
    signals: Sequence[str],
    *,
    pairs: Sequence[tuple[str, str]] = PAPER_PAIRS,
    n_resamples: int = 1000,
    seed: int = 0,
    targets: Mapping[str, str] = TARGETS,
) -> list[dict[str, Any]]:
    """Difficulty level as a third confound, for rows that carry a ``level`` (two or more levels
    among the groups with RD > 0; else ``[]``).

    Per signal and target: Spearman rho inside each level (``rho_<level>``, ``n_<level>``) and
    the partial rho given RD, mean completion length and the level (one indicator per level but
    the first) jointly, with a bootstrap CI. Per pair ``(a, b)`` of ``pairs`` (rows with a
    ``versus`` key): the difference of those partial rhos with a paired bootstrap CI.
    """
    used = _informative(rows)
    if not used or not all(r.get(LEVEL) is not None for r in used):
        return []
    levels = sorted({str(r[LEVEL]) for r in used})
    if len(levels) < 2:
        return []
    covariates = [[float(r["reward_dispersion"]) for r in used]]
    if all(LENGTH in r for r in used):
        covariates.append([float(r[LENGTH]) for r in used])
    covariates += [[float(str(r[LEVEL]) == lv) for r in used] for lv in levels[1:]]
    by_level = {lv: [r for r in used if str(r[LEVEL]) == lv] for lv in levels}
    out: list[dict[str, Any]] = []
    for name in signals:
        x = [float(r[name]) for r in used]
        for target, label in targets.items():
            y = [float(r[target]) for r in used]
            row: dict[str, Any] = {
                "signal": name, "target": label, "n_groups": len(used), "levels": levels,
            }  # fmt: skip
            for lv, sub in by_level.items():
                row[f"n_{lv}"] = len(sub)
                row[f"rho_{lv}"] = spearman(
                    [float(r[name]) for r in sub], [float(r[target]) for r in sub]
                )
            row["partial_given_rd_len_level"] = partial_spearman(x, y, *covariates)
            row["ci_low"], row["ci_high"] = bootstrap_ci(
                partial_spearman, x, y, *covariates, n_resamples=n_resamples, seed=seed
            )
            out.append(row)
    for a_name, b_name in pairs:
        if a_name not in used[0] or b_name not in used[0]:
            continue
        a = [float(r[a_name]) for r in used]
        b = [float(r[b_name]) for r in used]
        for target, label in targets.items():
            y = [float(r[target]) for r in used]
            diff: dict[str, Any] = {
                "signal": a_name, "versus": b_name, "target": label, "n_groups": len(used),
                "difference": _partial_difference(a, b, y, *covariates),
            }  # fmt: skip
            diff["ci_low"], diff["ci_high"] = bootstrap_ci(
                _partial_difference, a, b, y, *covariates, n_resamples=n_resamples, seed=seed
            )
            out.append(diff)
    return out


def level_markdown(
    lv_rows: Sequence[dict[str, Any]], *, n_groups: int, targets: Mapping[str, str] = TARGETS
) -> str:
    """Markdown of :func:`level_rows`: per-level rho against the first target, the partial rhos
    given RD, length and level against every target, then the paired differences."""
    signal_rows = [r for r in lv_rows if "versus" not in r]
    if not signal_rows or n_groups < MIN_GROUPS:
        return ""
    levels = signal_rows[0]["levels"]
    first = next(iter(targets.values()))
    by_signal: dict[str, dict[str, dict[str, Any]]] = {}
    for r in signal_rows:
        by_signal.setdefault(r["signal"], {})[r["target"]] = r
    head = signal_rows[0]
    lines = [
        f"Within difficulty level, over the {n_groups} groups with RD > 0: Spearman rho against "
        f"{first} inside each level, and the partial rho given RD, mean completion length and "
        "the level jointly (one indicator per level), [bootstrap 95 % CI].",
        "",
        "| signal | "
        + " | ".join(f"rho vs {first} in {lv} (n={head[f'n_{lv}']})" for lv in levels)
        + " | "
        + " | ".join(f"partial vs {label} given RD, len, level" for label in targets.values())
        + " |",
        "|---|" + "---|" * (len(levels) + len(targets)),
    ]
    for name, t in by_signal.items():
        cells = [f"{t[first][f'rho_{lv}']:+.2f}" for lv in levels]
        cells += [
            _fmt(t[label]["partial_given_rd_len_level"], t[label]["ci_low"], t[label]["ci_high"])
            for label in targets.values()
            if label in t
        ]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    pair_rows = [r for r in lv_rows if "versus" in r]
    if pair_rows:
        lines += [
            "",
            "The paper's comparison with the level held fixed as well: difference of the partial "
            "rhos given RD, length and level, [paired bootstrap 95 % CI].",
            "",
            "| signal − versus | target | partial difference (RD, length, level) |",
            "|---|---|---|",
        ]
        for r in pair_rows:
            lines.append(
                f"| {r['signal']} − {r['versus']} | {r['target']} | "
                f"{_fmt(r['difference'], r['ci_low'], r['ci_high'])} |"
            )
    return "\n".join(lines) + "\n"


def _fmt(rho: float, lo: float, hi: float) -> str:
    return f"{rho:+.2f} [{lo:+.2f}, {hi:+.2f}]"


def correlations_markdown(
    corr: Sequence[dict[str, Any]],
    *,
    n_groups: int,
    n_total: int,
    title: str = "",
    targets: Mapping[str, str] = TARGETS,
) -> str:
    """A Markdown table: one line per signal, rho and partial rho against V and NSR."""
    by_signal: dict[str, dict[str, dict[str, Any]]] = {}
    for r in corr:
        by_signal.setdefault(r["signal"], {})[r["target"]] = r
    lines = []
    if title:
        lines += [f"### {title}", ""]
    lines += [
        f"Spearman rho over the {n_groups} of {n_total} groups with RD > 0, "
        "[bootstrap 95 % CI]; partial = partial Spearman given RD; given RD, len = given RD and "
        "mean completion length jointly."
        + (
            f" Fewer than {MIN_GROUPS} such groups: no correlation is defined."
            if n_groups < MIN_GROUPS
            else ""
        ),
        "",
        "| signal | "
        + " | ".join(
            f"rho vs {label} | partial vs {label} given RD | given RD, len"
            for label in targets.values()
        )
        + " |",
        "|---|" + "---|---|---|" * len(targets),
    ]
    for name, t in by_signal.items():
        cells = []
        for label in targets.values():
            r = t[label]
            if n_groups < MIN_GROUPS:
                cells += ["n/a", "n/a", "n/a"]
                continue
            cells.append(_fmt(r["spearman"], r["ci_low"], r["ci_high"]))
            cells.append(_fmt(r["partial_given_rd"], r["partial_ci_low"], r["partial_ci_high"]))
            if r.get("partial_given_rd_len") is None:
                cells.append("n/a")
            else:
                cells.append(
                    _fmt(
                        r["partial_given_rd_len"],
                        r["partial_rd_len_ci_low"],
                        r["partial_rd_len_ci_high"],
                    )
                )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def rows_to_csv(rows: Sequence[dict[str, Any]], columns: Sequence[str] | None = None) -> str:
    """CSV text of ``rows`` (columns: the given ones, else the union in first-seen order)."""
    if columns is None:
        seen: dict[str, None] = {}
        for r in rows:
            for k in r:
                seen.setdefault(k, None)
        columns = list(seen)
    buf = io.StringIO()
    writer = csv.DictWriter(
        buf, fieldnames=list(columns), extrasaction="ignore", lineterminator="\n"
    )
    writer.writeheader()
    for r in rows:
        writer.writerow({k: _csv_value(r.get(k, "")) for k in columns})
    return buf.getvalue()


def _csv_value(v: Any) -> Any:
    if isinstance(v, float):
        return f"{v:.6g}"
    return v


def scatter_plot(
    rows: Sequence[dict[str, Any]],
    signals: Sequence[str],
    target: str,
    path: str | Path,
    *,
    title: str = "",
) -> Path:
    """A grid of scatter plots (one panel per signal) of ``target`` against each signal.

    Groups with RD > 0 only; the target is on a log axis when it spans more than two decades.
    Colour = RD, so a reader sees at once how much of the trend reward dispersion explains.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    used = _informative(rows)
    n = max(len(signals), 1)
    cols = min(n, 3)
    nrows = math.ceil(n / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(4.2 * cols, 3.4 * nrows), squeeze=False)
    y = [float(r[target]) for r in used]
    rd = [float(r["reward_dispersion"]) for r in used]
    positive = [v for v in y if v > 0]
    log_y = bool(positive) and max(positive) / min(positive) > 100
    label = TARGETS.get(target, target)
    for ax, name in zip(axes.flat, signals, strict=False):
        x = [float(r[name]) for r in used]
        sc = ax.scatter(x, y, c=rd, cmap="viridis", s=18, vmin=0.0, vmax=max(rd + [0.5]))
        if log_y:
            ax.set_yscale("log")
        ax.set_xlabel(name)
        ax.set_ylabel(label)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    fig.colorbar(sc, ax=axes.ravel().tolist(), label="reward dispersion (RD)")
    fig.suptitle(title or f"{label} vs signals ({len(used)} groups with RD > 0)")
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    from gcpo.io import atomic_write_bytes

    return atomic_write_bytes(out, buf.getvalue())
