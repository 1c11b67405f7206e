"""``metrics.png``: reward, GCPO weights, reward dispersion and signals over training steps."""

from __future__ import annotations

from pathlib import Path
from typing import Any

__all__ = ["plot_metrics"]


def _series(rows: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    xs, ys = [], []
    for r in rows:
        v = r.get(key)
        if isinstance(v, (int, float)):
            xs.append(float(r["step"]))
            ys.append(float(v))
    return xs, ys


def plot_metrics(rows: list[dict[str, Any]], path: str | Path, *, title: str = "") -> Path:
    """Write a three-panel PNG (reward; weight mean/min/max; RD and each signal's mean)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(3, 1, figsize=(7, 8), sharex=True)
    ax = axes[0]
    for key, label in (("reward", "train reward (mean)"), ("reward_std", "reward std")):
        ax.plot(*_series(rows, key), label=label, marker=".")
    ax.set_ylabel("reward")
    ax.legend(loc="best", fontsize=8)
    ax = axes[1]
    xs, mean = _series(rows, "gcpo/weight_mean")
    _, lo = _series(rows, "gcpo/weight_min")
    _, hi = _series(rows, "gcpo/weight_max")
    if xs:
        ax.plot(xs, mean, label="weight mean", marker=".")
        if len(lo) == len(xs) and len(hi) == len(xs):
            ax.fill_between(xs, lo, hi, alpha=0.25, label="weight min..max")
    ax.set_ylabel("group weight")
    if xs:
        ax.legend(loc="best", fontsize=8)
    else:  # gcpo/weight_* are logged only in steps with an active group (RD > 0)
        ax.text(0.5, 0.5, "no step had a group with RD > 0", ha="center", va="center",
                transform=ax.transAxes, fontsize=9)  # fmt: skip
    ax = axes[2]
    keys = ["gcpo/reward_dispersion", "gcpo/frac_zero_reward_dispersion"]
    keys += sorted({k for r in rows for k in r if k.startswith("gcpo/signal/")})
    for key in keys:
        series = _series(rows, key)
        if series[0]:
            ax.plot(*series, label=key.removeprefix("gcpo/"), marker=".")
    ax.set_ylabel("signal (batch mean)")
    ax.set_xlabel("step")
    ax.legend(loc="best", fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    out = Path(path)
    fig.savefig(out, dpi=100)
    plt.close(fig)
    return out
