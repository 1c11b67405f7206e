"""``gcpo analyze``: does an uncertainty signal track per-prompt policy-gradient noise?

For each of N prompts: sample G completions from the policy, score them (rewards), compute every
uncertainty signal of the group, the GRPO advantages ``A_i``, and the per-completion policy
gradients ``g_i = A_i * grad l_i`` on a parameter subset (see :mod:`gcpo.diagnostics.gradients`),
then the group's gradient variance V, ``||g_bar||^2`` and NSR. Each finished group is appended to
``groups.jsonl`` at once, so an interrupted run resumes where it stopped. At the end, the
calibrated/weighted form of every weighting preset is computed over all groups and the outputs
are (re)written:

- ``groups.csv``: one line per group (prompt id, every signal, every preset's calibrated
  uncertainty and weight, RD, V, ||g_bar||^2, NSR, accuracy, mean completion length);
- ``correlations.md`` / ``correlations.csv``: Spearman rho with bootstrap 95 % CIs of every signal
  against V and NSR over groups with RD > 0, and the partial Spearman given RD;
- ``scatter_V.png`` / ``scatter_NSR.png``.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcpo.config import ConfigError, field, to_dict, validate

__all__ = ["AnalyzeConfig", "AnalysisResult", "run_analysis", "summarise", "SIGNAL_COLUMNS"]

SYNTHETIC = ("arithmetic", "passage-qa")
# the project's offline benchmark copies: ../shared/data next to the repository root
_SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"
DEFAULT_PRESETS = ("seed-grpo", "seed-grpo-strong", "gcpo", "gcpo-bot")

# name in the outputs -> what it is (higher = more uncertain for every one of them)
SIGNAL_COLUMNS: dict[str, str] = {
    "se_answer": "semantic entropy, answer clusters, likelihood-weighted (SEED-GRPO's signal)",
    "se_embedding": "semantic entropy, embedding clusters (cosine >= threshold), likelihood-weighted",
    "cosine_dispersion": "CD = 1 - ||mean unit embedding||",
    "barycentric_transport": "BoT over segment point clouds",
    "eigenscore": "EigenScore (INSIDE) of the completion embeddings",
    "token_entropy": "mean next-token entropy of the completions",
    "negative_log_likelihood": "mean of -l_i (length-normalised sequence NLL)",
    "reward_dispersion": "RD, population std of the rewards (the calibrator)",
}


@dataclass
class AnalyzeConfig:
    """Everything ``gcpo analyze`` needs; the CLI flags map one-to-one onto these fields."""

    model: str = field(
        "smollm2-135m-instruct",
        help="policy: 'smollm2-135m-instruct' (embedded default), 'tiny-random', a local HF "
        "directory or a hub id available offline",
    )
    task: str | None = field(None, help="built-in task", choices=SYNTHETIC)
    benchmark: str | None = field(
        None,
        help="benchmark (math500, aime24, olympiadbench; hotpotqa, qasper, narrativeqa scored by "
        "F1), read from --data-dir, else ../shared/data next to the repository, else the hub",
    )
    data_dir: str | None = field(
        None, help="directory holding <benchmark>/test.jsonl (default: the shared data directory)"
    )
    max_level: int = field(
        0,
        help="benchmark items of MATH difficulty level <= this only (0 = no filter); the prompts "
        "are then a seeded sample of those",
        min=0,
        max=5,
    )
    prompts: int = field(32, help="number of prompt groups", min=1)
    group_size: int = field(8, help="completions per prompt (G)", min=2)
    params: str = field(
        "last-block",
        help="parameter subset for the gradients: last-block, lm_head, all, or a name regex",
    )
    project_dim: int = field(
        0,
        help="CountSketch the per-completion gradients to this many dims (0 = exact gradients); "
        "relative error of squared norms has std <= sqrt(2/k)",
        min=0,
    )
    max_new_tokens: int = field(64, help="generation length limit", min=1)
    temperature: float = field(1.0, help="sampling temperature (log-probs use the same)", min=1e-3)
    top_p: float = field(1.0, help="nucleus sampling threshold", min=0.0, max=1.0)
    seed: int = field(0, help="seed for prompt selection, sampling, projection and bootstrap")
    embedder: str = field(
        "all-MiniLM-L6-v2", help="sentence embedder: all-MiniLM-L6-v2 (default), hashing, or a path"
    )
    cluster_threshold: float = field(
        0.9, help="cosine threshold of the embedding clusterer (se_embedding)", min=-1.0, max=1.0
    )
    presets: list[str] = field(
        default_factory=lambda: list(DEFAULT_PRESETS),
        help="weighting presets whose calibrated uncertainty and weight are reported",
    )
    bootstrap: int = field(1000, help="bootstrap resamples for the 95 % CIs", min=10)
    output: str = field("runs/analyze", help="output directory (resumable)")

    def __post_init__(self) -> None:
        from gcpo.weighting import available_presets

        allowed = available_presets()
        unknown = [p for p in self.presets if p not in allowed]
        if unknown:
            raise ConfigError(f"presets: unknown {unknown[0]!r}; allowed: {', '.join(allowed)}")


# Fields that must match for a rerun to resume into an existing output directory.
_FINGERPRINT = (
    "model",
    "task",
    "benchmark",
    "max_level",
    "group_size",
    "params",
    "project_dim",
    "max_new_tokens",
    "temperature",
    "top_p",
    "seed",
    "embedder",
    "cluster_threshold",
)


@dataclass
class AnalysisResult:
    output: Path
    rows: list[dict[str, Any]]
    correlations: list[dict[str, Any]]
    new_groups: int


# ------------------------------------------------------------------------------------------
# Prompts
# ------------------------------------------------------------------------------------------


@dataclass
class _Item:
    prompt_id: str
    messages: list[dict[str, str]]
    answer: str
    reward: Callable[[str, str], float]
    answer_key: Callable[[str], str | None]


def _first_line_key(text: str) -> str | None:
    for line in text.strip().splitlines():
        if line.strip():
            return " ".join(line.lower().strip(" .!?").split())
    return None


def _level(value: Any) -> int:
    """MATH difficulty level (1..5) from ``meta['level']`` (int or 'Level 3'); unknown -> 99."""
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return int(digits) if digits else 99


def _load_items(cfg: AnalyzeConfig) -> list[_Item]:
    from gcpo.tasks import extract_answer, math_reward

    if cfg.task is not None:
        from gcpo.tasks.synthetic import arithmetic_reward, make_task, passage_qa_reward

        rows = make_task(cfg.task, cfg.prompts, split="test", seed=cfg.seed)
        if cfg.task == "arithmetic":
            reward, key = (
                arithmetic_reward,
                (lambda c: extract_answer(c, last_number_fallback=True)),
            )
        else:
            reward, key = passage_qa_reward, _first_line_key
        items = []
        for row in rows:
            text = row["prompt"][0]["content"]
            pid = f"{cfg.task}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
            items.append(_Item(pid, row["prompt"], row["answer"], reward, key))
        return items
    from gcpo.tasks import qa_scores
    from gcpo.tasks.benchmarks import load_benchmark

    data_dir = cfg.data_dir
    if data_dir is None and _SHARED_DATA.is_dir():
        data_dir = str(_SHARED_DATA)
    if cfg.max_level:
        import random

        pool = [
            ex
            for ex in load_benchmark(cfg.benchmark, data_dir=data_dir)
            if _level(ex.meta.get("level")) <= cfg.max_level
        ]
        if not pool:
            raise ConfigError(
                f"max_level={cfg.max_level}: no {cfg.benchmark} item has a level that low"
            )
        # a seeded shuffle, so that --prompts n picks a prefix of what a larger n picks
        order = list(range(len(pool)))
        random.Random(cfg.seed).shuffle(order)
        examples = [pool[i] for i in order[: cfg.prompts]]
    else:
        examples = load_benchmark(
            cfg.benchmark, data_dir=data_dir, limit=cfg.prompts, seed=cfg.seed
        )
    items = []
    for ex in examples:
        if ex.kind == "math":
            reward, key = (lambda c, a: math_reward(c, a)), extract_answer
        else:
            refs = list(ex.answers)
            reward, key = (lambda c, a, refs=refs: qa_scores(c, refs)["f1"]), _first_line_key
        items.append(_Item(f"{cfg.benchmark}-{ex.id}", ex.messages, ex.answer, reward, key))
    return items


# ------------------------------------------------------------------------------------------
# One group
# ------------------------------------------------------------------------------------------


def _seed_of(prompt_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()[:4], "big")


def _sample(
    model: Any, tokenizer: Any, item: _Item, cfg: AnalyzeConfig
) -> tuple[Any, list[Any], list[float], list[float]]:
    """G sampled completions of one prompt.

    Returns (prompt ids ``[T]``, G completion id tensors (cut after the first EOS, which is
    kept: the policy chose it), G mean token log-probs ``l_i`` and G mean token entropies, both
    from the sampling logits divided by the temperature). Seeded by (seed, prompt id), so a
    resumed run draws the same completions for a prompt whatever the order.
    """
    import torch

    text = tokenizer.apply_chat_template(item.messages, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    torch.manual_seed(_seed_of(item.prompt_id, cfg.seed))
    device = next(iter(model.parameters())).device
    batch = prompt[None].repeat(cfg.group_size, 1).to(device)
    with torch.no_grad():
        out = model.generate(
            input_ids=batch,
            attention_mask=torch.ones_like(batch),
            do_sample=True,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=0,
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
    eos = {tokenizer.eos_token_id} | set(_as_list(model.generation_config.eos_token_id))
    gen = out.sequences[:, prompt.numel() :].cpu()
    completions, logprobs, entropies = [], [], []
    for i, row in enumerate(gen):
        ids = row.tolist()
        cut = next((j + 1 for j, t in enumerate(ids) if t in eos), len(ids))
        completions.append(row[:cut])
        if cut == 0:
            logprobs.append(0.0)
            entropies.append(0.0)
            continue
        logits = torch.stack([step[i] for step in out.logits[:cut]]).float().cpu()
        logp = torch.log_softmax(logits / cfg.temperature, dim=-1)
        logprobs.append(float(logp.gather(-1, row[:cut, None]).mean()))
        entropies.append(float(-(logp.exp() * logp).sum(-1).mean()))
    return prompt.cpu(), completions, logprobs, entropies


def _as_list(x: Any) -> list[Any]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


# Fields of a WeightingConfig that change a signal's value (the rest only shape the weight).
_SIGNAL_FIELDS = (
    "signal",
    "se_clusterer",
    "se_likelihood_weighting",
    "cluster_threshold",
    "completion_weighting",
    "bot_max_segments",
    "bot_support_size",
    "bot_max_iter",
    "eigenscore_alpha",
)


def _signal_key(config: Any) -> tuple[Any, ...]:
    key = {f: getattr(config, f) for f in _SIGNAL_FIELDS}
    if config.signal != "semantic_entropy" or config.se_clusterer != "embedding":
        key["cluster_threshold"] = None
    if config.signal != "semantic_entropy":
        key.update(se_clusterer=None, se_likelihood_weighting=None)
    if config.signal not in ("cosine_dispersion", "barycentric_transport"):
        key["completion_weighting"] = None
    if config.signal != "barycentric_transport":
        key.update(bot_max_segments=None, bot_support_size=None, bot_max_iter=None)
    if config.signal != "eigenscore":
        key["eigenscore_alpha"] = None
    return tuple(key.values())


def signal_plan(cfg: AnalyzeConfig) -> tuple[dict[str, Any], dict[str, str]]:
    """Which WeightingConfig computes each output column, and which column each preset weights.

    The baseline columns (:data:`SIGNAL_COLUMNS`) use the ``seed-grpo`` preset's settings for
    semantic entropy (answer clusters, likelihood weighting; ``se_embedding`` swaps in the
    embedding clusterer) and the ``gcpo`` preset's settings for everything else. A preset whose
    signal settings match a column reuses it; otherwise it gets its own column ``u_<preset>``.
    """
    import dataclasses

    from gcpo.weighting import preset

    seed, gcpo = preset("seed-grpo"), preset("gcpo")
    columns: dict[str, Any] = {
        "se_answer": seed,
        "se_embedding": dataclasses.replace(
            seed, se_clusterer="embedding", cluster_threshold=cfg.cluster_threshold
        ),
    }
    for name in list(SIGNAL_COLUMNS)[2:]:
        columns[name] = dataclasses.replace(gcpo, signal=name)
    by_key = {_signal_key(c): name for name, c in columns.items()}
    preset_column: dict[str, str] = {}
    for name in cfg.presets:
        config = preset(name)
        if config.signal == "none":
            continue
        key = _signal_key(config)
        if key not in by_key:
            by_key[key] = f"u_{name}"
            columns[f"u_{name}"] = config
        preset_column[name] = by_key[key]
    return columns, preset_column


def _group_signals(groups: Any, scorers: list[tuple[Any, list[str]]]) -> dict[str, float]:
    """Every planned column for one group (``scorers``: (GroupScorer, its columns) pairs)."""
    out: dict[str, float] = {}
    for scorer, cols in scorers:
        values = scorer.signals(groups, [scorer.config.signal])
        (value,) = values.values()
        for col in cols:
            out[col] = float(value.reshape(-1)[0])
    return out


def _make_scorers(columns: dict[str, Any], embedder: Any) -> list[tuple[Any, list[str]]]:
    from gcpo.scoring import GroupScorer

    merged: dict[tuple[Any, ...], tuple[Any, list[str]]] = {}
    for col, config in columns.items():
        key = _signal_key(config)
        if key not in merged:
            merged[key] = (GroupScorer(config, embedder), [])
        merged[key][1].append(col)
    return list(merged.values())


def _analyse_group(
    item: _Item,
    model: Any,
    tokenizer: Any,
    params: list[Any],
    sketch: Any,
    scorers: list[tuple[Any, list[str]]],
    cfg: AnalyzeConfig,
) -> dict[str, Any]:
    import torch

    from gcpo.advantages import grpo_advantages
    from gcpo.diagnostics.gradients import completion_gradients
    from gcpo.diagnostics.stats import gradient_noise
    from gcpo.scoring import Groups

    started = time.perf_counter()
    prompt, completions, logprobs, entropies = _sample(model, tokenizer, item, cfg)
    plen = prompt.numel()
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completions]
    rewards = [float(item.reward(t, item.answer)) for t in texts]
    adv = grpo_advantages(torch.tensor([rewards]))[0]
    seqs = [torch.cat([prompt, c]) for c in completions]
    grads = completion_gradients(
        model,
        params,
        seqs,
        [plen] * len(seqs),
        adv,
        sketch=sketch,
        temperature=cfg.temperature,
        skip_zero=True,
    )
    noise = gradient_noise(grads.grads)
    groups = Groups.from_lists(
        [tokenizer.decode(prompt)],
        [texts],
        [rewards],
        logprobs=[logprobs],
        answers=[[item.answer_key(t) for t in texts]],
        token_entropy=[entropies],
    )
    row: dict[str, Any] = {"prompt_id": item.prompt_id}
    row.update(_group_signals(groups, scorers))
    row.update(
        {
            "grad_variance": float(noise.variance),
            "grad_mean_sq_norm": float(noise.mean_sq_norm),
            "grad_nsr": float(noise.nsr),
            "accuracy": sum(rewards) / len(rewards),
            "mean_tokens": float(grads.num_tokens.float().mean()),
            "seconds": round(time.perf_counter() - started, 3),
            "rewards": rewards,
            "logprobs": logprobs,
            "completions": texts,
        }
    )
    return row


# ------------------------------------------------------------------------------------------
# Presets: calibrated uncertainty and weight of every group
# ------------------------------------------------------------------------------------------


def preset_columns(
    rows: Sequence[dict[str, Any]], presets: Sequence[str], preset_column: dict[str, str]
) -> list[dict[str, float]]:
    """Per group, ``cal_<preset>`` (calibrated uncertainty U~) and ``weight_<preset>``.

    All groups are weighted in one call, so ``rank`` normalisation ranks each group among all
    analysed groups (a fresh window), and ``renormalize`` averages over all groups with RD > 0.
    """
    import torch

    from gcpo.weighting import group_weights_detailed, initial_state, preset

    out: list[dict[str, float]] = [{} for _ in rows]
    if not rows:
        return out
    rd = torch.tensor([float(r["reward_dispersion"]) for r in rows], dtype=torch.float64)
    group_size = torch.tensor([len(r["rewards"]) for r in rows])
    for name in presets:
        config = preset(name)
        col = preset_column.get(name)
        u = (
            torch.zeros(len(rows), dtype=torch.float64)
            if col is None
            else torch.tensor([float(r[col]) for r in rows], dtype=torch.float64)
        )
        res = group_weights_detailed(u, rd, config, initial_state(config), group_size=group_size)
        for i, o in enumerate(out):
            o[f"cal_{name}"] = float(res.calibrated[i])
            o[f"weight_{name}"] = float(res.weights[i])
    return out


# ------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------


def _fingerprint(cfg: AnalyzeConfig) -> dict[str, Any]:
    d = to_dict(cfg)
    return {k: d[k] for k in _FINGERPRINT}


def _check_resume(out: Path, cfg: AnalyzeConfig) -> None:
    from gcpo.io import atomic_write_text

    meta = out / "run.json"
    want = _fingerprint(cfg)
    if meta.is_file():
        have = json.loads(meta.read_text(encoding="utf-8")).get("fingerprint", {})
        defaults = to_dict(AnalyzeConfig())
        # a field added after the run was started counts as its default
        diff = [k for k in want if have.get(k, defaults[k]) != want[k]]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"output {str(out)!r} holds a run with {k}={have.get(k)!r}, this run has "
                f"{k}={want[k]!r}; use another --output or delete the directory"
            )
    atomic_write_text(
        meta, json.dumps({"fingerprint": want, "config": to_dict(cfg)}, indent=2) + "\n"
    )


def _read_done(path: Path) -> list[dict[str, Any]]:
    from gcpo.io import JsonlReport, read_jsonl, write_jsonl

    if not path.exists():
        return []
    report = JsonlReport()
    rows = read_jsonl(
        path, required=("prompt_id",), skip_bad_rows=True, report=report, allow_empty=True
    )
    if report.skipped:  # e.g. a line cut short by a kill: rewrite so appends start clean
        write_jsonl(path, rows)
    return rows


def summarise(
    rows: list[dict[str, Any]], cfg: AnalyzeConfig, out: Path, *, plots: bool = True
) -> list[dict[str, Any]]:
    """Write groups.csv, correlations.{md,csv} and scatter plots from the per-group rows."""
    from gcpo.diagnostics.report import (
        correlation_rows,
        correlations_markdown,
        rows_to_csv,
        scatter_plot,
    )
    from gcpo.io import atomic_write_text

    columns_plan, preset_column = signal_plan(cfg)
    extra = preset_columns(rows, cfg.presets, preset_column)
    table = [{**r, **e} for r, e in zip(rows, extra, strict=True)]
    cal = [f"cal_{p}" for p in cfg.presets if p in preset_column]
    signals = list(columns_plan) + cal
    columns = (
        ["prompt_id"]
        + signals
        + [f"weight_{p}" for p in cfg.presets]
        + ["grad_variance", "grad_mean_sq_norm", "grad_nsr", "accuracy", "mean_tokens", "seconds"]
    )
    atomic_write_text(out / "groups.csv", rows_to_csv(table, columns))
    corr = correlation_rows(table, signals, n_resamples=cfg.bootstrap, seed=cfg.seed)
    atomic_write_text(out / "correlations.csv", rows_to_csv(corr))
    n_inf = sum(1 for r in table if r["reward_dispersion"] > 0)
    source = cfg.task or cfg.benchmark
    title = (
        f"{cfg.model} on {source}: {len(table)} prompts x G={cfg.group_size}, params={cfg.params}"
        + (f", CountSketch k={cfg.project_dim}" if cfg.project_dim else "")
    )
    md = correlations_markdown(corr, n_groups=n_inf, n_total=len(table), title=title)
    atomic_write_text(out / "correlations.md", md)
    if plots:
        shown = ["se_answer", "cosine_dispersion", "barycentric_transport"]
        shown += [c for c in ("cal_gcpo", "cal_seed-grpo") if c in signals] + ["reward_dispersion"]
        for target, label in (("grad_variance", "V"), ("grad_nsr", "NSR")):
            scatter_plot(
                table, shown, target, out / f"scatter_{label}.png", title=f"{label}: {title}"
            )
    return corr


def run_analysis(
    cfg: AnalyzeConfig, *, progress: bool = True, log: Callable[[str], None] = print
) -> AnalysisResult:
    """Run (or resume) the analysis described by ``cfg`` and write every output."""
    import torch
    from tqdm.auto import tqdm

    from gcpo.diagnostics.gradients import select_parameters
    from gcpo.diagnostics.projection import CountSketch
    from gcpo.embedders import get_embedder
    from gcpo.io import append_jsonl
    from gcpo.models import load_policy

    validate(cfg)
    if (cfg.task is None) == (cfg.benchmark is None):
        raise ConfigError(
            f"task={cfg.task!r}, benchmark={cfg.benchmark!r}: give exactly one of them"
        )
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    items = _load_items(cfg)  # before the model: bad task/benchmark input fails fast
    _check_resume(out, cfg)
    groups_path = out / "groups.jsonl"
    done = _read_done(groups_path)
    done_ids = {r["prompt_id"] for r in done}
    todo = [it for it in items if it.prompt_id not in done_ids]
    if done_ids:
        log(f"resuming: {len(done_ids)} groups already in {groups_path}, {len(todo)} to go")
    new_rows: list[dict[str, Any]] = []
    if todo:
        torch.set_num_threads(max(1, torch.get_num_threads()))
        model, tokenizer = load_policy(cfg.model)
        named = select_parameters(model, cfg.params)
        params = [p for _, p in named]
        n_params = sum(p.numel() for p in params)
        sketch = (
            CountSketch([p.numel() for p in params], cfg.project_dim, seed=cfg.seed)
            if cfg.project_dim
            else None
        )
        log(
            f"gradients on {len(params)} tensors ({n_params:,} parameters, params={cfg.params!r})"
            + (f", CountSketch to {cfg.project_dim} dims" if sketch else ", exact")
        )
        scorers = _make_scorers(signal_plan(cfg)[0], get_embedder(cfg.embedder))
        for item in tqdm(todo, desc="groups", unit="group", disable=not progress):
            row = _analyse_group(item, model, tokenizer, params, sketch, scorers, cfg)
            append_jsonl(groups_path, row)
            new_rows.append(row)
    wanted = {it.prompt_id for it in items}
    rows = [r for r in done + new_rows if r["prompt_id"] in wanted]
    corr = summarise(rows, cfg, out)
    return AnalysisResult(out, rows, corr, len(new_rows))


def nan_free(rows: Sequence[dict[str, Any]]) -> bool:
    """True when no numeric value in ``rows`` is NaN or infinite (a sanity check for tests)."""
    for r in rows:
        for v in r.values():
            if isinstance(v, float) and not math.isfinite(v):
                return False
    return True
