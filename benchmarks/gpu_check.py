"""What the CPU tests cannot check: GCPOTrainer on CUDA in bf16 with the embedder on the GPU.

Run through ``benchmarks/gpu_check.sh`` (which also runs ``benchmarks/signals.py --device
cuda``), or alone::

    python benchmarks/gpu_check.py                  # needs a CUDA GPU; about 2-4 minutes
    python benchmarks/gpu_check.py --cpu-dry-run    # the same code path on CPU, float32, tiny

For each preset (``gcpo``, ``gcpo-bot``, ``seed-grpo``) and embedder (MiniLM and
``static-minilm``, both placed on the GPU), it trains ``--steps`` GRPO steps of the policy
(default SmolLM2-135M-Instruct) in bf16 on a built-in arithmetic task and checks: the policy's
parameters are bf16 on CUDA, the embedder's weights are on CUDA, every step logged finite
``gcpo/weight_*`` values, and the loss is finite. It prints one row per run (seconds per step,
GCPO's own share of the step) and exits non-zero if any check failed.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2-135m-instruct")
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--output", default="runs/gpu-check")
    p.add_argument("--cpu-dry-run", action="store_true", help="CPU, float32, tiny-random, 1 step")
    return p.parse_args()


def reward(completions: list[Any], **kwargs: Any) -> list[float]:
    """Fraction of digits: varies within groups, so reward dispersion is not 0."""
    out = []
    for c in completions:
        text = c[-1]["content"] if isinstance(c, list) else c
        out.append(sum(ch.isdigit() for ch in text) / max(len(text), 1))
    return out


def run_one(args: argparse.Namespace, preset: str, embedder: str, device: str) -> dict[str, Any]:
    import datasets
    import torch
    from trl import GRPOConfig

    from gcpo.embedders import EmbedderConfig, SentenceEmbedder, StaticEmbedder
    from gcpo.models import load_policy
    from gcpo.tasks.synthetic import make_task
    from gcpo.trl import GCPOTrainer

    cpu = device == "cpu"
    dtype = torch.float32 if cpu else torch.bfloat16
    model, tok = load_policy("tiny-random" if cpu else args.model, dtype=dtype, device=device)
    out_dir = Path(args.output) / f"{preset}-{embedder}"
    steps = 1 if cpu else args.steps
    config = GRPOConfig(
        output_dir=str(out_dir),
        max_steps=steps,
        per_device_train_batch_size=8,
        num_generations=4,
        max_completion_length=16 if cpu else 64,
        logging_steps=1,
        report_to=[],
        use_cpu=cpu,
        bf16=not cpu,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    data = datasets.Dataset.from_list(make_task("arithmetic", 64, seed=0))
    trainer = GCPOTrainer(
        model=model,
        processing_class=tok,
        reward_funcs=[reward],
        args=config,
        train_dataset=data,
        weighting=preset,
        embedder=EmbedderConfig(name=embedder, device=device),
    )
    t = time.perf_counter()
    trainer.train()
    seconds = time.perf_counter() - t
    logs = [h for h in trainer.state.log_history if "loss" in h]
    checks: dict[str, bool] = {}
    param = next(trainer.model.parameters())
    checks["policy on device, dtype"] = param.device.type == device and param.dtype == dtype
    emb = trainer.scorer.embedder
    if isinstance(emb, SentenceEmbedder):
        checks["embedder on device"] = next(emb.model.parameters()).device.type == device
    elif isinstance(emb, StaticEmbedder):
        checks["embedder on device"] = emb.table.device.type == device
    else:
        checks["embedder on device"] = preset == "seed-grpo"  # SE needs no embedder
    weights = [h.get("gcpo/weight_mean") for h in logs]
    checks["weights logged, finite"] = len(logs) == steps and all(
        w is not None and math.isfinite(w) for w in weights
    )
    checks["loss finite"] = all(math.isfinite(h["loss"]) for h in logs)
    keys = ("gcpo/embed_s", "gcpo/signals_s", "gcpo/logprob_s")
    gcpo_s = sum(h.get(k, 0.0) for h in logs for k in keys)
    return {
        "preset": preset,
        "embedder": embedder,
        "s_per_step": seconds / max(steps, 1),
        "gcpo_share": gcpo_s / seconds if seconds > 0 else float("nan"),
        "weight_mean": weights,
        "checks": checks,
    }


def main() -> None:
    args = parse_args()
    import torch

    device = "cpu" if args.cpu_dry_run else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpu_check: no CUDA device visible (use --cpu-dry-run to test the script on CPU)")
    if device == "cuda":
        print(f"device: {torch.cuda.get_device_name(0)}, torch {torch.__version__}", flush=True)
    runs = [
        ("gcpo", "all-MiniLM-L6-v2"),
        ("gcpo", "static-minilm"),
        ("gcpo-bot", "all-MiniLM-L6-v2"),
        ("seed-grpo", "all-MiniLM-L6-v2"),
    ]
    results = []
    for preset, embedder in runs:
        print(f"running {preset} with {embedder} on {device} ...", flush=True)
        results.append(run_one(args, preset, embedder, device))
    print("\n| preset | embedder | s/step | GCPO share of step | checks |")
    print("|---|---|---:|---:|---|")
    failed = False
    for r in results:
        bad = [k for k, ok in r["checks"].items() if not ok]
        failed |= bool(bad)
        status = "all passed" if not bad else "FAILED: " + ", ".join(bad)
        print(
            f"| {r['preset']} | {r['embedder']} | {r['s_per_step']:.2f} | "
            f"{100 * r['gcpo_share']:.1f}% | {status} |"
        )
    Path(args.output).mkdir(parents=True, exist_ok=True)
    (Path(args.output) / "gpu_check.json").write_text(json.dumps(results, indent=2, default=str))
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
