"""The fast embedder against MiniLM: speed, agreement of the signals, and the verl step budget.

Run (from the repository root)::

    python benchmarks/embedders.py --groups-file runs/embedder-groups.jsonl --threads 1

1. Real groups. ``--groups-file`` is read when it exists; otherwise the policy (default
   SmolLM2-135M-Instruct, float32, CPU) samples ``--gen-groups`` groups of ``--group-size``
   completions (temperature 1, up to ``--max-new-tokens``) for MATH500 problems of levels 1-3
   from ``--data-dir`` (default ``../shared/data``), scores them with ``gcpo.tasks.math_reward``
   and writes them there (the ``gcpo signals`` JSONL format plus the generated token ids).
2. Speed. Every completion of those groups is embedded by MiniLM (``all-MiniLM-L6-v2``), by
   ``static-minilm``, by ``static-minilm`` re-indexed to the policy's vocabulary (text in), and
   by the re-indexed table from the generated token ids (no decoding, what the verl plugin does);
   each is timed in the same run, after a warm-up, and reported as texts/s and as a speed-up
   over MiniLM.
3. Agreement. Cosine Dispersion and Barycentric Transport of every group are computed with each
   embedder (``gcpo.scoring.GroupScorer``); the Spearman correlation of each static variant's
   values with MiniLM's over the groups is the agreement (also over the groups with reward
   dispersion > 0, the ones whose weight matters). Also reported: how often tokenizing a
   decoded completion gives back the generated ids (when it does, text and id paths agree
   exactly).
4. The verl step at scale. ``gcpo.verl.GCPOAdvantageStep`` (the code the verl plugin runs on each
   batch: decode, embed, score, weight) on ``--scale-groups`` x ``--scale-group-size``
   completions of about ``--scale-tokens`` policy tokens each (the real completions tiled and
   concatenated up to that length), on one thread, against the budget of ``--budget-s`` seconds
   (1% of a 60 s GPU step).

5. ``--variants``: the agreement of other distillation settings (PCA dimensions, SIF weighting)
   on the same groups, from one MiniLM pass over its vocabulary.

Numbers depend on the machine; the speed-ups and the share of the budget are measured side by
side in one run.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import time
from pathlib import Path
from typing import Any


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--groups-file", default="runs/embedder-groups.jsonl")
    p.add_argument("--data-dir", default="../shared/data")
    p.add_argument("--model", default="smollm2-135m-instruct", help="policy (gcpo.models name)")
    p.add_argument("--gen-groups", type=int, default=40, help="groups to generate when needed")
    p.add_argument("--group-size", type=int, default=8)
    p.add_argument("--max-new-tokens", type=int, default=192)
    p.add_argument("--generate-only", action="store_true", help="stop after writing the groups")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--scale-groups", type=int, default=512)
    p.add_argument("--scale-group-size", type=int, default=16)
    p.add_argument("--scale-tokens", type=int, default=500)
    p.add_argument("--budget-s", type=float, default=0.6)
    p.add_argument("--repeats", type=int, default=3, help="timed repetitions (median reported)")
    p.add_argument("--skip-minilm", action="store_true", help="no MiniLM rows (quick check)")
    p.add_argument(
        "--variants",
        action="store_true",
        help="also compare other distillation settings (one extra MiniLM pass over its vocabulary)",
    )
    return p.parse_args()


# ---------------------------------------------------------------------------------------------
# 1. real groups
# ---------------------------------------------------------------------------------------------

INSTRUCTION = "Solve the problem step by step, then put the final answer in \\boxed{}."


def _problems(data_dir: str) -> list[tuple[str, str]]:
    path = Path(data_dir) / "math500" / "test.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path} not found: pass --data-dir (MATH500 test.jsonl)")
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    easy = [(r["problem"], r["answer"]) for r in rows if int(r.get("level", 5)) <= 3]
    random.Random(0).shuffle(easy)
    return easy


def generate(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from gcpo.models import load_policy
    from gcpo.tasks import math_reward

    model, tok = load_policy(args.model)
    problems = _problems(args.data_dir)
    rows: list[dict[str, Any]] = []
    t0 = time.perf_counter()
    for k in range(args.gen_groups):
        problem, answer = problems[k % len(problems)]
        chat = [{"role": "user", "content": f"{problem}\n{INSTRUCTION}"}]
        prompt = tok.apply_chat_template(chat, tokenize=False, add_generation_prompt=True)
        enc = tok([prompt] * args.group_size, return_tensors="pt")
        torch.manual_seed(args.seed + k)
        with torch.inference_mode():
            out = model.generate(
                **enc,
                do_sample=True,
                temperature=1.0,
                top_p=1.0,
                top_k=0,
                max_new_tokens=args.max_new_tokens,
            )
        new = out[:, enc["input_ids"].shape[1] :]
        ids = [[int(t) for t in row if int(t) != tok.pad_token_id] for row in new]
        ids = [[t for t in row if t not in tok.all_special_ids] for row in ids]
        texts = tok.batch_decode(ids, skip_special_tokens=True)
        rewards = [math_reward(t, answer) for t in texts]
        rows.append(
            {
                "prompt": problem,
                "completions": texts,
                "rewards": rewards,
                "answer": answer,
                "completion_ids": ids,
            }
        )
        done = time.perf_counter() - t0
        print(
            f"  group {k + 1}/{args.gen_groups}: mean reward {statistics.mean(rewards):.2f}, "
            f"{statistics.mean(len(i) for i in ids):.0f} tokens, {done:.0f} s so far",
            flush=True,
        )
    return rows


def load_or_generate(args: argparse.Namespace) -> list[dict[str, Any]]:
    path = Path(args.groups_file)
    if path.is_file():
        rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
        print(f"groups: {len(rows)} read from {path}")
        return rows
    print(f"groups: generating {args.gen_groups} x {args.group_size} with {args.model}")
    rows = generate(args)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in rows))
    os.replace(tmp, path)
    print(f"groups: written to {path}")
    return rows


# ---------------------------------------------------------------------------------------------
# 2. speed, 3. agreement
# ---------------------------------------------------------------------------------------------


def _timed(fn: Any, repeats: int) -> tuple[float, Any]:
    """Median seconds of ``repeats`` calls (after one warm-up call) and the last result."""
    fn()
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def _spearman(a: Any, b: Any) -> float:
    from scipy.stats import spearmanr

    return float(spearmanr(a, b).statistic)


def _pairwise(emb: Any, sizes: list[int]) -> Any:
    """Cosines of all within-group pairs, concatenated over groups."""
    import torch

    out, pos = [], 0
    for g in sizes:
        e = emb[pos : pos + g]
        iu = torch.triu_indices(g, g, 1)
        out.append((e @ e.T)[iu[0], iu[1]])
        pos += g
    return torch.cat(out)


def compare(args: argparse.Namespace, rows: list[dict[str, Any]]) -> Any:
    import torch

    from gcpo.embedders import StaticEmbedder, get_embedder
    from gcpo.models import load_tokenizer
    from gcpo.presets import preset
    from gcpo.scoring import Groups, GroupScorer
    from gcpo.signals import cosine_dispersion

    tok = load_tokenizer(args.model)
    groups = Groups.from_rows(
        [{k: r[k] for k in ("prompt", "completions", "rewards")} for r in rows], "groups"
    )
    texts = [c for r in rows for c in r["completions"]]
    ids = [i for r in rows for i in r["completion_ids"]]
    sizes = [len(r["completions"]) for r in rows]
    n_tokens = sum(len(i) for i in ids)
    print(
        f"\n{len(rows)} groups, {len(texts)} completions, {n_tokens / len(texts):.0f} policy "
        f"tokens each on average; {sum(float(x) > 0 for x in groups.rewards.std(1))} groups "
        "with reward dispersion > 0"
    )
    roundtrip = sum(
        tok.encode(t, add_special_tokens=False) == i for t, i in zip(texts, ids, strict=True)
    )
    print(
        f"tokenizing the decoded completion gives back the generated ids: {roundtrip}/{len(texts)}"
    )

    t = time.perf_counter()
    static = get_embedder("static-minilm")
    assert isinstance(static, StaticEmbedder)
    load_s = time.perf_counter() - t
    t = time.perf_counter()
    policy = static.for_tokenizer(tok, name="static-minilm@policy")
    reindex_s = time.perf_counter() - t
    print(f"static-minilm: loaded in {load_s:.2f} s, re-indexed to the policy in {reindex_s:.2f} s")

    variants: dict[str, Any] = {}
    if not args.skip_minilm:
        variants["all-MiniLM-L6-v2"] = get_embedder("all-MiniLM-L6-v2")
    variants["static-minilm (text)"] = static
    variants["static-minilm@policy (text)"] = policy
    timing: dict[str, float] = {}
    vectors: dict[str, Any] = {}
    for name, emb in variants.items():
        repeats = 1 if name.startswith("all-MiniLM") else args.repeats
        timing[name], vectors[name] = _timed(lambda e=emb: e.embed(texts), repeats)
    name = "static-minilm@policy (token ids)"
    timing[name], vectors[name] = _timed(lambda: policy.embed_token_ids(ids), args.repeats)

    ref = "all-MiniLM-L6-v2" if not args.skip_minilm else "static-minilm (text)"
    print(f"\nspeed ({len(texts)} completions, {args.threads} thread(s), median of repeats):\n")
    print("| embedder | s | completions/s | speed-up vs " + ref + " |")
    print("|---|---:|---:|---:|")
    for name, sec in timing.items():
        print(f"| {name} | {sec:.3f} | {len(texts) / sec:,.0f} | x{timing[ref] / sec:,.0f} |")

    # agreement of the signals with MiniLM's
    signals: dict[str, dict[str, Any]] = {}
    for name, emb in variants.items():
        scorer = GroupScorer(preset("gcpo-bot"), embedder=emb)
        signals[name] = scorer.signals(groups, ["cd", "bot"])
    mask = groups.mask
    emb_ids = torch.zeros(mask.shape[0], mask.shape[1], policy.dim)
    emb_ids[mask] = vectors["static-minilm@policy (token ids)"]
    signals["static-minilm@policy (token ids)"] = {
        "cosine_dispersion": cosine_dispersion(emb_ids, None, mask),
        "barycentric_transport": signals["static-minilm@policy (text)"]["barycentric_transport"],
    }
    context = {"timing": timing, "groups": groups, "sizes": sizes}
    if args.skip_minilm:
        return context
    context["reference"] = (signals[ref], vectors[ref])
    active = groups.rewards.std(1) > 0
    base, pair_ref = signals[ref], _pairwise(vectors[ref], sizes)
    print(f"\nagreement with {ref} over {len(rows)} real groups (Spearman rho):\n")
    print("| embedder | CD | BoT | CD, groups with RD > 0 | within-group pairwise cosines |")
    print("|---|---:|---:|---:|---:|")
    for name, sig in signals.items():
        if name == ref:
            continue
        cd = _spearman(sig["cosine_dispersion"], base["cosine_dispersion"])
        bot = _spearman(sig["barycentric_transport"], base["barycentric_transport"])
        n_act = int(active.sum())
        cd_act = (
            f"{_spearman(sig['cosine_dispersion'][active], base['cosine_dispersion'][active]):.3f}"
            f" ({n_act})"
            if n_act >= 5
            else f"- ({n_act} groups)"
        )
        pw = _spearman(_pairwise(vectors[name], sizes), pair_ref)
        print(f"| {name} | {cd:.3f} | {bot:.3f} | {cd_act} | {pw:.3f} |")
    print(
        "\n(static-minilm@policy (token ids) uses the text path for BoT's segments, as the verl "
        "plugin does, so its BoT column equals the policy (text) row.)"
    )
    return context


def variants(args: argparse.Namespace, context: dict[str, Any]) -> None:
    """Agreement with MiniLM of other distillation settings (PCA dims, SIF weighting)."""
    from tokenizers import Tokenizer

    from gcpo.embedders import (
        StaticEmbedder,
        default_model_path,
        encoder_token_vectors,
        static_vectors,
    )
    from gcpo.scoring import GroupScorer
    from gcpo.weighting import preset

    src = default_model_path()
    t = time.perf_counter()
    tokens, raw = encoder_token_vectors(src)
    print(
        f"\ndistillation settings (MiniLM pass over its vocabulary: {time.perf_counter() - t:.0f} s)"
    )
    tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
    base, ref_vectors = context["reference"]
    groups, sizes = context["groups"], context["sizes"]
    print("\n| PCA dims | SIF | CD rho | BoT rho | pairwise-cosine rho |")
    print("|---|---|---:|---:|---:|")
    for pca, sif in [(256, 1e-4), (256, None), (None, 1e-4), (None, None), (128, 1e-4), (64, 1e-4)]:
        emb = StaticEmbedder(static_vectors(tokens, raw, pca, sif), tokenizer)
        sig = GroupScorer(preset("gcpo-bot"), embedder=emb).signals(groups, ["cd", "bot"])
        vec = emb.embed([c for g in groups.completions for c in g])
        print(
            f"| {pca or 'none (384)'} | {sif or 'none'} | "
            f"{_spearman(sig['cosine_dispersion'], base['cosine_dispersion']):.3f} | "
            f"{_spearman(sig['barycentric_transport'], base['barycentric_transport']):.3f} | "
            f"{_spearman(_pairwise(vec, sizes), _pairwise(ref_vectors, sizes)):.3f} |"
        )


# ---------------------------------------------------------------------------------------------
# 4. the verl step at scale
# ---------------------------------------------------------------------------------------------


def scale(
    args: argparse.Namespace, rows: list[dict[str, Any]], minilm_per_token: float | None
) -> None:
    import torch

    from gcpo.models import load_tokenizer
    from gcpo.verl import GCPOAdvantageStep, VerlGCPOConfig

    tok = load_tokenizer(args.model)
    pool = [i for r in rows for i in r["completion_ids"] if i]
    rng = random.Random(args.seed)
    b, g, n_tok = args.scale_groups, args.scale_group_size, args.scale_tokens
    ids, uids = [], []
    for k in range(b):
        for _ in range(g):
            seq: list[int] = []
            while len(seq) < n_tok:
                seq.extend(rng.choice(pool))
            ids.append(torch.tensor(seq[:n_tok]))
            uids.append(f"uid{k}")
    gen = torch.Generator().manual_seed(args.seed)
    scores = torch.randint(0, 2, (b * g,), generator=gen).float()
    print(
        f"\nthe verl step at scale: B = {b} groups x G = {g} completions x {n_tok} policy tokens "
        f"({b * g * n_tok / 1e6:.1f} M tokens), {args.threads} thread(s), budget {args.budget_s} s\n"
    )
    print(
        "| weighting / embedder path | total s | vs budget | decode | embed | signals + weights |"
    )
    print("|---|---:|---:|---:|---:|---:|")
    cases = [
        ("gcpo, static-minilm from token ids (default)", VerlGCPOConfig(), args.repeats),
        ("gcpo, static-minilm from decoded text", VerlGCPOConfig(embed_token_ids=False), 1),
        ("gcpo-bot, static-minilm (segments from text)", VerlGCPOConfig(preset="gcpo-bot"), 1),
    ]
    for label, settings, repeats in cases:
        step = GCPOAdvantageStep(settings, tok)
        step.prepare()  # load / re-index the embedder and build the decoder once, untimed
        times = []
        metrics: dict[str, float] = {}
        for _ in range(repeats):
            t = time.perf_counter()
            metrics = step.score(uids, ids, scores).metrics
            times.append(time.perf_counter() - t)
        total = statistics.median(times)
        decode = metrics.get("gcpo/decode_s", 0.0)
        embed = metrics.get("gcpo/embed_ids_s", 0.0) + metrics.get("gcpo/embed_s", 0.0)
        rest = total - decode - embed
        print(
            f"| {label} | {total:.2f} | {total / args.budget_s:.1f}x | {decode:.2f} | "
            f"{embed:.2f} | {rest:.2f} |"
        )
    if minilm_per_token is not None:
        est = minilm_per_token * b * g * n_tok
        print(
            f"| gcpo, all-MiniLM-L6-v2 (not run: its seconds per policy token measured above x "
            f"{b * g * n_tok / 1e6:.1f} M tokens) | ~{est:,.0f} | ~{est / args.budget_s:,.0f}x "
            "| | | |"
        )


def main() -> None:
    args = parse_args()
    os.environ.setdefault("RAYON_NUM_THREADS", str(max(args.threads, 1)))
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    torch.set_num_threads(args.threads)
    rows = load_or_generate(args)
    if args.generate_only:
        return
    print(f"machine: {platform.processor() or platform.machine()}, torch {torch.__version__}")
    context = compare(args, rows)
    if args.variants and not args.skip_minilm:
        variants(args, context)
    minilm = context["timing"].get("all-MiniLM-L6-v2")
    n_tokens = sum(len(i) for r in rows for i in r["completion_ids"])
    scale(args, rows, None if minilm is None else minilm / n_tokens)


if __name__ == "__main__":
    main()
