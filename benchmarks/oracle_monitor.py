"""Cost of the grad_nsr oracle and of the live monitor, side by side with the gcpo preset.

On the quickstart's own setup (configs/quickstart.yaml: SmolLM2-135M-Instruct, graded
arithmetic, 6 prompts x G = 4, 16 new tokens, MiniLM, 2 threads) it trains, in one process and
one after the other, a fresh copy of the same model for ``--warmup + --steps`` steps under each
variant:

- ``gcpo``: the gcpo preset (the reference);
- ``oracle``: the oracle preset (per-completion gradients of every active group, every step);
- ``gcpo+monitor``: the gcpo preset with ``monitor_every = --monitor-every`` (default 4).

Rounds are interleaved (every variant once per round), so a slow drift of the machine hits all
alike. Reported per variant over the timed steps: the mean and median wall seconds per step,
their ratio to ``gcpo`` (1.00 = no extra cost), and the seconds the trainer itself spent on
per-completion gradients (``gcpo/gradients_s``) or the monitor (``gcpo/monitor_s``) as a share
of the step time -- measured inside the step, so insensitive to other load on the machine. The
monitor does not change the weights or the random stream, so ``gcpo`` and ``gcpo+monitor``
train the same trajectory (checked: the per-step rewards are compared) and their ratio is a
paired comparison. Keep ``--steps`` a multiple of ``--monitor-every``.

    python benchmarks/oracle_monitor.py                         # the quickstart, CPU
    python benchmarks/oracle_monitor.py --steps 4 --monitor-every 2 model=tiny-random embedder=hashing
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--steps", type=int, default=8, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps per run")
    p.add_argument("--rounds", type=int, default=1)
    p.add_argument("--monitor-every", type=int, default=4)
    p.add_argument("--variants", default="gcpo,oracle,gcpo+monitor")
    p.add_argument("overrides", nargs="*", help="KEY=VALUE overrides of the quickstart config")
    ns = p.parse_args()

    import torch
    from transformers import TrainerCallback, set_seed
    from transformers.trainer_callback import PrinterCallback

    from gcpo.embedders import get_embedder
    from gcpo.models import load_policy
    from gcpo.presets import preset
    from gcpo.rewards import safe_reward
    from gcpo.train.config import QUICKSTART, load_train_config
    from gcpo.train.data import answer_fn_for, build_data, load_reward
    from gcpo.train.run import grpo_args
    from gcpo.trl import GCPOTrainer

    config = load_train_config(QUICKSTART, ns.overrides)
    config.max_steps = ns.warmup + ns.steps
    config.trl = {**config.trl, "save_strategy": "no", "disable_tqdm": True}
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    train_rows, _ = build_data(config)
    reward = safe_reward(load_reward(config))
    base_model, tok = load_policy(config.model)
    embedder = get_embedder(config.embedder)
    embedder.embed(["warm up the encoder"])  # loaded outside the timed steps
    from datasets import Dataset

    data = Dataset.from_list(train_rows)

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            self.times.append(time.perf_counter() - self._t)

    variants = [v.strip() for v in ns.variants.split(",") if v.strip()]
    times: dict[str, list[float]] = {v: [] for v in variants}
    own: dict[str, list[float]] = {v: [] for v in variants}
    rewards: dict[str, list[float]] = {v: [] for v in variants}
    load0 = os.getloadavg()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ns.rounds):
            for v in variants:
                name, _, extra = v.partition("+")
                set_seed(config.seed)
                args = grpo_args(config, Path(tmp) / f"{r}-{v}", len(train_rows))
                timer = StepTimer()
                trainer: Any = GCPOTrainer(
                    model=copy.deepcopy(base_model),
                    processing_class=tok,
                    reward_funcs=[reward],
                    args=args,
                    train_dataset=data,
                    callbacks=[timer],
                    weighting=preset(name),
                    embedder=embedder,
                    answer_fn=answer_fn_for(config),
                    extra_signals=config.extra_signals,
                    gradients=config.gradients,
                    monitor_every=ns.monitor_every if extra == "monitor" else 0,
                    monitor_window=config.monitor_window,
                )
                trainer.remove_callback(PrinterCallback)
                trainer.train()
                timed = timer.times[ns.warmup :]
                logs = [x for x in trainer.state.log_history if "gcpo/active_groups" in x]
                logs = logs[ns.warmup :]
                key = "gcpo/monitor_s" if extra == "monitor" else "gcpo/gradients_s"
                times[v].extend(timed)
                own[v].extend(float(x.get(key, 0.0) or 0.0) for x in logs)
                rewards[v].extend(float(x.get("reward", float("nan"))) for x in logs)
                print(f"round {r + 1} {v:14s} " + " ".join(f"{t:.2f}" for t in timed), flush=True)
                if trainer.gcpo_monitor is not None:
                    s = trainer.gcpo_monitor.summary()
                    rho = ", ".join(
                        f"{k} NSR {x['NSR']:+.2f} V {x['V']:+.2f}" for k, x in s["rho"].items()
                    )
                    print(f"  monitor: {s['groups']} groups in the window; {rho}", flush=True)

    ref = variants[0]
    ref_mean = statistics.mean(times[ref])
    ref_median = statistics.median(times[ref])
    print()
    print(
        f"model {config.model}, task {config.task}, {config.per_device_train_batch_size} "
        f"completions/step (G={config.num_generations}, {config.max_completion_length} new tokens), "
        f"torch threads {config.torch_threads or torch.get_num_threads()}, gradients "
        f"{config.gradients.params} (CountSketch {config.gradients.project_dim or 'off, exact'}); "
        f"{ns.rounds} round(s) x {ns.steps} timed steps after {ns.warmup} warm-up; monitor every "
        f"{ns.monitor_every} steps; wall {time.perf_counter() - started:.0f} s; load average "
        f"{load0[0]:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
    )
    print()
    print(
        f"| variant | s/step mean | s/step median | mean ratio vs {ref} | median ratio vs {ref} "
        "| gradient / monitor s per step | share of step (in-step) |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|")
    for v in variants:
        mean, median = statistics.mean(times[v]), statistics.median(times[v])
        extra_s = statistics.mean(own[v]) if own[v] else 0.0
        share = sum(own[v]) / sum(times[v]) if sum(times[v]) else 0.0
        print(
            f"| {v} | {mean:.2f} | {median:.2f} | {mean / ref_mean:.3f} | {median / ref_median:.3f} "
            f"| {extra_s:.2f} | {100 * share:.1f}% |"
        )
    if "gcpo+monitor" in variants and ref == "gcpo":
        same = rewards["gcpo"] == rewards["gcpo+monitor"]
        print()
        print(
            "gcpo and gcpo+monitor trained the same trajectory (per-step rewards equal): "
            + ("yes" if same else "no")
        )


if __name__ == "__main__":
    main()
