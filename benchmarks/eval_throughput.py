"""Evaluation throughput (items/s) of ``gcpo eval`` on math500 and hotpotqa.

Runs the harness (generation + scoring + result files) into a fresh temporary folder, so nothing
is skipped by resume, and prints one Markdown row per benchmark. Also prints the per-call cost of
the math verifier (canonical-key fast path and math-verify worker round trip).

    python benchmarks/eval_throughput.py                       # default model, --limit 20
    python benchmarks/eval_throughput.py --model tiny-random --limit 4 --max-new-tokens 16
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def verifier_overhead(n: int = 200) -> tuple[float, float]:
    """Mean seconds per math_reward call: fast path (equal keys) and via the worker process."""
    from gcpo.tasks import math_reward

    math_reward("\\boxed{0.5}", "\\frac{1}{2}")  # start the workers
    start = time.perf_counter()
    for i in range(n):
        math_reward(f"so the answer is \\boxed{{{i}}}", str(i))
    fast = (time.perf_counter() - start) / n
    start = time.perf_counter()
    for i in range(n):
        # different canonical keys ("i.5" vs "(2i+1)/2"): math-verify decides
        math_reward(f"so the answer is \\boxed{{{i}.5}}", f"\\frac{{{2 * i + 1}}}{{2}}")
    slow = (time.perf_counter() - start) / n
    return fast, slow


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--benchmarks", default="math500,hotpotqa")
    parser.add_argument("--limit", type=int, default=20)
    parser.add_argument("--max-new-tokens", type=int, default=None, help="default: per benchmark")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--data-dir", default=str(DATA))
    parser.add_argument("--device", default=None)
    args = parser.parse_args()

    import torch

    from gcpo.evaluation import EvalConfig, run_evaluation
    from gcpo.models import load_policy

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    t0 = time.perf_counter()
    model, tokenizer = load_policy(args.model, device=device)
    load_s = time.perf_counter() - t0
    print(
        f"model {args.model} on {device} ({platform.processor() or platform.machine()}, "
        f"torch {torch.__version__}, {torch.get_num_threads()} threads), loaded in {load_s:.1f}s"
    )
    print()
    print(
        "| benchmark | items | max new tokens | new tokens (mean) | seconds | items/s | "
        "tokens/s | score |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---|")
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.benchmarks.split(","):
            cfg = EvalConfig(
                model=args.model, benchmarks=[name], limit=args.limit,
                max_new_tokens=args.max_new_tokens, batch_size=args.batch_size,
                data_dir=args.data_dir, output=f"{tmp}/{name}", progress=False,
            )  # fmt: skip
            result = run_evaluation(cfg, model=model, tokenizer=tokenizer)
            t = result["timing"][name]
            import json

            rows = [
                json.loads(x)
                for x in Path(f"{tmp}/{name}/generations.jsonl").read_text().splitlines()
            ]
            new_tokens = sum(r["new_tokens"] for r in rows)
            entry = result["summary"][args.model][name]
            score = ", ".join(
                f"{k} {v * 100:.1f}" for k, v in entry.items() if k not in ("items", "generations")
            )
            from gcpo.tasks.evalsets import BENCHMARKS

            budget = args.max_new_tokens or BENCHMARKS[name].max_new_tokens
            print(
                f"| {name} | {t['items']} | {budget} | {new_tokens / len(rows):.0f} | "
                f"{t['seconds']:.1f} | {t['items'] / t['seconds']:.3f} | "
                f"{new_tokens / t['seconds']:.1f} | {score} |"
            )
    fast, slow = verifier_overhead()
    print()
    print(
        f"math_reward per call: {fast * 1e6:.0f} us (equal canonical keys), "
        f"{slow * 1e3:.2f} ms (math-verify in a worker process)"
    )


if __name__ == "__main__":
    main()
