"""Strength -> per-step weight spread of the `gcpo` preset, per group size G and active groups.

Simulates training steps of binary-reward groups (pass rate drawn per prompt, a disagreement
signal that depends on the pass rate and on noise, as real CD does) through
`gcpo.weighting.group_weights` with the `gcpo` preset (residual calibration, exp modulation,
state carried across steps like a training run), and prints the mean per-step spread (std of
the active groups' renormalised weights) beside the closed-form model that `gcpo train --help`
quotes (`gcpo.weighting.spread_table`, uniform U~).

    python benchmarks/strength_spread.py [--steps 300] [--output docs/results/calibration]
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
from pathlib import Path

import torch

from gcpo.presets import preset
from gcpo.signals import reward_dispersion
from gcpo.weighting import group_weights_detailed, initial_state, spread_table

ALPHAS = (0.25, 0.5, 1.0, 2.0, 3.0)


def simulate(g: int, n_active: int, alpha: float, steps: int, seed: int) -> float:
    config = dataclasses.replace(preset("gcpo"), alpha=alpha)
    state = initial_state(config)
    gen = torch.Generator().manual_seed(seed)
    spreads = []
    for _ in range(steps):
        # n_active mixed groups plus two constant ones (they must not matter)
        k = torch.randint(1, g, (n_active,), generator=gen)
        r = torch.zeros(n_active + 2, g, dtype=torch.float64)
        for b in range(n_active):
            r[b, torch.randperm(g, generator=gen)[: int(k[b])]] = 1.0
        r[-1] = 1.0
        p = r.mean(dim=1)
        u = 0.3 * (p * (1 - p)) + 0.1 * torch.rand(n_active + 2, generator=gen, dtype=torch.float64)
        res = group_weights_detailed(u, reward_dispersion(r), config, state, rewards=r)
        spreads.append(float(res.weights[res.active].std(unbiased=False)))
    return sum(spreads[20:]) / len(spreads[20:])  # after the window has filled a little


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--output", type=Path, default=None, help="write strength_spread.csv/.md here")
    args = ap.parse_args()
    model = spread_table(ALPHAS, (2, 4, 8))
    rows = []
    for g in (4, 8, 16):
        for n in (2, 4, 8):
            for alpha in ALPHAS:
                s = simulate(g, n, alpha, args.steps, args.seed)
                rows.append({"G": g, "active": n, "alpha": alpha, "spread": s, "model": model[(alpha, n)]})
                print(f"G={g:2d} active={n} alpha={alpha:<4g} spread {s:.3f} (uniform-U~ model {model[(alpha, n)]:.3f})", flush=True)
    if args.output is None:
        return
    args.output.mkdir(parents=True, exist_ok=True)
    with (args.output / "strength_spread.csv").open("w", newline="", encoding="utf-8") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows({k: f"{v:.4f}" if isinstance(v, float) else v for k, v in r.items()} for r in rows)
    lines = [
        "# Strength -> per-step weight spread (`gcpo` preset)",
        "",
        f"Simulated binary-reward steps ({args.steps} per cell) through `group_weights`; spread = std of",
        "the active groups' weights (mean 1). `python benchmarks/strength_spread.py --output docs/results/calibration`.",
        "",
        "| G | active groups | " + " | ".join(f"alpha {a:g}" for a in ALPHAS) + " |",
        "|---:|---:|" + "---:|" * len(ALPHAS),
    ]
    for g in (4, 8, 16):
        for n in (2, 4, 8):
            cells = [f"{r['spread']:.2f}" for r in rows if r["G"] == g and r["active"] == n]
            lines.append(f"| {g} | {n} | " + " | ".join(cells) + " |")
    lines.append("| model (uniform U~) | 2/4/8 | " + " | ".join("/".join(f"{model[(a, n)]:.2f}" for n in (2, 4, 8)) for a in ALPHAS) + " |")
    (args.output / "strength_spread.md").write_text("\n".join(lines) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
