"""Size a `gcpo compare` run: seconds per training step, per held-out eval and per checkpoint,
each preset side by side on the comparison's own base config, and the projected total.

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


def _timer_callback() -> Any:
    from transformers import TrainerCallback

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.created = time.perf_counter()
            self.first_step_begin: float | None = None
            self.step_begin = 0.0
            self.step_seconds: list[float] = []
            self.step_end = 0.0
            self.save_seconds: list[float] = []

        def on_step_begin(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_begin = time.perf_counter()
            if self.first_step_begin is None:
                self.first_step_begin = self.step_begin

        def on_step_end(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.step_end = time.perf_counter()
            self.step_seconds.append(self.step_end - self.step_begin)

        def on_save(self, args: Any, state: Any, control: Any, **kw: Any) -> None:
            self.save_seconds.append(time.perf_counter() - self.step_end)

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
    heldout_cb = HeldoutRewardCallback(
        curve,
        heldout,
        load_reward(base),
        every=steps,
        max_new_tokens=base.eval_max_new_tokens,
        batch_size=base.eval_batch_size,
    )
    started = time.perf_counter()
    run_training(config, run_dir=run_dir, callbacks=[heldout_cb, timer])
    wall = time.perf_counter() - started
    evals = [json.loads(line)["seconds"] for line in curve.read_text().splitlines()]
    # the step-0 eval runs at train begin, after start-up and before the first step
    startup = (timer.first_step_begin or started) - started - evals[0]
    return {
        "wall": wall,
        "startup": startup,
        # the first step also warms up kernels and caches: the median is what a long run sees
        "step": statistics.median(timer.step_seconds[1:] or timer.step_seconds),
        "first_step": timer.step_seconds[0],
        "eval": statistics.mean(evals),
        "save": statistics.mean(timer.save_seconds) if timer.save_seconds else 0.0,
    }


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
        r = rows[preset]
        print(
            f"  {preset}: {r['step']:.1f} s/step (first {r['first_step']:.1f}), eval "
            f"{r['eval']:.1f} s, save {r['save']:.1f} s, start-up {r['startup']:.1f} s",
            flush=True,
        )
    print(f"load average at the end {os.getloadavg()[0]:.1f}\n")
    first = rows[presets[0]]["step"]
    print(
        f"Projected at max_steps={base.max_steps}, eval_every={c.eval_every}, "
        f"save_steps={base.save_steps}, {len(c.seeds)} seeds:\n"
    )
    print("| preset | s/step | vs first | eval s/point | save s | start-up s | one run | all seeds |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    total = 0.0
    for preset, r in rows.items():
        run = project(c, r)
        total += run * len(c.seeds)
        print(
            f"| {preset} | {r['step']:.1f} | {r['step'] / first:.2f} | {r['eval']:.1f} | "
            f"{r['save']:.1f} | {r['startup']:.1f} | {run / 60:.1f} min | "
            f"{run * len(c.seeds) / 60:.1f} min |"
        )
    print(
        f"\nwhole comparison ({len(rows)} presets x {len(c.seeds)} seeds): {total / 60:.0f} min "
        f"= {total / 5400:.2f} of a 90-minute budget"
        + ("" if math.isfinite(total) else " (incomplete)")
    )


if __name__ == "__main__":
    main()
