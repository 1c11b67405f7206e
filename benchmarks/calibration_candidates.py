"""Which calibration should set GCPO's weights? Candidates compared on the committed groups.

Reads the per-group table of a `gcpo analyze` run (default: the 580 prompts of
docs/results/analyze-graded, 272 of them with reward dispersion > 0, G = 8, with each group's
measured gradient variance V and noise-to-signal ratio NSR) and, for each candidate weighting
of the Cosine Dispersion signal, reports over the active groups:

- Spearman rho of the *down-weighting* (-weight: positive = noisier groups get less weight)
  with V and with NSR, with a bootstrap 95 % CI;
- the share of the weights' variance that the group's pass rate alone explains (eta^2);
- the mean per-step weight spread (std of the renormalised weights of n active groups drawn
  at random, n = 2, 4, 8) at a few strengths.

Every weight comes from gcpo.weighting itself (the whole table is one pool, so ranks are
against all groups, like a long-run window). Writes candidates.md / candidates.csv.

    python benchmarks/calibration_candidates.py --output docs/results/calibration
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import numpy as np
import torch
from scipy.stats import spearmanr

from gcpo.presets import preset
from gcpo.weighting import (
    WeightingConfig,
    calibrate,
    initial_state,
    modulate,
    renormalize,
    residual_calibrate,
)

ROOT = Path(__file__).resolve().parent.parent


def read_groups(path: Path) -> dict[str, np.ndarray]:
    with path.open(encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    keys = ("cd", "reward_dispersion", "grad_variance", "grad_nsr", "accuracy")
    return {k: np.array([float(r[k]) for r in rows]) for k in keys}


def mid_rank(values: np.ndarray) -> np.ndarray:
    """Mid-rank percentile in [0, 1] among the others (gcpo's rank definition)."""
    less = (values[None, :] < values[:, None]).sum(1)
    equal = (values[None, :] == values[:, None]).sum(1)
    return (less + 0.5 * (equal - 1)) / max(len(values) - 1, 1)


@dataclasses.dataclass
class Candidate:
    name: str
    what: str
    config: WeightingConfig | None  # None: a weight computed here (learnability, oracle)
    strengths: tuple[float, ...]
    strength_field: str = "alpha"


def calibrated_values(cand: Candidate, d: dict[str, np.ndarray]) -> np.ndarray:
    """U~ of every group (0 for inactive ones), the pool = the whole table."""
    u = torch.tensor(d["cd"], dtype=torch.float64)
    rd = torch.tensor(d["reward_dispersion"], dtype=torch.float64)
    active = rd > 0
    on = active.numpy()
    if cand.name in ("learnability", "oracle"):  # ranked over the active groups, like residual
        out = np.zeros(len(on))
        key = -d["reward_dispersion"] ** 2 if cand.name == "learnability" else d["grad_nsr"]
        out[on] = mid_rank(key[on])
        return out
    cfg = cand.config
    assert cfg is not None
    if cfg.calibration == "residual":
        _, ut = residual_calibrate(u, rd, initial_state(cfg))  # type: ignore[arg-type]
        return ut.numpy()
    un = torch.tensor(mid_rank(d["cd"]), dtype=torch.float64)
    if cfg.calibration == "snr":  # its strength (lambda) acts inside the calibration
        return un.numpy()
    ut = calibrate(un, rd, cfg).numpy()
    if cand.name == "rank(product)":
        out = np.zeros_like(ut)
        out[on] = mid_rank(ut[on])
        return out
    return ut


def weights_of(cand: Candidate, ut: np.ndarray, rd: np.ndarray, strength: float) -> np.ndarray:
    """Renormalised weights of a set of groups from their U~ at one strength."""
    t = torch.tensor(ut, dtype=torch.float64)
    rdt = torch.tensor(rd, dtype=torch.float64)
    if cand.name == "learnability":
        w = torch.tensor(rd, dtype=torch.float64) ** (2 * strength)  # p(1-p)^strength for 0/1
        return renormalize(w, rdt)[0].numpy()
    cfg = cand.config if cand.config is not None else preset("gcpo")
    cfg = dataclasses.replace(cfg, **{cand.strength_field: strength})
    if cfg.calibration == "snr":
        t = calibrate(t, rdt, cfg)
    w = modulate(t, cfg)
    log_w = -cfg.alpha * t if cfg.modulation == "exp" and cfg.calibration != "snr" else None
    return renormalize(w, rdt, log_weights=log_w)[0].numpy()


def eta_squared(y: np.ndarray, groups: np.ndarray) -> float:
    total = ((y - y.mean()) ** 2).sum()
    if total == 0:
        return float("nan")
    between = sum(((y[groups == v].mean() - y.mean()) ** 2) * (groups == v).sum() for v in np.unique(groups))
    return float(between / total)


def rho_ci(x: np.ndarray, y: np.ndarray, rng: np.random.Generator, n: int) -> tuple[float, float, float]:
    rho = float(spearmanr(x, y)[0])
    idx = rng.integers(0, len(x), size=(n, len(x)))
    boots = [spearmanr(x[i], y[i])[0] for i in idx]
    lo, hi = np.nanpercentile(boots, [2.5, 97.5])
    return rho, float(lo), float(hi)


def step_spread(
    cand: Candidate, ut: np.ndarray, rd: np.ndarray, strength: float, n: int, rng: np.random.Generator, draws: int
) -> float:
    spreads = []
    for _ in range(draws):
        pick = rng.choice(len(ut), size=n, replace=False)
        w = weights_of(cand, ut[pick], rd[pick], strength)
        spreads.append(float(np.std(w)))
    return float(np.mean(spreads))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=Path, default=ROOT / "docs/results/analyze-graded/groups.csv")
    ap.add_argument("--output", type=Path, default=None, help="write candidates.md / .csv here")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--draws", type=int, default=2000, help="random steps per spread figure")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    d = read_groups(args.groups)
    gcpo = preset("gcpo")
    product = dataclasses.replace(gcpo, calibration="product", modulation="linear", w_min=0.1, rd_max=0.5)
    cands = [
        Candidate("product", "gcpo 0.1: Un (1 - RD/0.5), linear, w_min 0.1", product, (0.5, 1.0, 2.0)),
        Candidate("rank(product)", "the product, re-ranked over the active groups, exp", dataclasses.replace(gcpo, calibration="product", rd_max=0.5), (0.5, 1.0, 2.0)),
        Candidate("residual", "rank of Un's residual given RD (chosen), exp", gcpo, (0.5, 1.0, 2.0)),
        Candidate("snr", "weight RDn / (RDn + lambda Un)", dataclasses.replace(gcpo, calibration="snr", rd_max=0.5), (0.5, 1.0, 2.0), "snr_lambda"),
        Candidate("none", "rank of CD alone, exp (no calibration)", dataclasses.replace(gcpo, calibration="none"), (0.5, 1.0, 2.0)),
        Candidate("learnability", "RD only: weight (p(1-p))^s (the RD-only ablation)", None, (0.5, 1.0, 2.0)),
        Candidate("oracle", "rank of the measured NSR itself, exp (the ceiling)", None, (0.5, 1.0, 2.0)),
    ]
    active = d["reward_dispersion"] > 0
    a = {k: v[active] for k, v in d.items()}
    rng = np.random.default_rng(args.seed)
    rows = []
    for cand in cands:
        ut = calibrated_values(cand, d)[active]
        w1 = weights_of(cand, ut, a["reward_dispersion"], 1.0)
        row: dict[str, object] = {"candidate": cand.name, "what": cand.what}
        for target, key in (("V", "grad_variance"), ("NSR", "grad_nsr")):
            rho, lo, hi = rho_ci(-w1, a[key], rng, args.bootstrap)
            row[f"rho_{target}"], row[f"rho_{target}_lo"], row[f"rho_{target}_hi"] = rho, lo, hi
        row["eta2_pass_rate"] = eta_squared(w1, a["accuracy"])
        row["rho_rd"] = float(spearmanr(-w1, a["reward_dispersion"])[0])
        for s in cand.strengths:
            for n in (2, 4, 8):
                row[f"spread_s{s:g}_n{n}"] = step_spread(cand, ut, a["reward_dispersion"], s, n, rng, args.draws)
        rows.append(row)
        print(
            f"{cand.name:14s} rho(-w,V) {row['rho_V']:+.2f} rho(-w,NSR) {row['rho_NSR']:+.2f} "
            f"[{row['rho_NSR_lo']:+.2f}, {row['rho_NSR_hi']:+.2f}] eta2 {row['eta2_pass_rate']:.2f} "
            f"spread@1,n4 {row['spread_s1_n4']:.3f}",
            flush=True,
        )
    if args.output is None:
        return
    args.output.mkdir(parents=True, exist_ok=True)
    with (args.output / "candidates.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        for row in rows:
            w.writerow({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in row.items()})
    lines = [
        "# Calibration candidates on the committed groups",
        "",
        f"{int(active.sum())} groups with RD > 0 of `{args.groups.relative_to(ROOT) if args.groups.is_relative_to(ROOT) else args.groups}` "
        f"(G = 8, binary rewards); {args.bootstrap} bootstrap resamples; spreads are means over "
        f"{args.draws} random steps of n active groups. Made by "
        "`python benchmarks/calibration_candidates.py --output docs/results/calibration`.",
        "",
        "rho(-w, ·): Spearman rho of the down-weighting with the group's gradient variance V and",
        "noise-to-signal ratio NSR (positive = noisier groups get less weight), weights at strength 1.",
        "eta^2: share of the weights' variance the pass rate alone explains.",
        "",
        "| candidate | what | rho(-w, V) | rho(-w, NSR) [95 % CI] | eta^2 pass rate | rho(-w, RD) | spread n=2/4/8 at s=0.5 | s=1 | s=2 |",
        "|---|---|---:|---|---:|---:|---|---|---|",
    ]
    for r in rows:
        def sp(s: float, r: dict[str, object] = r) -> str:
            return "/".join(f"{r[f'spread_s{s:g}_n{n}']:.2f}" for n in (2, 4, 8))  # type: ignore[str-format]
        lines.append(
            f"| `{r['candidate']}` | {r['what']} | {r['rho_V']:+.2f} [{r['rho_V_lo']:+.2f}, {r['rho_V_hi']:+.2f}] | "
            f"{r['rho_NSR']:+.2f} [{r['rho_NSR_lo']:+.2f}, {r['rho_NSR_hi']:+.2f}] | {r['eta2_pass_rate']:.2f} | "
            f"{r['rho_rd']:+.2f} | {sp(0.5)} | {sp(1.0)} | {sp(2.0)} |"
        )
    lines += [
        "",
        "Strength s is `alpha` (`snr`: `snr_lambda`; `learnability`: the exponent on p(1-p)).",
    ]
    (args.output / "candidates.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print(f"wrote {args.output / 'candidates.md'}")


if __name__ == "__main__":
    main()
