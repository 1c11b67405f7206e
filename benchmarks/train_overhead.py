"""Training-step overhead of GCPOTrainer over plain trl.GRPOTrainer (same model, data, seed).

For each round, every variant (plain GRPOTrainer, then GCPOTrainer with each preset) trains a
fresh copy of the same model for ``--steps`` steps; runs are interleaved round by round so slow
drifts of the machine hit every variant alike. Reported per variant:

- ``s/step``: median wall seconds of the timed steps (the first ``--warmup`` steps of each run
  are not timed) over all rounds;
- ``ratio``: plain GRPO s/step divided by the variant's s/step (steps/s relative to GRPO; 1.00 =
  no overhead, 0.95 = 5% slower);
- ``gcpo share``: the time GCPOTrainer itself spent (embedding + signals + weights + extra
  log-prob pass, from its ``gcpo/*_s`` metrics) as a fraction of the step time. This is the
  overhead measured inside the step, insensitive to other load on the machine.

Usage::

    python benchmarks/train_overhead.py                       # SmolLM2-135M + MiniLM, CPU
    python benchmarks/train_overhead.py --model tiny-random --embedder hashing --steps 3
"""

from __future__ import annotations

import argparse
import copy
import statistics
import time
from typing import Any


def build_args(ns: argparse.Namespace, out: str) -> Any:
    import torch
    from trl import GRPOConfig

    return GRPOConfig(
        output_dir=out,
        max_steps=ns.steps + ns.warmup,
        per_device_train_batch_size=ns.batch,
        num_generations=ns.group_size,
        max_completion_length=ns.max_new_tokens,
        temperature=0.7,
        learning_rate=1e-6,
        logging_steps=1,
        report_to=[],
        save_strategy="no",
        seed=ns.seed,
        data_seed=ns.seed,
        disable_tqdm=True,
        use_cpu=not torch.cuda.is_available(),
        bf16=False,
    )


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--embedder", default="all-MiniLM-L6-v2")
    p.add_argument("--presets", default="gcpo,gcpo-bot,seed-grpo")
    p.add_argument("--steps", type=int, default=3, help="timed steps per run")
    p.add_argument("--warmup", type=int, default=1, help="untimed first steps per run")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch", type=int, default=16, help="completions per step")
    p.add_argument("--group-size", type=int, default=4)
    p.add_argument("--max-new-tokens", type=int, default=24)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0 = default)")
    ns = p.parse_args()

    import tempfile

    import torch
    from datasets import Dataset
    from transformers import TrainerCallback, set_seed
    from transformers.trainer_callback import PrinterCallback
    from trl import GRPOTrainer

    from gcpo.embedders import get_embedder
    from gcpo.models import load_policy
    from gcpo.tasks.registry import trl_reward
    from gcpo.tasks.synthetic import make_task
    from gcpo.trl import GCPOTrainer

    if ns.threads:
        torch.set_num_threads(ns.threads)
    base_model, tok = load_policy(ns.model)
    data = Dataset.from_list(make_task("arithmetic", 64, seed=ns.seed, digits=1))
    reward = trl_reward("arithmetic")
    embedder = get_embedder(ns.embedder)
    embedder.embed(["warm up the encoder"])  # load it outside the timed steps

    class StepTimer(TrainerCallback):
        def __init__(self) -> None:
            self.times: list[float] = []
            self._t = 0.0

        def on_step_begin(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            self._t = time.perf_counter()

        def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            self.times.append(time.perf_counter() - self._t)

    variants = ["grpo (plain TRL)"] + [p.strip() for p in ns.presets.split(",") if p.strip()]
    step_times: dict[str, list[float]] = {v: [] for v in variants}
    shares: dict[str, list[float]] = {v: [] for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(ns.rounds):
            for v in variants:
                set_seed(ns.seed)
                timer = StepTimer()
                kwargs: dict[str, Any] = dict(
                    model=copy.deepcopy(base_model),
                    processing_class=tok,
                    reward_funcs=[reward],
                    args=build_args(ns, f"{tmp}/{r}-{v.split()[0]}"),
                    train_dataset=data,
                    callbacks=[timer],
                )
                if v.startswith("grpo (plain"):
                    trainer: Any = GRPOTrainer(**kwargs)
                else:
                    trainer = GCPOTrainer(**kwargs, weighting=v, embedder=embedder)
                trainer.remove_callback(PrinterCallback)  # keep the output to the table
                trainer.train()
                timed = timer.times[ns.warmup :]
                step_times[v].extend(timed)
                logs = [x for x in trainer.state.log_history if "loss" in x][ns.warmup :]
                for row, dt in zip(logs, timed, strict=False):
                    own = sum(
                        row.get(k, 0.0) or 0.0
                        for k in ("gcpo/embed_s", "gcpo/signals_s", "gcpo/logprob_s")
                    )
                    shares[v].append(own / dt if dt else 0.0)
                print(f"round {r + 1} {v:18s} " + " ".join(f"{t:.2f}" for t in timed), flush=True)

    ref = statistics.median(step_times[variants[0]])
    print()
    print(
        f"model {ns.model}, embedder {ns.embedder}, {ns.batch} completions/step "
        f"(G={ns.group_size}, {ns.max_new_tokens} new tokens), {ns.rounds} rounds x {ns.steps} timed steps"
    )
    print()
    print("| trainer | s/step (median) | steps/s ratio vs GRPO | gcpo share of step |")
    print("|---|---:|---:|---:|")
    for v in variants:
        med = statistics.median(step_times[v])
        share = (
            f"{100 * statistics.median(shares[v]):.1f}%" if shares[v] and v != variants[0] else "-"
        )
        print(f"| {v} | {med:.2f} | {ref / med:.3f} | {share} |")


if __name__ == "__main__":
    main()
