"""Size a `gcpo analyze` run: seconds per group (RD > 0 vs RD = 0), the share of informative
groups per difficulty level, and how many prompts / how long for a target number of groups with
RD > 0.

Runs `gcpo analyze` on a small sample (default 40 prompts of graded-arithmetic's train split)
in a temporary folder and times it two ways: wall clock per group (as `groups.jsonl` records it)
and CPU time of the whole process. With torch_threads=1 the CPU time is what the run takes on an
idle core; on a shared machine the wall clock is longer by the load. Groups with RD = 0 skip the
gradient passes (their advantages are all 0), so they cost only sampling and signals.

The projection draws prompts the way the task does (levels take turns, a level whose problems
run out leaves the rotation) and adds, per level, the measured share of informative groups, until
the expected number of groups with RD > 0 reaches --target.

    python benchmarks/analyze_sizing.py --prompts 40 --target 256
    python benchmarks/analyze_sizing.py --split test --prompts 24
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from collections import defaultdict
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--embedder", default="all-MiniLM-L6-v2")
    parser.add_argument("--task", default="graded-arithmetic")
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--prompts", type=int, default=40)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--torch-threads", type=int, default=1)
    parser.add_argument("--target", type=int, default=256, help="groups with RD > 0 wanted")
    parser.add_argument("--keep", metavar="DIR", help="analysis output folder to keep")
    args = parser.parse_args()

    from gcpo.diagnostics.analyze import AnalyzeConfig, run_analysis

    out = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gcpo-analyze-sizing-"))
    cfg = AnalyzeConfig(
        model=args.model,
        embedder=args.embedder,
        task=args.task,
        task_split=args.split,
        prompts=args.prompts,
        group_size=args.group_size,
        temperature=args.temperature,
        max_new_tokens=args.max_new_tokens,
        torch_threads=args.torch_threads,
        bootstrap=100,
        output=str(out),
        progress=False,
    )
    print(
        f"cpus={os.cpu_count()} load average {os.getloadavg()[0]:.1f}; {cfg.model} on "
        f"{args.task} ({args.split} split): {args.prompts} prompts x G={args.group_size}, "
        f"T={args.temperature}, max_new_tokens={args.max_new_tokens}, torch_threads="
        f"{args.torch_threads}; output {out}",
        flush=True,
    )
    wall0, cpu0 = time.perf_counter(), time.process_time()
    result = run_analysis(cfg, progress=False, log=lambda *_: None)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    rows = result.rows
    if result.new_groups != len(rows):
        print(f"(resumed: {len(rows) - result.new_groups} groups were already in {out})")
    group_wall = sum(r["seconds"] for r in rows)
    # CPU seconds per wall second of group work: converts each group's wall time to idle time
    cpu_per_wall = (cpu / wall) if wall > 0 else 1.0
    inf = [r for r in rows if r["reward_dispersion"] > 0]
    zero = [r for r in rows if r["reward_dispersion"] == 0]
    t_inf = statistics.mean(r["seconds"] for r in inf) if inf else 0.0
    t_zero = statistics.mean(r["seconds"] for r in zero) if zero else 0.0
    print(
        f"load average at the end {os.getloadavg()[0]:.1f}\n\n"
        f"whole run: {wall:.0f} s wall, {cpu:.0f} s CPU (groups {group_wall:.0f} s wall; the rest "
        f"is model / embedder loading and the report)\n"
        f"per group, wall: RD > 0 {t_inf:.1f} s ({len(inf)} groups), RD = 0 {t_zero:.1f} s "
        f"({len(zero)} groups), ratio {t_inf / max(t_zero, 1e-9):.2f}\n"
        f"per group, idle (wall x CPU/wall = {cpu_per_wall:.2f}): RD > 0 "
        f"{t_inf * cpu_per_wall:.1f} s, RD = 0 {t_zero * cpu_per_wall:.1f} s\n"
    )
    by_level: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for r in rows:
        by_level[str(r.get("level", args.task))].append(r)
    frac = {lv: sum(r["reward_dispersion"] > 0 for r in rs) / len(rs) for lv, rs in by_level.items()}
    print("| level | groups | RD > 0 | share |")
    print("|---|---:|---:|---:|")
    for lv, rs in by_level.items():
        print(f"| {lv} | {len(rs)} | {sum(r['reward_dispersion'] > 0 for r in rs)} | {frac[lv]:.2f} |")

    # projection: the task's own prompt stream, levels as drawn
    from gcpo.tasks.registry import get_task

    make_rows = get_task(args.task).make_rows
    assert make_rows is not None
    n, expected, seconds, stream = 0, 0.0, 0.0, []
    while expected < args.target:
        n = max(2 * n, 64)
        try:
            stream = make_rows(n, split=args.split, seed=cfg.seed)
        except ValueError:
            break  # fewer distinct problems than asked: the projection stops at what exists
        expected = sum(frac.get(str(r.get("level", args.task)), 0.0) for r in stream)
    need = 0
    expected = 0.0
    for r in stream:
        share = frac.get(str(r.get("level", args.task)), 0.0)
        expected += share
        seconds += share * t_inf + (1 - share) * t_zero
        need += 1
        if expected >= args.target:
            break
    levels = defaultdict(int)
    for r in stream[:need]:
        levels[str(r.get("level", args.task))] += 1
    print(
        f"\nfor {args.target} groups with RD > 0: about {need} prompts "
        f"({', '.join(f'{k} {v}' for k, v in levels.items())}), expected {expected:.0f} "
        f"informative; {seconds / 60:.0f} min at this load, "
        f"{seconds * cpu_per_wall / 60:.0f} min on an idle core"
        + ("" if expected >= args.target else " (the split has too few distinct problems)")
    )


if __name__ == "__main__":
    main()
