"""The whole GCPO addition to a verl step, inside verl: the gcpo trainer's advantage step against
verl's own, on the same TransferQueue batch.

Run in the verl environment (``.ci/verl.sh`` builds one), from the repository root::

    .venv-verl/bin/python benchmarks/verl_step.py --presets gcpo,gcpo-bot

A batch of ``--groups`` x ``--group-size`` responses of ``--tokens`` policy tokens is written
to a local TransferQueue the way verl's rollout does, once per trainer. The token ids are real
text in the policy's vocabulary (``--tokenizer``, default the cached SmolLM2 tokenizer): the
SmolLM2 completions of ``benchmarks/embedders.py``'s groups file (``--groups-file``) when it
exists, else the MATH500 solutions of ``--texts-file``, tokenised and tiled. Then verl's
``PPOTrainerSync._compute_advantage`` (GRPO) and, on fresh copies of the batch, the gcpo
trainer's ``_compute_advantage`` for each preset (the same verl code with the weights applied
inside it: decode if a signal reads text, embed, weigh, and verl's one write) run ``--repeats``
times, interleaved, on ``--threads`` torch threads, each preset two ways: with the responses
read ahead (``GCPOVerlTrainer.read_ahead``, which the trainer starts before verl's old-log-prob
pass; here ``--overlap-s`` seconds of sleep stand in for that pass, before every timed step
alike, and any wait for the read still counts) and with ``responses`` added to verl's own TransferQueue read (what happens when
nothing was read ahead). The difference to verl's step is the GCPO addition to a step's wall
time; the budget is ``--budget-s`` (1% of a 60 s GPU step).
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
    p.add_argument("--texts-file", default="../shared/data/math500/test.jsonl")
    p.add_argument(
        "--tokenizer",
        default=str(Path.home() / ".cache" / "gcpo" / "models" / "SmolLM2-135M-Instruct-v1"),
    )
    p.add_argument("--groups", type=int, default=512)
    p.add_argument("--group-size", type=int, default=16)
    p.add_argument("--tokens", type=int, default=500)
    p.add_argument("--presets", default="gcpo,gcpo-bot", help="comma-separated")
    p.add_argument("--embedder", default="static-minilm")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--budget-s", type=float, default=0.6)
    p.add_argument(
        "--overlap-s",
        type=float,
        default=1.0,
        help="read ahead: seconds between the start of the responses read and the advantage "
        "step, standing in for verl's old-log-prob pass on the workers (seconds per step on GPUs)",
    )
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


def token_pool(args: argparse.Namespace, tok: Any) -> tuple[list[list[int]], str]:
    groups = Path(args.groups_file)
    if groups.is_file():
        rows = [json.loads(line) for line in groups.read_text().splitlines() if line]
        return [i for r in rows for i in r["completion_ids"] if i], f"completions of {groups}"
    texts = Path(args.texts_file)
    if not texts.is_file():
        raise SystemExit(f"verl_step.py: neither --groups-file {groups} nor --texts-file {texts}")
    rows = [json.loads(line) for line in texts.read_text().splitlines() if line]
    pool = [tok.encode(r["solution"], add_special_tokens=False) for r in rows]
    return [p for p in pool if p], f"MATH500 solutions of {texts} ({groups} not found)"


def main() -> None:
    args = parse_args()
    presets = [p.strip() for p in args.presets.split(",") if p.strip()]
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
    tok = AutoTokenizer.from_pretrained(args.tokenizer)
    pool, source = token_pool(args, tok)

    def trainer_for(preset: str) -> Any:
        config = OmegaConf.load(
            Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml"
        )
        config.algorithm.adv_estimator = "grpo"
        config.trainer.v1.trainer_mode = "gcpo"
        config.actor_rollout_ref.rollout.n = args.group_size
        config.trainer.v1.gcpo = {"preset": preset, "embedder": args.embedder}
        trainer = get_trainer_cls("gcpo")(config)
        trainer.tokenizer = tok
        return trainer

    trainers = {p: trainer_for(p) for p in presets}
    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    tq.init()
    try:
        for preset, trainer in trainers.items():
            t = time.perf_counter()
            step = trainer._gcpo_step()
            step.prepare()  # load and re-index the embedder, build the decoder: once, untimed
            print(f"{preset}: ready in {time.perf_counter() - t:.1f} s, embedder {step.embedder!r}")
        plain: list[float] = []
        modes = ("read ahead", "with verl's read")
        ours: dict[tuple[str, str], list[float]] = {(p, m): [] for p in presets for m in modes}
        parts: dict[tuple[str, str], dict[str, float]] = {}
        any_trainer = next(iter(trainers.values()))
        reads: dict[str, list[float]] = {"verl": [], "verl + responses": []}
        verl_fields = [
            "uid",
            "response_mask",
            "rm_scores",
            "rollout_log_probs",
            "old_log_probs",
            "ref_log_prob",
            "values",
        ]  # what verl's _compute_advantage reads
        for _ in range(args.repeats):
            meta = put_batch(tq, pool, args)
            for name, fields in (
                ("verl", verl_fields),
                ("verl + responses", [*verl_fields, "responses"]),
            ):
                t = time.perf_counter()
                tq.kv_batch_get(
                    keys=meta.keys, partition_id=meta.partition_id, select_fields=fields
                )
                reads[name].append(time.perf_counter() - t)
            time.sleep(args.overlap_s)  # every timed step starts after the same idle time
            t = time.perf_counter()
            PPOTrainerSync._compute_advantage(any_trainer, meta, {})
            plain.append(time.perf_counter() - t)
            tq.kv_clear(keys=meta.keys, partition_id=meta.partition_id)
            for preset, trainer in trainers.items():
                for mode in modes:
                    meta = put_batch(tq, pool, args)
                    metrics: dict[str, float] = {}
                    if mode == "read ahead":
                        trainer.read_ahead(meta)  # as _compute_old_log_prob starts it
                    time.sleep(args.overlap_s)  # verl's old-log-prob pass on the workers
                    t = time.perf_counter()
                    trainer._compute_advantage(meta, metrics)
                    ours[preset, mode].append(time.perf_counter() - t)
                    parts[preset, mode] = dict(trainer.gcpo_timings)
                    tq.kv_clear(keys=meta.keys, partition_id=meta.partition_id)
    finally:
        tq.close()
        ray.shutdown()
    p = statistics.median(plain)
    n = args.groups * args.group_size
    print(
        f"\nB = {args.groups} x G = {args.group_size} responses x {args.tokens} tokens "
        f"({n * args.tokens / 1e6:.1f} M tokens; token ids from {source}), embedder "
        f"{args.embedder}, {args.threads} torch thread(s), median of {args.repeats}\n"
    )
    print("| advantage step | responses | s | vs verl's GRPO step | GCPO addition, s | vs budget |")
    print("|---|---|---:|---:|---:|---:|")
    print(f"| verl GRPO (PPOTrainerSync._compute_advantage) | | {p:.2f} | 1.00 | | |")
    for preset in presets:
        for mode in modes:
            o = statistics.median(ours[preset, mode])
            print(
                f"| gcpo trainer, preset {preset} | {mode} | {o:.2f} | {o / p:.2f} | "
                f"**{o - p:.2f}** | {(o - p) / args.budget_s:.2f} x {args.budget_s} s |"
            )
    for preset in presets:
        m = parts[preset, "read ahead"]
        if "read_ahead_s" in m:
            print(
                f"\n{preset}, read ahead: the read took {m['read_ahead_s']:.2f} s in its thread "
                f"(within the {args.overlap_s} s window: the advantage step waited "
                f"{m['read_ahead_wait_s']:.3f} s for it), last repeat"
            )
    r0, r1 = statistics.median(reads["verl"]), statistics.median(reads["verl + responses"])
    print(
        f"\nTransferQueue read alone, same batch: verl's fields {r0:.2f} s, with responses "
        f"{r1:.2f} s (+{r1 - r0:.2f} s); all repeats, GCPO addition per preset: "
        + "; ".join(
            f"{k} ({mode}) "
            + ", ".join(f"{o - p_:.2f}" for o, p_ in zip(ours[k, mode], plain, strict=True))
            for k in presets
            for mode in modes
        )
    )
    for preset in presets:
        m = parts[preset, "read ahead"]
        keys = ("decode_s", "embed_ids_s", "embed_s", "signals_s", "weights_s", "step_s", "apply_s")
        inner = ", ".join(f"{k[:-2]} {m[k]:.3f}" for k in keys if k in m)
        print(f"\n{preset}, inside the advantage step (read ahead, last repeat, s): {inner}")
    print(
        "(step: decode + embed + score; apply: step + reading the batch's rows + multiplying "
        "the advantages; the extended TransferQueue read is in the difference only)"
    )


if __name__ == "__main__":
    main()
