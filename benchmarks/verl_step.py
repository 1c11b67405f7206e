"""The whole GCPO addition to a verl step, inside verl: the gcpo trainer's advantage step against
verl's own, on the same TransferQueue batch.

Run in the verl environment (``.ci/verl.sh`` builds one), from the repository root::

    .venv-verl/bin/python benchmarks/verl_step.py --groups-file runs/embedder-groups.jsonl

A batch of ``--groups`` x ``--group-size`` responses of ``--tokens`` policy tokens (real
SmolLM2 completions from ``benchmarks/embedders.py``'s groups file, tiled; ids of the
tokenizer in ``--tokenizer``, default the cached SmolLM2 conversion) is written to a local
TransferQueue the way verl's rollout does, twice. Then verl's ``PPOTrainerSync._compute_advantage``
(GRPO) runs on one copy and the gcpo trainer's ``_compute_advantage`` (the same GRPO, then
reading the responses back, decoding, embedding, weighting and writing the advantages back) on
the other, each ``--repeats`` times (fresh copies), on ``--threads`` torch threads. The
difference is the GCPO addition; the budget is ``--budget-s`` (1% of a 60 s GPU step).
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import time
import uuid
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups-file", default="runs/embedder-groups.jsonl")
    p.add_argument(
        "--tokenizer",
        default=str(Path.home() / ".cache" / "gcpo" / "models" / "SmolLM2-135M-Instruct-v1"),
    )
    p.add_argument("--groups", type=int, default=512)
    p.add_argument("--group-size", type=int, default=16)
    p.add_argument("--tokens", type=int, default=500)
    p.add_argument("--preset", default="gcpo")
    p.add_argument("--embedder", default="static-minilm")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budget-s", type=float, default=0.6)
    p.add_argument("--seed", type=int, default=0)
    return p.parse_args()


def put_batch(tq: Any, pool: list[list[int]], args: argparse.Namespace) -> Any:
    import torch
    from tensordict import TensorDict
    from tensordict.tensorclass import NonTensorData, NonTensorStack
    from transfer_queue import KVBatchMeta

    rng = random.Random(args.seed)
    keys, uids, ids, scores = [], [], [], []
    for _ in range(args.groups):
        uid = uuid.uuid4().hex
        for s in range(args.group_size):
            seq: list[int] = []
            while len(seq) < args.tokens:
                seq.extend(rng.choice(pool))
            ids.append(torch.tensor(seq[: args.tokens]))
            keys.append(f"{uid}_{s}_0")
            uids.append(uid)
            score = torch.zeros(args.tokens)
            score[-1] = float(rng.random() < 0.5)
            scores.append(score)

    def jagged(values: list[Any]) -> Any:
        return torch.nested.as_nested_tensor(values, layout=torch.jagged)

    fields = TensorDict(
        {
            "uid": NonTensorStack(*[NonTensorData(u) for u in uids]),
            "responses": jagged(ids),
            "response_mask": jagged([torch.ones_like(i) for i in ids]),
            "rm_scores": jagged(scores),
        },
        batch_size=len(keys),
    )
    tags = [{"seq_len": args.tokens} for _ in keys]
    partition = f"bench-{uuid.uuid4().hex}"
    tq.kv_batch_put(keys=keys, partition_id=partition, fields=fields, tags=tags)
    return KVBatchMeta(partition_id=partition, keys=keys, tags=tags)


def main() -> None:
    args = parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", str(args.threads))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import ray
    import torch
    import transfer_queue as tq
    import verl
    from omegaconf import OmegaConf
    from transformers import AutoTokenizer
    from verl.trainer.ppo.v1 import PPOTrainerSync, get_trainer_cls

    torch.set_num_threads(args.threads)
    rows = [json.loads(line) for line in Path(args.groups_file).read_text().splitlines() if line]
    pool = [i for r in rows for i in r["completion_ids"] if i]
    tok = AutoTokenizer.from_pretrained(args.tokenizer)

    config = OmegaConf.load(
        Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml"
    )
    config.algorithm.adv_estimator = "grpo"
    config.trainer.v1.trainer_mode = "gcpo"
    config.actor_rollout_ref.rollout.n = args.group_size
    config.trainer.v1.gcpo = {"preset": args.preset, "embedder": args.embedder}
    trainer = get_trainer_cls("gcpo")(config)
    trainer.tokenizer = tok
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    tq.init()
    try:
        t = time.perf_counter()
        step = trainer._gcpo_step()
        step.prepare()  # load and re-index the embedder, build the decoder: once, untimed
        print(f"embedder ready in {time.perf_counter() - t:.1f} s: {step.embedder!r}")
        plain, ours, parts = [], [], []
        for _ in range(args.repeats):
            meta = put_batch(tq, pool, args)
            t = time.perf_counter()
            PPOTrainerSync._compute_advantage(trainer, meta, {})
            plain.append(time.perf_counter() - t)
            tq.kv_clear(keys=meta.keys, partition_id=meta.partition_id)
            meta = put_batch(tq, pool, args)
            metrics: dict[str, float] = {}
            t = time.perf_counter()
            trainer._compute_advantage(meta, metrics)
            ours.append(time.perf_counter() - t)
            parts.append(metrics)
            tq.kv_clear(keys=meta.keys, partition_id=meta.partition_id)
    finally:
        tq.close()
        ray.shutdown()
    p, o = statistics.median(plain), statistics.median(ours)
    m = parts[-1]
    n = args.groups * args.group_size
    print(
        f"\nB = {args.groups} x G = {args.group_size} responses x {args.tokens} tokens "
        f"({n * args.tokens / 1e6:.1f} M tokens), preset {args.preset}, embedder {args.embedder}, "
        f"{args.threads} thread(s), median of {args.repeats}\n"
    )
    print("| advantage step | s | vs verl's GRPO step |")
    print("|---|---:|---:|")
    print(f"| verl GRPO (PPOTrainerSync._compute_advantage) | {p:.2f} | 1.00 |")
    print(f"| gcpo trainer (GRPO + GCPO weights) | {o:.2f} | {o / p:.2f} |")
    print(
        f"| **GCPO addition** | **{o - p:.2f}** | budget {args.budget_s} s: {(o - p) / args.budget_s:.1f}x |"
    )
    inner = ", ".join(
        f"{k.split('/')[1]} {m[k]:.2f}"
        for k in (
            "gcpo/tq_get_s",
            "gcpo/decode_s",
            "gcpo/embed_ids_s",
            "gcpo/signals_s",
            "gcpo/weights_s",
            "gcpo/step_s",
            "gcpo/tq_put_s",
            "gcpo/total_s",
        )
        if k in m
    )
    print(f"\nthe GCPO addition in parts (last repeat, s): {inner}")
    print(
        "(tq_get / tq_put: reading the batch back from and writing the advantages to "
        "TransferQueue; step: decode + embed + score, the part benchmarks/embedders.py times)"
    )


if __name__ == "__main__":
    main()
