"""The main job, measured: `gcpo train` (configs/quickstart.yaml) once per preset, side by side.

Each preset runs as its own `gcpo train --preset P --output <tmp>/P` subprocess, one after the
other on the same machine, so their wall times are comparable within this run. Prints, per
preset: wall time, its ratio to the first preset and to the 15-minute budget, peak RSS of the
training process, the held-out reward before -> after, the mean number of active groups per
step (reward dispersion > 0) and the applied-weight spread (mean per-step std of the weights
over active groups; 0 for grpo) from the run's summary.json.

    python benchmarks/quickstart.py                          # presets grpo,seed-grpo,gcpo
    python benchmarks/quickstart.py --presets gcpo           # just the default job
    python benchmarks/quickstart.py --presets gcpo,gcpo-bot max_steps=10   # extra overrides
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

BUDGET_S = 15 * 60


def run_one(preset: str, out: Path, overrides: list[str]) -> dict[str, Any]:
    from gcpo.train.config import QUICKSTART

    gcpo = shutil.which("gcpo") or str(Path(sys.executable).with_name("gcpo"))
    # the quickstart file named explicitly, so the benchmark measures that file whatever the
    # command's default
    cmd = [gcpo, "train", str(QUICKSTART), "--preset", preset, "--output", str(out), *overrides]
    before = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    start = time.perf_counter()
    proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    wall = time.perf_counter() - start
    if proc.returncode != 0:
        sys.stdout.write(proc.stdout[-4000:])
        raise SystemExit(f"gcpo train --preset {preset} failed with exit code {proc.returncode}")
    peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    summary = json.loads((out / "summary.json").read_text(encoding="utf-8"))
    return {
        "wall_s": wall,
        # ru_maxrss of children is the maximum over all children so far; a later, smaller run
        # reports the earlier peak, so it is only exact for the largest run (marked with >=).
        "peak_rss_gb": max(peak_kb, before) / 1e6,
        "peak_is_exact": peak_kb > before,
        "before": summary["heldout_reward_before"],
        "after": summary["heldout_reward_after"],
        "mean_weight": summary["mean_weight"],
        "weight_spread": summary.get("weight_spread"),
        "active": summary.get("mean_active_groups"),
    }


def _fmt(v: float | None) -> str:
    return "n/a" if v is None else f"{v:.3f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="grpo,seed-grpo,gcpo")
    parser.add_argument("--keep", metavar="DIR", help="keep the run directories under DIR")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    args = parser.parse_args()
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gcpo-quickstart-"))
    root.mkdir(parents=True, exist_ok=True)
    print(f"cpus={os.cpu_count()} load average {os.getloadavg()[0]:.1f}; runs in {root}")
    rows = {}
    for preset in presets:
        print(f"running gcpo train --preset {preset} ...", flush=True)
        rows[preset] = run_one(preset, root / preset, list(args.overrides))
        r = rows[preset]
        print(f"  {r['wall_s']:.0f} s, held-out {r['before']:.3f} -> {r['after']:.3f}", flush=True)
    first = rows[presets[0]]["wall_s"]
    print(f"load average at the end {os.getloadavg()[0]:.1f}\n")
    print(
        "| preset | wall | vs first | vs 15-min budget | peak RSS | held-out before -> after "
        "| active groups/step | applied-weight spread |"
    )
    print("|---|---:|---:|---:|---:|---|---:|---:|")
    for preset, r in rows.items():
        rss = f"{r['peak_rss_gb']:.2f} GB" if r["peak_is_exact"] else f"<= {r['peak_rss_gb']:.2f} GB"
        print(
            f"| {preset} | {r['wall_s'] / 60:.1f} min | {r['wall_s'] / first:.2f} | "
            f"{r['wall_s'] / BUDGET_S:.2f} | {rss} | {r['before']:.3f} -> {r['after']:.3f} | "
            f"{_fmt(r['active'])} | {_fmt(r['weight_spread'])} |"
        )
    if not args.keep:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
