"""Cost of the GCPO signals and of embedding, relative to generating the group they score.

Run (from the repository root)::

    python benchmarks/signals.py                      # B=64 groups of G=16, 256 new tokens
    python benchmarks/signals.py --groups 8 --gen-groups 1 --max-new-tokens 64   # quick check

1. Generation: the policy (default SmolLM2-135M-Instruct, float32) samples ``--gen-groups``
   groups of G completions (temperature 1, up to ``--max-new-tokens``) for built-in MATH-style
   prompts with one batched ``generate`` call per group; the median seconds per group is the
   reference.
2. Scoring: the generated completions are tiled to B groups. Copies beyond the first get a
   short tag ``(k)`` prepended to every line, so every completion and every segment is a distinct
   text and the embedder's within-call de-duplication saves nothing it would not save on real
   rollouts. Rewards are random 0/1 (seeded).
3. The embedder is timed on all B x G completions, then on all their segments (the BoT point
   clouds), each once (after a warm-up; the one-time model load is printed separately). Each
   signal is then timed on the B groups on top of those embeddings (memoised, so a signal's time
   excludes embedding), and so are the weights of each preset. Everything is reported as ms per
   group and as a percentage of the generation time per group; the "total" rows add up what
   one training step of that preset does.

Everything runs on the device given by ``--device`` (default: cuda when available, else cpu) for
the policy and the embedder alike.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
import warnings
from collections.abc import Sequence
from typing import Any

PROMPTS = [
    "Find the sum of all positive divisors of 36.",
    "A rectangle has perimeter 30 and area 54. What is the length of its diagonal?",
    "How many positive integers less than 100 are divisible by 3 but not by 5?",
    "Solve for x: 3x + 7 = 2(x - 4) + 20.",
]
INSTRUCTION = "Solve the problem step by step, then put the final answer in \\boxed{}."


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups", type=int, default=64, help="B, groups scored")
    p.add_argument("--group-size", type=int, default=16, help="G, completions per group")
    p.add_argument("--gen-groups", type=int, default=3, help="groups generated to time the policy")
    p.add_argument("--max-new-tokens", type=int, default=256)
    p.add_argument("--model", default="smollm2-135m-instruct", help="policy (gcpo.models name)")
    p.add_argument("--embedder", default="all-MiniLM-L6-v2")
    p.add_argument("--embedder-batch-size", type=int, default=64)
    p.add_argument("--device", default="auto")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch's default)")
    p.add_argument(
        "--cache",
        help="JSON file: reuse the generated groups and their timings from an earlier run with "
        "this file (written when absent), to re-time scoring without regenerating",
    )
    return p.parse_args()


def generate_groups(
    args: argparse.Namespace, device: str
) -> tuple[list[list[str]], list[float], float]:
    """Sample ``gen_groups`` groups; returns (completions, seconds per group, mean new tokens)."""
    import torch

    from gcpo.models import load_policy

    model, tok = load_policy(args.model, device=device)
    texts, seconds, lengths = [], [], []
    for k in range(args.gen_groups):
        problem = PROMPTS[k % len(PROMPTS)]
        chat = [{"role": "user", "content": f"{problem}\n{INSTRUCTION}"}]
        prompt = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        enc = tok([prompt] * args.group_size, return_tensors="pt").to(device)
        torch.manual_seed(args.seed + k)
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=args.max_new_tokens,
            )
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        seconds.append(time.perf_counter() - t)
        new = out[:, enc["input_ids"].shape[1] :]
        for row in new:
            n = int((row != tok.pad_token_id).sum())
            lengths.append(n)
        texts.append(tok.batch_decode(new, skip_special_tokens=True))
        print(
            f"  generated group {k + 1}/{args.gen_groups}: {seconds[-1]:.2f} s, "
            f"{sum(lengths[-args.group_size :]) / args.group_size:.0f} new tokens on average",
            flush=True,
        )
    return texts, seconds, sum(lengths) / len(lengths)


class CachedEmbedder:
    """Wraps an embedder and memoises texts, so timing a signal excludes embedding it again."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.cache: dict[str, Any] = {}

    def embed(self, texts: Sequence[str]) -> Any:
        import torch

        todo = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if todo:
            for t, v in zip(todo, self.inner.embed(todo), strict=True):
                self.cache[t] = v
        return torch.stack([self.cache[t] for t in texts])

    def segments(self, text: str, max_segments: int | None = None) -> list[str]:
        return self.inner.segments(text, max_segments)


def tile(generated: list[list[str]], b: int) -> list[list[str]]:
    """``b`` groups from the generated ones; copies get a per-line tag so no text repeats."""
    out = []
    for i in range(b):
        group = generated[i % len(generated)]
        copy = i // len(generated)
        if copy == 0:
            out.append(list(group))
        else:
            out.append(["\n".join(f"({copy}) {ln}" for ln in c.split("\n")) for c in group])
    return out


def main() -> None:
    args = parse_args()
    import torch

    from gcpo.embedders import EmbedderConfig, get_embedder
    from gcpo.presets import preset
    from gcpo.scoring import Groups, GroupScorer
    from gcpo.weighting import initial_state

    if args.threads:
        torch.set_num_threads(args.threads)
    device = args.device
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    print(
        f"device={device} torch={torch.__version__} threads={torch.get_num_threads()} "
        f"cpus={os.cpu_count()} {platform.processor() or platform.machine()} "
        f"load average {os.getloadavg()[0]:.1f}"
    )
    print(f"generating {args.gen_groups} groups of G={args.group_size} with {args.model} ...")
    if args.cache and os.path.exists(args.cache):
        with open(args.cache, encoding="utf-8") as fh:
            saved = json.load(fh)
        generated, gen_seconds, mean_tokens = saved["texts"], saved["seconds"], saved["tokens"]
        print(f"  reusing {len(generated)} generated groups and their timings from {args.cache}")
    else:
        generated, gen_seconds, mean_tokens = generate_groups(args, device)
        if args.cache:
            with open(args.cache, "w", encoding="utf-8") as fh:
                json.dump({"texts": generated, "seconds": gen_seconds, "tokens": mean_tokens}, fh)
    gen_per_group = statistics.median(gen_seconds)

    rng = random.Random(args.seed)
    completions = tile(generated, args.groups)
    rewards = [[float(rng.random() < 0.5) for _ in g] for g in completions]
    prompts = [PROMPTS[i % len(PROMPTS)] for i in range(args.groups)]
    groups = Groups.from_lists(prompts, completions, rewards)
    warm = Groups.from_lists(prompts[:2], tile(generated, 2), rewards[:2])

    embedder = get_embedder(
        EmbedderConfig(name=args.embedder, batch_size=args.embedder_batch_size, device=device)
    )
    t = time.perf_counter()
    embedder.embed(["warm-up"])
    load_s = time.perf_counter() - t
    b = args.groups
    m = preset("gcpo-bot").bot_max_segments

    # 1. embedding, timed once per kind of text (the expensive part)
    comp_texts = [c for g in completions for c in g]
    seg_texts = [s for g in completions for c in g for s in embedder.segments(c, m)]
    embedder.embed(comp_texts[:8] + seg_texts[:8])  # warm-up at full length
    cached = CachedEmbedder(embedder)
    t = time.perf_counter()
    cached.embed(comp_texts)
    embed_comp = time.perf_counter() - t
    t = time.perf_counter()
    cached.embed(seg_texts)
    embed_seg = time.perf_counter() - t

    # 2. signals and weights on top of those embeddings (no embedding work left)
    scorer = GroupScorer(preset("gcpo"), embedder=cached)
    names = ["se", "cd", "bot", "rd", "eig"]
    scorer.signals(warm, names)  # one-time imports (POT, answer extraction) paid here
    timings: dict[str, float] = {}
    scorer.signals(groups, names, timings=timings)
    weights_s = {}
    for name in ("gcpo", "gcpo-bot", "seed-grpo"):
        cfg = preset(name)
        with warnings.catch_warnings():  # seed-grpo without logprobs: uniform SE weights
            warnings.simplefilter("ignore", UserWarning)
            res = GroupScorer(cfg, embedder=cached).score(groups, initial_state(cfg))
        weights_s[name] = res.timings["weights_s"]

    rows: list[tuple[str, float]] = [
        (f"embedding: {len(comp_texts)} completions (CD, EigenScore)", embed_comp),
        (f"embedding: {len(seg_texts)} segments (BoT point clouds)", embed_seg),
    ]
    for name, label in (
        ("semantic_entropy", "semantic entropy (answer extraction + SE)"),
        ("cosine_dispersion", "cosine dispersion"),
        ("barycentric_transport", "barycentric transport (POT)"),
        ("reward_dispersion", "reward dispersion"),
        ("eigenscore", "eigenscore"),
    ):
        rows.append((label, timings[f"{name}_s"]))
    sig = {k: timings[f"{k}_s"] for k in ("semantic_entropy", "cosine_dispersion",
                                          "barycentric_transport", "reward_dispersion")}  # fmt: skip
    rd = sig["reward_dispersion"]
    rows.append(
        ("total gcpo: embed completions + CD + RD + weights",
         embed_comp + sig["cosine_dispersion"] + rd + weights_s["gcpo"])
    )  # fmt: skip
    rows.append(
        ("total gcpo-bot: embed segments + BoT + RD + weights",
         embed_seg + sig["barycentric_transport"] + rd + weights_s["gcpo-bot"])
    )  # fmt: skip
    rows.append(("total seed-grpo: SE + weights", sig["semantic_entropy"] + weights_s["seed-grpo"]))

    print(f"load average at the end: {os.getloadavg()[0]:.1f}")
    n_words = statistics.mean(len(c.split()) for g in completions for c in g)
    print()
    print(
        f"B={b} groups x G={args.group_size}; completions: {mean_tokens:.0f} new tokens "
        f"(~{n_words:.0f} words) on average; embedder {args.embedder} load {load_s:.1f} s (once)"
    )
    print(
        f"generation ({args.model}, median of {len(gen_seconds)} groups): {gen_per_group * 1e3:.0f} ms/group"
    )
    print()
    width = max(len(label) for label, _ in rows)
    print(f"| {'step'.ljust(width)} | ms/group | % of generation |")
    print(f"| {'-' * width} | -------: | --------------: |")
    for label, seconds in rows:
        ms = seconds / b * 1e3
        pct = 100.0 * seconds / b / gen_per_group
        print(f"| {label.ljust(width)} | {ms:8.1f} | {pct:14.2f}% |")


if __name__ == "__main__":
    main()
