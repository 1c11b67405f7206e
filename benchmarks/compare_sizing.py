"""Size a `gcpo compare` run: seconds per training step, per held-out eval and per checkpoint,
each preset side by side on the comparison's own base config, and the projected total.

Every part is timed twice: wall clock, and CPU time of this process (all its threads). On a
machine shared with other jobs the wall clock grows with the load; with torch_threads=1 the CPU
time is what the same part takes on an idle core, so the projection is made from both (the
"idle" columns use CPU time and assume one busy core, a conservative figure for 2 threads).

For every preset it trains ``--steps`` steps of the comparison's train config (the same model,
task, batch and lengths as the real runs) in this process, one preset after the other, timing
each optimizer step (generation, rewards, signals, loss and backward), the held-out scoring at
step 0 and at the last step, one checkpoint save and the start-up (model, embedder, data).
Then it projects one run of each preset at the comparison's max_steps / eval_every /
save_steps and the whole comparison over its seeds.

    python benchmarks/compare_sizing.py arithmetic --steps 4
    python benchmarks/compare_sizing.py arithmetic --presets grpo,gcpo train.num_generations=4
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def _now() -> tuple[float, float]:
    return time.perf_counter(), time.process_time()


def _since(a: tuple[float, float], b: tuple[float, float]) -> tuple[float, float]:
    return b[0] - a[0], b[1] - a[1]


def _timer_callback() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.first_step_begin: tuple[float, float] | None = None
            self.step_begin = (0.0, 0.0)
            self.step_end = (0.0, 0.0)
            self.steps: list[tuple[float, float]] = []  # (wall, cpu) per step
            self.saves: list[tuple[float, float]] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_begin = _now()
            if self.first_step_begin is None:
                self.first_step_begin = self.step_begin

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_end = _now()
            self.steps.append(_since(self.step_begin, self.step_end))

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.saves.append(_since(self.step_end, _now()))

    return StepTimer()


def measure(c: Any, preset: str, steps: int, root: Path) -> dict[str, Any]:
    from gcpo.compare import train_config_for
    from gcpo.train.data import build_data, load_reward
    from gcpo.train.run import run_training
    from gcpo.trl.callbacks import HeldoutRewardCallback

    base = train_config_for(c, c.presets[0], c.heldout_seed, root / "heldout")
    _, heldout = build_data(base)
    run_dir = root / preset
    config = train_config_for(c, preset, c.seeds[0], run_dir)
    config.max_steps = steps
    config.save_steps = steps
    config.num_eval_prompts = 0
    timer = _timer_callback()
    curve = root / f"{preset}-curve.jsonl"
    evals: list[tuple[float, float]] = []

    class TimedHeldout(HeldoutRewardCallback):
        def _score(self, step: int, state: Any, kwargs: dict[str, Any]) -> None:
            t0 = _now()
            super()._score(step, state, kwargs)
            evals.append(_since(t0, _now()))

    heldout_cb = TimedHeldout(
        curve,
        heldout,
        load_reward(base),
        every=steps,
        max_new_tokens=base.eval_max_new_tokens,
        batch_size=base.eval_batch_size,
    )
    started = _now()
    run_training(config, run_dir=run_dir, callbacks=[heldout_cb, timer])
    evals = [e for e in evals if e[0] > 0.01]  # calls that found the step already scored
    # the step-0 eval runs at train begin, after start-up and before the first step
    before_first = _since(started, timer.first_step_begin or started)
    out: dict[str, Any] = {}
    for k, name in ((0, "wall"), (1, "cpu")):
        out[name] = {
            "startup": before_first[k] - evals[0][k],
            # the first step also warms up kernels and caches: the median is what a long run sees
            "step": statistics.median([s[k] for s in timer.steps[1:]] or [timer.steps[0][k]]),
            "first_step": timer.steps[0][k],
            "eval": statistics.mean(e[k] for e in evals),
            "save": statistics.mean(s[k] for s in timer.saves) if timer.saves else 0.0,
        }
    out["heldout_accuracy"] = [json.loads(x)["heldout_accuracy"] for x in curve.open()]
    return out


def project(c: Any, m: dict[str, Any]) -> float:
    """Seconds of one run of the comparison from the measured parts."""
    from gcpo.compare import train_config_for

    base = train_config_for(c, c.presets[0], c.seeds[0], "-")
    steps = base.max_steps
    evals = 1 + len({s for s in range(1, steps + 1) if s % c.eval_every == 0} | {steps})
    saves = steps // base.save_steps if base.save_steps else 1
    return m["startup"] + steps * m["step"] + evals * m["eval"] + saves * m["save"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("config", help="comparison YAML or a name in configs/compare")
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE")
    parser.add_argument("--presets", default="", help="default: the comparison's presets")
    parser.add_argument("--steps", type=int, default=4, help="steps trained per preset")
    parser.add_argument("--keep", metavar="DIR", help="keep the run directories under DIR")
    args, extra = parser.parse_known_args()
    bad = [tok for tok in extra if "=" not in tok]
    if bad:
        parser.error(f"unrecognized arguments: {' '.join(bad)}")
    args.overrides = list(args.overrides) + extra

    from gcpo.compare import load_compare_config, train_config_for

    c = load_compare_config(args.config, args.overrides)
    presets = [p for p in args.presets.split(",") if p] or list(c.presets)
    base = train_config_for(c, c.presets[0], c.seeds[0], "-")
    root = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="gcpo-sizing-"))
    root.mkdir(parents=True, exist_ok=True)
    per_step = base.per_device_train_batch_size * base.gradient_accumulation_steps
    print(
        f"cpus={os.cpu_count()} load average {os.getloadavg()[0]:.1f}; {base.model} on "
        f"{base.task}: {per_step // base.num_generations} prompts x G={base.num_generations}, "
        f"max_completion_length={base.max_completion_length}, torch_threads="
        f"{base.torch_threads}; held-out {base.num_eval_prompts} prompts x "
        f"{base.eval_max_new_tokens} tokens; {args.steps} steps per preset; runs in {root}",
        flush=True,
    )
    rows: dict[str, dict[str, Any]] = {}
    for preset in presets:
        rows[preset] = measure(c, preset, args.steps, root)
        w, u = rows[preset]["wall"], rows[preset]["cpu"]
        print(
            f"  {preset}: step {w['step']:.1f} s wall / {u['step']:.1f} s cpu (first "
            f"{w['first_step']:.1f} / {u['first_step']:.1f}), eval {w['eval']:.1f} / "
            f"{u['eval']:.1f}, save {w['save']:.1f} / {u['save']:.1f}, start-up "
            f"{w['startup']:.1f} / {u['startup']:.1f}; held-out {rows[preset]['heldout_accuracy']}",
            flush=True,
        )
    print(f"load average at the end {os.getloadavg()[0]:.1f}\n")
    print(
        f"Seconds per part (wall / CPU) and the projection at max_steps={base.max_steps}, "
        f"eval_every={c.eval_every}, save_steps={base.save_steps}, {len(c.seeds)} seeds "
        "(wall = at this run's load; idle = from CPU time):\n"
    )
    print(
        "| preset | s/step | vs first (cpu) | eval s/point | save s | start-up s "
        "| one run wall / idle | all seeds wall / idle |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    totals = {"wall": 0.0, "cpu": 0.0}
    first = rows[presets[0]]["cpu"]["step"]
    for preset, r in rows.items():
        runs = {k: project(c, r[k]) for k in totals}
        for k in totals:
            totals[k] += runs[k] * len(c.seeds)
        w, u = r["wall"], r["cpu"]
        print(
            f"| {preset} | {w['step']:.1f} / {u['step']:.1f} | {u['step'] / first:.2f} | "
            f"{w['eval']:.1f} / {u['eval']:.1f} | {w['save']:.1f} / {u['save']:.1f} | "
            f"{w['startup']:.1f} / {u['startup']:.1f} | {runs['wall'] / 60:.1f} / "
            f"{runs['cpu'] / 60:.1f} min | {runs['wall'] * len(c.seeds) / 60:.1f} / "
            f"{runs['cpu'] * len(c.seeds) / 60:.1f} min |"
        )
    print(
        f"\nwhole comparison ({len(rows)} presets x {len(c.seeds)} seeds): "
        f"{totals['wall'] / 60:.0f} min at this load, {totals['cpu'] / 60:.0f} min on an idle "
        f"core = {totals['cpu'] / 5400:.2f} of a 90-minute budget"
        + ("" if math.isfinite(totals["cpu"]) else " (incomplete)")
    )


if __name__ == "__main__":
    main()
