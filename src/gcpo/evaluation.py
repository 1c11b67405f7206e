"""Evaluation harness behind ``gcpo eval``: batched generation, scoring, resume, result tables.

For every (benchmark, item, sample) the harness generates one completion, scores it and appends
one JSON line to ``<output>/generations.jsonl`` right away; a re-run with the same output folder
skips every (model, benchmark, item id, sample index) already there *that was generated the same
way*: each row records its ``setting`` (the model files' identity, sizes and modification
times; the decoding settings; the generation budget; dtype, device and batch size) and the hash
of its item's prompt and references. Rows of the evaluated model made another way are stale:
they are moved to ``generations.replaced.jsonl`` and generated again, with a one-line note.
Metrics are then computed from the whole file, so several models evaluated into one folder give
one table, one row per model (the paper's layout: rows = models, columns = benchmarks).

Generation: HF ``generate`` with left padding, ``batch_size`` prompts per call. ``samples == 1``
decodes greedily; ``samples > 1`` samples with ``temperature`` / ``top_p`` (seeded per batch).

Metrics: math — pass@1 = mean over items of (correct samples / samples), and the unbiased pass@k
of Chen et al. (2021) for k = ``samples``; QA — EM, token F1 and cover-EM of the first answer line
(:func:`gcpo.tasks.prompts.qa_prediction`), each max over the references, averaged over samples
and items. The headline number per benchmark is pass@1 (math) or F1 (QA), times 100.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcpo.fields import ConfigError, field, validate
from gcpo.io import append_jsonl, atomic_write_text, recover_jsonl, write_jsonl
from gcpo.models import generate
from gcpo.rundir import CONFIG_FILE, last_checkpoint
from gcpo.tasks.evalsets import (
    BENCHMARKS,
    BenchmarkItem,
    build_prompt,
    load_benchmark,
    user_message,
)

__all__ = [
    "EvalConfig",
    "pass_at_k",
    "run_evaluation",
    "summarize",
    "results_tables",
]

GENERATIONS_FILE = "generations.jsonl"
REPLACED_FILE = "generations.replaced.jsonl"  # stale rows, kept for the record
# a budget above this on CPU gets a one-line hint: 0/N for many minutes looks hung
_CPU_HINT_TOKENS = 256


@dataclass
class EvalConfig:
    model: str = field(
        "smollm2-135m-instruct",
        help="model name, local directory or HF hub id; a gcpo train run's RUN/final (or "
        "RUN/checkpoint-N) also sets 'run'",
    )
    benchmarks: list[str] = field(
        default_factory=list,
        help="benchmarks to run (comma-separated on the command line): "
        + ", ".join(BENCHMARKS)
        + "; empty = the run's synthetic task (see 'run'), else math500",
    )
    run: str | None = field(
        None,
        help="a gcpo train run directory whose task to evaluate: a synthetic task's held-out "
        "prompts, drawn with the run's seed and task_options, as many as its num_eval_prompts, "
        "with its eval_max_new_tokens (default: the directory above --model when that holds "
        "the config.yaml of a run)",
    )
    task_options: dict[str, Any] = field(
        default_factory=dict,
        help="difficulty knobs of a synthetic benchmark (arithmetic: digits, terms, ops; "
        "passage-qa: facts); default: the run's",
    )
    samples: int = field(1, help="completions per item (k); 1 = greedy decoding", min=1)
    limit: int | None = field(
        None,
        help="evaluate only the first N items of each benchmark (synthetic: N held-out prompts; "
        "default the run's num_eval_prompts, else 100)",
        min=1,
    )
    max_new_tokens: int | None = field(
        None,
        help="generation length limit in tokens; unset = per benchmark (math 1024, hotpotqa 32, "
        "qasper / narrativeqa 128, LongBench's lengths; synthetic: the run's "
        "eval_max_new_tokens, else 32)",
        min=1,
    )
    temperature: float = field(0.6, help="sampling temperature when samples > 1", min=0.0)
    top_p: float = field(0.95, help="nucleus sampling top-p when samples > 1", min=0.0, max=1.0)
    batch_size: int = field(8, help="prompts per generate() call", min=1)
    max_context_tokens: int = field(
        3500, help="QA contexts longer than this (model tokens) are middle-truncated", min=2
    )
    data_dir: str | None = field(
        None,
        help="folder with <benchmark>/test.jsonl files; unset = $GCPO_DATA_DIR if set, else the "
        "Hugging Face hub",
    )
    output: str | None = field(
        None, help="output folder (default RUN/eval for a run, else runs/eval-<model name>)"
    )
    seed: int = field(0, help="sampling seed")
    dtype: str = field("float32", help="model dtype", choices=("float32", "bfloat16", "float16"))
    device: str | None = field(None, help="torch device (default: cuda if available, else cpu)")
    math_timeout: float = field(3.0, help="hard time limit per math-verify call (s)", min=0.01)
    progress: bool = field(True, help="show progress bars")


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k (Chen et al. 2021): 1 - C(n-c, k) / C(n, k).

    ``n`` samples of which ``c`` are correct. Raises ValueError unless 0 <= c <= n and
    1 <= k <= n.
    """
    if not (0 <= c <= n):
        raise ValueError(f"need 0 <= c <= n, got n={n}, c={c}")
    if not (1 <= k <= n):
        raise ValueError(f"need 1 <= k <= n, got n={n}, k={k}")
    if n - c < k:
        return 1.0
    # Product form avoids huge binomials: prod_{i=n-c+1}^{n} (1 - k/i).
    prob_all_wrong = 1.0
    for i in range(n - c + 1, n + 1):
        prob_all_wrong *= 1.0 - k / i
    return 1.0 - prob_all_wrong


def train_run(config: EvalConfig) -> tuple[Path, Any] | None:
    """(run directory, its TrainConfig) of the gcpo train run ``config`` evaluates, or None.

    ``config.run`` names it; otherwise it is the directory above ``config.model`` when the model
    is a run's ``final`` or ``checkpoint-N`` and that directory holds the run's config.yaml.
    """
    from gcpo.config import load
    from gcpo.train.config import TrainConfig

    if config.run:
        run_dir = Path(config.run)
        if not (run_dir / CONFIG_FILE).is_file():
            raise ConfigError(f"run: {config.run!r} holds no config.yaml; not a gcpo train run")
    else:
        model = Path(config.model)
        run_dir = model.parent
        named = model.name == "final" or re.fullmatch(r"checkpoint-\d+", model.name)
        if not (named and model.is_dir() and (run_dir / CONFIG_FILE).is_file()):
            return None
    from gcpo.plugins import load_plugins, run_plugins

    # the run's --plugin modules first: its config may name a signal or task kind they register
    load_plugins(run_plugins(run_dir), entry_points=False)
    try:
        return run_dir, load(TrainConfig, run_dir / CONFIG_FILE)
    except ConfigError as exc:
        raise ConfigError(f"run: {run_dir / 'config.yaml'}: {exc}") from None


_EXPECTED_MODEL = (
    "expected a gcpo train run's final/ (or checkpoint-N/) directory, a model directory with "
    "config.json, a built-in name (smollm2-135m-instruct, tiny-random) or a hub id"
)


def check_model(name: str) -> None:
    """Refuse, in one line, a ``--model`` that cannot be a model, before any data, hub or
    weights are touched: a missing path, a directory without ``config.json``, a run directory
    (its model is ``RUN/final``)."""
    path = Path(name).expanduser()
    if path.is_dir():
        if (path / "config.json").is_file():
            return
        if (path / CONFIG_FILE).is_file():
            if (path / "final" / "config.json").is_file():
                hint = f"evaluate its trained model with --model {path / 'final'}"
            else:
                ckpt = last_checkpoint(path)
                hint = (
                    f"it has no final/ yet; its latest checkpoint is --model {ckpt}"
                    if ckpt is not None
                    else "it has no final/ and no checkpoint-N/ yet"
                )
            raise ConfigError(f"model: {name!r} is a gcpo train run directory, not a model; {hint}")
        raise ConfigError(f"model: {name!r} is a directory without config.json; {_EXPECTED_MODEL}")
    if path.exists():
        raise ConfigError(f"model: {name!r} is a file, not a model directory; {_EXPECTED_MODEL}")
    # "org/name" may be a hub id; anything else with a path's shape is a path that is not there
    if name.startswith(("/", ".", "~")) or name.count("/") > 1 or "\\" in name:
        run = path.parent
        if path.name == "final" and (run / CONFIG_FILE).is_file():
            ckpt = last_checkpoint(run)
            more = f"; its latest checkpoint is --model {ckpt}" if ckpt is not None else ""
            raise ConfigError(
                f"model: {name!r} does not exist: the run has no final/ model (still training, "
                f"or save_final: false){more}"
            )
        raise ConfigError(f"model: {name!r} does not exist; {_EXPECTED_MODEL}")


def _model_directory(name: str) -> Path | None:
    """The local directory ``name`` loads from, when there is one without downloading."""
    from gcpo.models import DEFAULT_POLICY, TINY_RANDOM, resolve_model_path

    path = Path(name).expanduser()
    if path.is_dir():
        return path
    if name.strip().lower() in (DEFAULT_POLICY, TINY_RANDOM, "smollm2", "default"):
        return Path(resolve_model_path(name))
    try:
        from huggingface_hub import try_to_load_from_cache

        cached = try_to_load_from_cache(name, "config.json")
    except Exception:  # not a valid repo id: nothing cached under it
        return None
    return Path(cached).parent if isinstance(cached, str) else None


def model_fingerprint(name: str) -> str:
    """Identity of the weights ``name`` stands for: a hash of the names, sizes and modification
    times of the files of its directory (a hub id: of its cached snapshot, whose folder is the
    commit), so a model retrained or copied to the same path counts as another model."""
    directory = _model_directory(name)
    if directory is None:
        return f"name:{name}"  # a hub id not cached yet, or a model object passed in
    h = hashlib.sha256(str(directory.resolve()).encode())
    for p in sorted(directory.iterdir()):
        if p.is_file():
            st = p.stat()
            h.update(f"{p.name}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


def generation_setting(config: EvalConfig, max_new_tokens: int, model_id: str) -> dict[str, Any]:
    """Everything besides the item that changes a generation of one benchmark."""
    device = config.device
    if device is None:
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    setting: dict[str, Any] = {
        "model": model_id,
        "max_new_tokens": max_new_tokens,
        "max_context_tokens": config.max_context_tokens,
        "dtype": config.dtype,
        "device": device.split(":")[0],
        # batch composition sets the padding (and, when sampling, the per-batch seed)
        "batch_size": config.batch_size,
        "decoding": "greedy",
    }
    if config.samples > 1:
        setting["decoding"] = {"temperature": config.temperature, "top_p": config.top_p,
                               "seed": config.seed}  # fmt: skip
    return setting


def item_hash(item: BenchmarkItem) -> str:
    """Hash of what the model is asked (gcpo's user message for the item, so a template change
    counts too) and of the references its score is computed against."""
    text = json.dumps([user_message(item), item.answers, item.kind], ensure_ascii=False)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def _setting_diff(old: Any, new: dict[str, Any]) -> str:
    if not isinstance(old, dict):
        return "recorded without its settings (an older gcpo)"
    keys = [k for k in new if old.get(k) != new[k]]
    if not keys:
        return "another item text or reference"
    labels = {"model": "model files changed"}
    return ", ".join(labels.get(k, f"{k} {old.get(k)!r} -> {new[k]!r}") for k in keys)


def default_output_dir(model: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", model.strip().rstrip("/")).strip("-") or "model"
    return Path("runs") / f"eval-{slug[-80:]}"


def _row_key(row: dict[str, Any]) -> tuple[str, str, str, int]:
    return (str(row["model"]), str(row["benchmark"]), str(row["id"]), int(row["sample"]))


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """The scored rows so far; a line cut short by a killed run is dropped from the file."""
    return recover_jsonl(path, required=("model", "benchmark", "id", "sample", "score"))


def score_generation(item: BenchmarkItem, generation: str, *, math_timeout: float) -> dict:
    """Score fields of one generation, from its task kind (:mod:`gcpo.tasks.registry`): ``score``
    is the reward (math and the synthetic tasks 0/1, QA the F1 of the answer line), plus the
    kind's details (the extracted answer; QA's prediction, EM, F1, cover-EM)."""
    from gcpo.tasks.registry import get_task

    return get_task(item.kind).score(generation, item.answers, timeout=math_timeout)


def run_evaluation(
    config: EvalConfig,
    *,
    model: Any = None,
    tokenizer: Any = None,
) -> dict[str, Any]:
    """Generate, score and tabulate; returns the summary (also written to the output folder).

    ``model`` / ``tokenizer`` may be passed in (e.g. a policy being trained); otherwise
    ``gcpo.models.load_policy(config.model)`` loads them. Returns ``{"output": dir, "summary":
    {...}, "timing": {benchmark: {"items", "generations", "seconds"}}}``.
    """
    validate(config)
    if model is None:
        check_model(config.model)  # before the data: a wrong path is not the benchmark's fault
    run = train_run(config)
    trained = run[1] if run is not None and not run[1].dataset else None  # a synthetic task
    benchmarks = config.benchmarks or [trained.task if trained is not None else "math500"]
    unknown = [b for b in benchmarks if b not in BENCHMARKS]
    if unknown:
        raise ConfigError(f"benchmarks: got {unknown[0]!r}, allowed: {', '.join(BENCHMARKS)}")
    # Load every benchmark before the model: a data error should cost seconds, not minutes.
    items_by_bench = {}
    max_new_tokens = {}
    for name in benchmarks:
        spec = BENCHMARKS[name]
        max_new_tokens[name] = config.max_new_tokens or spec.max_new_tokens
        if spec.generate is None:
            items_by_bench[name] = load_benchmark(
                name, data_dir=config.data_dir, limit=config.limit
            )
            continue
        # a synthetic task: the run's held-out split when it trained on this task
        own = trained if trained is not None and trained.task == name else None
        limit = config.limit or (own.num_eval_prompts if own and own.num_eval_prompts else None)
        options = config.task_options or (own.task_options if own else {})
        if own is not None and not config.max_new_tokens:
            max_new_tokens[name] = own.eval_max_new_tokens
        try:
            items_by_bench[name] = load_benchmark(
                name, limit=limit, seed=own.seed if own else config.seed, options=options
            )
        except ValueError as exc:  # unknown knob, or more prompts than the split holds
            raise ConfigError(f"{exc} (limit / task_options)") from None
    if config.output:
        out_dir = Path(config.output)
    else:
        out_dir = run[0] / "eval" if run is not None else default_output_dir(config.model)
    out_dir.mkdir(parents=True, exist_ok=True)
    gen_path = out_dir / GENERATIONS_FILE

    model_id = model_fingerprint(config.model)
    settings = {name: generation_setting(config, max_new_tokens[name], model_id)
                for name in items_by_bench}  # fmt: skip
    hashes = {(name, item.id): item_hash(item)
              for name, items in items_by_bench.items() for item in items}  # fmt: skip
    stale = _replace_stale_rows(out_dir, config.model, settings, hashes)
    done = {_row_key(r) for r in _read_rows(gen_path)}
    todo: dict[str, list[tuple[BenchmarkItem, int]]] = {
        name: [
            (item, s)
            for item in items
            for s in range(config.samples)
            if (config.model, name, item.id, s) not in done
        ]
        for name, items in items_by_bench.items()
    }
    timing: dict[str, dict[str, float]] = {}
    if any(todo.values()):
        if model is None or tokenizer is None:
            import torch

            from gcpo.models import load_policy

            device = config.device or ("cuda" if torch.cuda.is_available() else "cpu")
            try:
                model, tokenizer = load_policy(
                    config.model, dtype=getattr(torch, config.dtype), device=device
                )
            except ValueError as exc:  # not loadable: one line, not a transformers traceback
                raise ConfigError(f"model: {str(exc).removeprefix('model ')}") from None
        for name, requests in todo.items():
            if not requests:
                continue
            start = time.perf_counter()
            unique = {item.id: item for item, _ in requests}
            prompts = {
                item_id: build_prompt(item, tokenizer, max_context_tokens=config.max_context_tokens)
                for item_id, item in unique.items()
            }
            # Longest prompts first: similar lengths share a batch (less padding) and an
            # out-of-memory error shows up in the first batch, not after an hour.
            requests = sorted(requests, key=lambda r: -len(prompts[r[0].id]))
            budget = max_new_tokens[name]
            on_cpu = next(model.parameters()).device.type == "cpu"
            if on_cpu and budget > _CPU_HINT_TOKENS and config.progress:
                print(
                    f"gcpo eval: {name}: up to {budget} new tokens per generation on CPU can take "
                    f"minutes per batch; --max-new-tokens {_CPU_HINT_TOKENS} is much faster",
                    file=sys.stderr,
                    flush=True,
                )
            bar = _Progress(len(requests), budget, name, config.progress)
            for b in range(0, len(requests), config.batch_size):
                batch = requests[b : b + config.batch_size]
                texts, prompt_lens, new_counts = generate(
                    model,
                    tokenizer,
                    [prompts[item.id] for item, _ in batch],
                    max_new_tokens=budget,
                    temperature=config.temperature if config.samples > 1 else None,
                    top_p=config.top_p,
                    seed=config.seed * 1_000_003 + b,
                    streamer=bar.streamer(len(batch)),
                )
                for (item, s), text, plen, ntok in zip(
                    batch, texts, prompt_lens, new_counts, strict=True
                ):
                    row = {
                        "model": config.model,
                        "benchmark": name,
                        "id": item.id,
                        "sample": s,
                        "setting": settings[name],
                        "item": hashes[(name, item.id)],
                        "answers": item.answers,
                        "generation": text,
                        "prompt_tokens": int(plen),
                        "new_tokens": int(ntok),
                        **score_generation(item, text, math_timeout=config.math_timeout),
                    }
                    append_jsonl(gen_path, row)
                bar.generations_done(len(batch))
            bar.close()
            timing[name] = {
                "items": len({item.id for item, _ in requests}),
                "generations": len(requests),
                "seconds": time.perf_counter() - start,
            }

    # Tabulate exactly what was asked for (these items, these sample indices), for every model
    # found in the folder; rows of other items or extra samples stay in the file untouched.
    wanted = {(name, item.id) for name, items in items_by_bench.items() for item in items}
    rows = [
        r
        for r in _read_rows(gen_path)
        if (str(r["benchmark"]), str(r["id"])) in wanted and int(r["sample"]) < config.samples
    ]
    summary = summarize(rows, samples=config.samples)
    markdown, csv_text = results_tables(summary)
    atomic_write_text(out_dir / "results.md", markdown)
    atomic_write_text(out_dir / "results.csv", csv_text)
    atomic_write_text(out_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    this_run = summary.get(config.model, {})
    return {
        "output": str(out_dir),
        "summary": summary,
        "this_model": this_run,
        "timing": timing,
        "replaced": stale,
    }


def _replace_stale_rows(
    out_dir: Path,
    model: str,
    settings: dict[str, dict[str, Any]],
    hashes: dict[tuple[str, str], str],
) -> dict[str, Any] | None:
    """Move the rows of ``model`` on these benchmarks that were generated another way (other
    settings, other model files, another prompt or reference) out of generations.jsonl, into
    generations.replaced.jsonl; returns how many and why (None when there were none)."""
    gen_path = out_dir / GENERATIONS_FILE
    rows = _read_rows(gen_path)
    keep: list[dict[str, Any]] = []
    stale: list[dict[str, Any]] = []
    why: str | None = None
    for r in rows:
        bench = str(r["benchmark"])
        if str(r["model"]) != model or bench not in settings:
            keep.append(r)
            continue
        wanted_hash = hashes.get((bench, str(r["id"])))
        same = r.get("setting") == settings[bench]
        if same and (wanted_hash is None or r.get("item") == wanted_hash):
            keep.append(r)
            continue
        stale.append(r)
        why = why or f"{bench}: {_setting_diff(r.get('setting'), settings[bench])}"
    if not stale:
        return None
    for r in stale:
        append_jsonl(out_dir / REPLACED_FILE, r)
    write_jsonl(gen_path, keep)
    return {"rows": len(stale), "reason": why, "moved_to": str(out_dir / REPLACED_FILE)}


class _TokenStreamer:
    """A ``generate(streamer=...)`` hook: ``put`` is called once with the prompt ids, then once
    per decoding step, so the bar moves per token step and its ETA means something from the
    first batch on (a 1024-token batch on CPU is many minutes of 0/N otherwise)."""

    def __init__(self, bar: Any, budget: int, size: int) -> None:
        self.bar, self.budget, self.size = bar, budget, size
        self.steps = -1  # the first put is the prompt

    def put(self, value: Any) -> None:
        self.steps += 1
        if 0 < self.steps <= self.budget:
            self.bar.update(self.size)

    def end(self) -> None:  # stopped early (every sequence ended): the rest of the budget
        self.bar.update(self.size * (self.budget - max(self.steps, 0)))
        self.steps = self.budget


class _Progress:
    """Progress over generations x token budget (unit: token steps of one generation), with
    the generations done in the postfix."""

    def __init__(self, total: int, budget: int, desc: str, enabled: bool) -> None:
        self.budget, self.total, self.done = budget, total, 0
        self.bar: Any = None
        if enabled:
            from tqdm.auto import tqdm

            self.bar = tqdm(total=total * budget, desc=desc, unit="tok", unit_scale=True)
            self.bar.set_postfix_str(f"0/{total} generations")

    def update(self, n: int) -> None:
        if self.bar is not None:
            self.bar.update(n)

    def streamer(self, size: int) -> _TokenStreamer | None:
        return _TokenStreamer(self, self.budget, size) if self.bar is not None else None

    def generations_done(self, n: int) -> None:
        self.done += n
        if self.bar is not None:
            self.bar.set_postfix_str(f"{self.done}/{self.total} generations")

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def summarize(rows: list[dict[str, Any]], *, samples: int | None = None) -> dict[str, Any]:
    """Per model and benchmark metrics from generation rows.

    Tasks with 0/1 rewards (math, the synthetic tasks): ``pass@1``, and the unbiased ``pass@k``
    for k = 2, 4, 8, ... up to the most samples of any item and for k = ``samples`` (items with
    fewer than k samples are left out). Graded tasks (QA): the mean of each of the kind's
    metrics (``em``, ``f1``, ``cover_em``).
    """
    from gcpo.tasks.registry import get_task

    grouped: dict[tuple[str, str], dict[str, list[dict[str, Any]]]] = defaultdict(
        lambda: defaultdict(list)
    )
    for r in rows:
        grouped[(str(r["model"]), str(r["benchmark"]))][str(r["id"])].append(r)
    summary: dict[str, Any] = defaultdict(dict)
    for (model, bench), by_item in grouped.items():
        kind = get_task(BENCHMARKS[bench].kind if bench in BENCHMARKS else "math")
        n_gen = sum(len(v) for v in by_item.values())
        entry: dict[str, Any] = {"items": len(by_item), "generations": n_gen}
        if kind.binary:
            per_item = [
                (len(v), sum(1 for r in v if float(r["score"]) > 0.5)) for v in by_item.values()
            ]
            entry["pass@1"] = sum(c / n for n, c in per_item) / len(per_item)
            n_max = max(n for n, _ in per_item)
            ks = {2**j for j in range(1, n_max.bit_length()) if 2**j <= n_max}
            if samples and samples > 1:
                ks.add(samples)
            for k in sorted(ks):
                eligible = [(n, c) for n, c in per_item if n >= k]
                if eligible:
                    entry[f"pass@{k}"] = sum(pass_at_k(n, c, k) for n, c in eligible) / len(
                        eligible
                    )
        else:
            for metric in kind.metrics:
                entry[metric] = sum(
                    sum(float(r.get(metric, 0.0)) for r in v) / len(v) for v in by_item.values()
                ) / len(by_item)
        summary[model][bench] = entry
    return dict(summary)


def _headline(bench: str) -> str:
    return BENCHMARKS[bench].metric if bench in BENCHMARKS else "pass@1"


def results_tables(summary: dict[str, Any]) -> tuple[str, str]:
    """Markdown and CSV tables: one row per model, one column per benchmark (headline metric
    x100, as in the paper) plus an average; the Markdown adds a table of every metric."""
    benches = [b for b in BENCHMARKS if any(b in s for s in summary.values())]
    benches += sorted({b for s in summary.values() for b in s} - set(benches))
    lines = [
        "| Model | " + " | ".join(f"{b} ({_headline(b)})" for b in benches) + " | Avg |",
        "|---|" + "---:|" * (len(benches) + 1),
    ]
    for model, per in summary.items():
        vals = [per[b][_headline(b)] * 100 if b in per else None for b in benches]
        present = [v for v in vals if v is not None]
        avg = sum(present) / len(present) if present else math.nan
        cells = ["–" if v is None else f"{v:.1f}" for v in vals]
        lines.append(f"| {model} | " + " | ".join(cells) + f" | {avg:.1f} |")
    lines += [
        "",
        "| Model | Benchmark | Items | Generations | Metrics |",
        "|---|---|---:|---:|---|",
    ]
    for model, per in summary.items():
        for b in benches:
            if b not in per:
                continue
            e = per[b]
            metrics = ", ".join(
                f"{k} {v * 100:.1f}" for k, v in e.items() if k not in ("items", "generations")
            )
            lines.append(f"| {model} | {b} | {e['items']} | {e['generations']} | {metrics} |")
    markdown = "\n".join(lines) + "\n"

    metric_cols = []
    for b in benches:
        keys = sorted(
            {k for per in summary.values() if b in per for k in per[b]} - {"items", "generations"}
        )
        metric_cols += [(b, k) for k in keys]
    buf = io.StringIO()
    writer = csv.writer(buf, lineterminator="\n")
    writer.writerow(["model"] + [f"{b}/{k}" for b, k in metric_cols])
    for model, per in summary.items():
        writer.writerow(
            [model]
            + [f"{per[b][k] * 100:.2f}" if b in per and k in per[b] else "" for b, k in metric_cols]
        )
    return markdown, buf.getvalue()
