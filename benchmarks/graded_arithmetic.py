"""How hard is a synthetic task for a policy? Per-prompt pass rates of sampled completions.

Samples G completions for each of N prompts of a built-in task (default: graded-arithmetic, whose
levels take turns, so N prompts hold every level about equally) and prints, per level and
overall, the mean pass rate, the share of prompts solved by all / some / none of the G samples
(a group is informative for GRPO exactly when some but not all are right: reward dispersion
> 0), the histogram of per-prompt pass rates, and optionally the greedy pass rate (what the
held-out evaluation of ``gcpo train`` / ``gcpo compare`` measures).

    python benchmarks/graded_arithmetic.py --prompts 48 --group-size 8 --temperature 0.7
    python benchmarks/graded_arithmetic.py --levels 1d+,1d*,1d-,2d+ --greedy
    python benchmarks/graded_arithmetic.py --levels 1d+x3,2d+ --split test --prompts 64
"""

from __future__ import annotations

import argparse
import os
import time
from collections import Counter, defaultdict
from typing import Any


def _generate(
    model: Any, tok: Any, rows: list[dict[str, Any]], *, g: int, args: argparse.Namespace
) -> list[list[str]]:
    import torch

    out_texts: list[list[str]] = []
    tok.padding_side = "left"
    for i in range(0, len(rows), args.batch_prompts):
        chunk = rows[i : i + args.batch_prompts]
        texts = [
            tok.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
            for r in chunk
        ]
        enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        sample = g > 1 or not args.greedy_only
        kwargs: dict[str, Any] = (
            {"do_sample": True, "temperature": args.temperature, "top_k": 0, "top_p": 1.0}
            if sample
            else {"do_sample": False}
        )
        with torch.no_grad():
            out = model.generate(
                **enc,
                max_new_tokens=args.max_new_tokens,
                num_return_sequences=g,
                pad_token_id=tok.pad_token_id,
                **kwargs,
            )
        comps = tok.batch_decode(out[:, enc["input_ids"].shape[1] :], skip_special_tokens=True)
        out_texts += [comps[j * g : (j + 1) * g] for j in range(len(chunk))]
    return out_texts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m-instruct")
    parser.add_argument("--task", default="graded-arithmetic")
    parser.add_argument(
        "--levels", default="", help="graded-arithmetic levels, e.g. 1d+,1d*,1d-,2d+ (default: the task's)"
    )
    parser.add_argument("--split", default="train", choices=("train", "test"))
    parser.add_argument("--prompts", type=int, default=48)
    parser.add_argument("--group-size", type=int, default=8)
    parser.add_argument("--temperature", type=float, default=0.7)
    parser.add_argument("--max-new-tokens", type=int, default=24)
    parser.add_argument("--batch-prompts", type=int, default=8, help="prompts per generate() call")
    parser.add_argument("--greedy", action="store_true", help="also report the greedy pass rate")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--torch-threads", type=int, default=1)
    args = parser.parse_args()
    args.greedy_only = False

    import torch

    from gcpo.models import load_policy
    from gcpo.tasks.registry import trl_reward
    from gcpo.tasks.synthetic import make_task

    torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    knobs: dict[str, Any] = {}
    if args.levels:
        knobs["levels"] = [x.strip() for x in args.levels.split(",") if x.strip()]
    rows = make_task(args.task, args.prompts, split=args.split, seed=args.seed, **knobs)
    reward = trl_reward(args.task)
    model, tok = load_policy(args.model)
    print(
        f"cpus={os.cpu_count()} torch_threads={args.torch_threads} load average "
        f"{os.getloadavg()[0]:.1f}; {args.model} on {args.task} ({args.split} split, seed "
        f"{args.seed}): {len(rows)} prompts x G={args.group_size}, T={args.temperature}, "
        f"max_new_tokens={args.max_new_tokens}",
        flush=True,
    )

    def score(completions: list[list[str]]) -> list[list[float]]:
        return [
            [
                float(v)
                for v in reward(
                    prompts=[r["prompt"]] * len(cs),
                    completions=cs,
                    answer=[r["answer"]] * len(cs),
                )
            ]
            for r, cs in zip(rows, completions, strict=True)
        ]

    start = time.perf_counter()
    sampled = score(_generate(model, tok, rows, g=args.group_size, args=args))
    sample_s = time.perf_counter() - start
    greedy: list[float] | None = None
    greedy_s = 0.0
    if args.greedy:
        args.greedy_only = True
        start = time.perf_counter()
        greedy = [s[0] for s in score(_generate(model, tok, rows, g=1, args=args))]
        greedy_s = time.perf_counter() - start

    g = args.group_size
    by_level: dict[str, list[int]] = defaultdict(list)
    for i, r in enumerate(rows):
        by_level[str(r.get("level", args.task))].append(i)
    by_level["all"] = list(range(len(rows)))
    print(
        f"\nsampling {sample_s:.0f} s ({sample_s / (len(rows) * g):.2f} s per completion)"
        + (f", greedy {greedy_s:.0f} s ({greedy_s / len(rows):.2f} s per prompt)" if greedy else "")
        + f"; load average at the end {os.getloadavg()[0]:.1f}\n"
    )
    header = "| level | prompts | mean pass rate | all right | some right (RD > 0) | none right |"
    sep = "|---|---:|---:|---:|---:|---:|"
    if greedy is not None:
        header += " greedy pass rate |"
        sep += "---:|"
    print(header)
    print(sep)
    for level, idx in by_level.items():
        rates = [sum(sampled[i]) / g for i in idx]
        n = len(idx)
        line = (
            f"| {level} | {n} | {sum(rates) / n:.3f} | {sum(r == 1 for r in rates) / n:.2f} | "
            f"{sum(0 < r < 1 for r in rates) / n:.2f} | {sum(r == 0 for r in rates) / n:.2f} |"
        )
        if greedy is not None:
            line += f" {sum(greedy[i] for i in idx) / n:.3f} |"
        print(line)
    hist = Counter(int(sum(s)) for s in sampled)
    print(f"\nprompts by number of right completions out of {g}:")
    print("| right | " + " | ".join(str(k) for k in range(g + 1)) + " |")
    print("|---|" + "---:|" * (g + 1))
    print("| prompts | " + " | ".join(str(hist.get(k, 0)) for k in range(g + 1)) + " |")


if __name__ == "__main__":
    main()
