"""Built-in synthetic verifiable tasks: seeded, offline, with disjoint held-out splits.

They exist so that ``gcpo train`` has something to learn on a laptop in minutes: a small
model gets some prompts right and some wrong, so rewards disperse within a group and GRPO/GCPO
have a learning signal.

- ``arithmetic``: "What is 37 + 48?" with difficulty knobs (``digits``, ``terms``, ``ops``).
  Reward 1.0 when the last integer in the completion equals the answer.
- ``graded-arithmetic``: the same problems drawn from several difficulty levels in turn (by
  default 1-digit +, 1-digit *, 1-digit -, 2-digit +; knob ``levels``), the level recorded in
  each row's ``level`` column. A small model solves the easy levels sometimes and the hard ones
  rarely, so pass rates spread across the prompts of one batch (measured with
  ``benchmarks/graded_arithmetic.py``, docs/compare.md). Same reward as ``arithmetic``.
- ``passage-qa``: a two-to-four sentence passage about made-up people and objects and one
  question about it ("What colour is Mia's kite?"). Reward 1.0 when the answer appears as a
  whole word in the completion's first non-empty line (see ``passage_qa_reward``).

Rows are TRL-ready: ``{"prompt": [{"role": "user", "content": ...}], "answer": str,
"task": str}``; the extra ``answer`` column reaches reward functions as a keyword argument
(TRL's reward signature ``fn(prompts, completions, **kwargs) -> list[float | None]``). The TRL
reward functions, answer keys and the rest of what each task means to ``gcpo train``,
``gcpo analyze`` and ``gcpo eval`` are registered in :mod:`gcpo.tasks.registry`.

Train and held-out splits are disjoint by construction: a problem's split is a hash of its
canonical text, so the same problem never lands in both, whatever the seed.
"""

from __future__ import annotations

import hashlib
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = [
    "SYNTHETIC_TASKS",
    "ArithmeticSpec",
    "GRADED_LEVELS",
    "make_arithmetic",
    "make_graded_arithmetic",
    "make_passage_qa",
    "make_task",
    "arithmetic_reward",
    "passage_qa_reward",
    "arithmetic_answer_key",
    "passage_qa_answer_key",
    "ANSWER_KEYS",
]

ARITHMETIC_INSTRUCTION = "Answer with just the final number."
QA_INSTRUCTION = "Answer with just the word from the passage."

_INT = re.compile(r"-?\d[\d,]*")


@dataclass(frozen=True)
class ArithmeticSpec:
    """Difficulty knobs of the arithmetic task."""

    digits: int = 2  # operands have 1..digits digits (at least 10^(digits-1) for the first)
    terms: int = 2  # number of operands
    ops: str = "+"  # operators to draw from, e.g. "+-" or "+-*"

    def __post_init__(self) -> None:
        if not 1 <= self.digits <= 6:
            raise ValueError(f"digits: got {self.digits!r}, expected 1..6")
        if not 2 <= self.terms <= 5:
            raise ValueError(f"terms: got {self.terms!r}, expected 2..5")
        if not self.ops or any(op not in "+-*" for op in self.ops):
            raise ValueError(f"ops: got {self.ops!r}, expected a non-empty string over '+-*'")


    @property
    def name(self) -> str:
        """Label recorded in a graded row's ``level`` column: ``1d+``, ``2d+-``, ``1d*x3``."""
        return f"{self.digits}d{self.ops}" + (f"x{self.terms}" if self.terms != 2 else "")

    @classmethod
    def parse(cls, name: str) -> ArithmeticSpec:
        """The spec of a level label: ``2d+-`` = 2 digits, ops + and -; ``1d+x3`` = 3 terms."""
        m = _LEVEL_NAME.fullmatch(name.strip())
        if m is None:
            raise ValueError(
                f"levels: cannot read {name!r}; expected <digits>d<ops>[x<terms>], e.g. '1d+', "
                "'2d+-', '1d*x3'"
            )
        return cls(digits=int(m[1]), terms=int(m[3] or 2), ops=m[2])


_LEVEL_NAME = re.compile(r"(\d)d([-+*]+)(?:x(\d))?")

# The graded-arithmetic mixture, easiest first. SmolLM2-135M-Instruct at T = 0.7 solves about
# 40 % of the samples of 1-digit + and *, and a few % of 1-digit - and 2-digit + (measured with
# benchmarks/graded_arithmetic.py; the numbers are in docs/compare.md).
GRADED_LEVELS: tuple[ArithmeticSpec, ...] = (
    ArithmeticSpec(digits=1, terms=2, ops="+"),
    ArithmeticSpec(digits=1, terms=2, ops="*"),
    ArithmeticSpec(digits=1, terms=2, ops="-"),
    ArithmeticSpec(digits=2, terms=2, ops="+"),
)


def _split_of(key: str, held_out_fraction: float) -> str:
    h = int.from_bytes(hashlib.sha256(key.encode()).digest()[:8], "big") / 2**64
    return "test" if h < held_out_fraction else "train"


def _row(question: str, answer: str, task: str, extra: dict[str, Any]) -> dict[str, Any]:
    row = {"prompt": [{"role": "user", "content": question}], "answer": answer, "task": task}
    row.update(extra)
    return row


# draw(rng, i) -> (question, answer, extra columns) of a candidate for row i
Draw = Callable[[random.Random, int], tuple[str, str, dict[str, Any]]]


def _collect(
    n: int,
    split: str,
    seed: int,
    held_out_fraction: float,
    draw: Draw,
    task: str,
) -> list[dict[str, Any]]:
    if n < 0:
        raise ValueError(f"n: got {n!r}, expected >= 0")
    if split not in ("train", "test"):
        raise ValueError(f"split: got {split!r}, expected 'train' or 'test'")
    if not 0.0 < held_out_fraction < 1.0:
        raise ValueError(f"held_out_fraction: got {held_out_fraction!r}, expected in (0, 1)")
    # Both splits draw from one seeded stream and keep the problems whose hash falls in their
    # split, so changing n for one split never changes the other split's problems.
    rng = random.Random(f"{task}:{seed}")
    rows: list[dict[str, Any]] = []
    seen: set[str] = set()
    attempts = 0
    while len(rows) < n:
        attempts += 1
        if attempts > 200 * n + 10_000:
            raise ValueError(
                f"n: cannot draw {n} distinct {split!r} problems for task {task!r}; "
                "make the task harder (more digits/terms) or ask for fewer"
            )
        question, answer, extra = draw(rng, len(rows))
        if question in seen or _split_of(question, held_out_fraction) != split:
            continue
        seen.add(question)
        rows.append(_row(question, answer, task, extra))
    return rows


def _draw_arithmetic(rng: random.Random, spec: ArithmeticSpec) -> tuple[str, str]:
    hi = 10**spec.digits - 1
    operands = [rng.randint(10 ** (spec.digits - 1), hi)]
    operands += [rng.randint(1, hi) for _ in range(spec.terms - 1)]
    ops = [rng.choice(spec.ops) for _ in range(spec.terms - 1)]
    expr = str(operands[0])
    for op, x in zip(ops, operands[1:], strict=True):
        expr += f" {op} {x}"
    value = eval(expr, {"__builtins__": {}}, {})  # only digits and + - * from this function
    return f"What is {expr}? {ARITHMETIC_INSTRUCTION}", str(value)


def make_arithmetic(
    n: int,
    *,
    split: str = "train",
    seed: int = 0,
    spec: ArithmeticSpec | None = None,
    held_out_fraction: float = 0.2,
) -> list[dict[str, Any]]:
    """``n`` distinct arithmetic problems of ``split`` ("train" | "test")."""
    spec = spec or ArithmeticSpec()

    def draw(rng: random.Random, i: int) -> tuple[str, str, dict[str, Any]]:
        return (*_draw_arithmetic(rng, spec), {})

    return _collect(n, split, seed, held_out_fraction, draw, "arithmetic")


# Candidates drawn for one row from one level before that level counts as used up in this split:
# a level with one problem of 81 left is missed with probability (80/81)^2000 < 1e-10.
_LEVEL_TRIES = 2000


def make_graded_arithmetic(
    n: int,
    *,
    split: str = "train",
    seed: int = 0,
    levels: Sequence[ArithmeticSpec] | None = None,
    held_out_fraction: float = 0.2,
) -> list[dict[str, Any]]:
    """``n`` distinct arithmetic problems of ``split``, row ``i`` from level ``i mod L``.

    Levels take turns, so every stretch of L consecutive rows (a training batch, the held-out
    set) holds each level once. A level whose problems of this split are used up (a 1-digit
    level has 81 problems in all, ~16 of them held out) leaves the rotation and the others
    continue; each row's ``level`` column (:attr:`ArithmeticSpec.name`) says where it came from.
    """
    levels = tuple(GRADED_LEVELS if levels is None else levels)
    if not levels or not all(isinstance(lv, ArithmeticSpec) for lv in levels):
        raise ValueError(f"levels: expected a non-empty sequence of ArithmeticSpec, got {levels!r}")
    names = [lv.name for lv in levels]
    if len(set(names)) != len(names):
        raise ValueError(f"levels: each level must differ, got {names}")
    exhausted: set[int] = set()
    tries: dict[tuple[int, int], int] = {}

    def draw(rng: random.Random, i: int) -> tuple[str, str, dict[str, Any]]:
        live = [k for k in range(len(levels)) if k not in exhausted]
        k = live[i % len(live)]
        tries[i, k] = tries.get((i, k), 0) + 1
        if tries[i, k] > _LEVEL_TRIES and len(live) > 1:
            exhausted.add(k)  # the next candidate for row i comes from another level
        spec = levels[k]
        return (*_draw_arithmetic(rng, spec), {"level": spec.name})

    return _collect(n, split, seed, held_out_fraction, draw, "graded-arithmetic")


_NAMES = ["Mia", "Leo", "Ava", "Noah", "Zoe", "Omar", "Lena", "Ivan", "Sara", "Tom", "Nina", "Raj"]
_OBJECTS = ["kite", "bike", "hat", "cup", "book", "ball", "car", "boat", "lamp", "bag"]
_COLOURS = ["red", "blue", "green", "yellow", "black", "white", "purple", "orange"]
_PLACES = ["Paris", "Tokyo", "Cairo", "Lima", "Oslo", "Rome", "Delhi", "Quito"]


def make_passage_qa(
    n: int, *, split: str = "train", seed: int = 0, held_out_fraction: float = 0.2, facts: int = 3
) -> list[dict[str, Any]]:
    """``n`` short-passage questions; ``facts`` (2..4) sentences per passage, one is asked about."""
    if not 2 <= facts <= 4:
        raise ValueError(f"facts: got {facts!r}, expected 2..4")

    def draw(rng: random.Random, i: int) -> tuple[str, str, dict[str, Any]]:
        people = rng.sample(_NAMES, facts)
        sentences, qa = [], []
        for person in people:
            if rng.random() < 0.5:
                obj, colour = rng.choice(_OBJECTS), rng.choice(_COLOURS)
                article = "an" if colour[0] in "aeiou" else "a"
                sentences.append(f"{person} has {article} {colour} {obj}.")
                qa.append((f"What colour is {person}'s {obj}?", colour))
            else:
                place = rng.choice(_PLACES)
                sentences.append(f"{person} lives in {place}.")
                qa.append((f"Where does {person} live?", place))
        question, answer = rng.choice(qa)
        passage = " ".join(sentences)
        return f"Passage: {passage}\nQuestion: {question} {QA_INSTRUCTION}", answer, {}

    return _collect(n, split, seed, held_out_fraction, draw, "passage-qa")


def arithmetic_reward(completion: str, answer: str) -> float:
    """1.0 when the last integer in ``completion`` (commas allowed) equals ``answer``."""
    found = _INT.findall(completion)
    if not found:
        return 0.0
    try:
        return float(int(found[-1].replace(",", "")) == int(answer))
    except ValueError:
        return 0.0


def _norm(text: str) -> str:
    return re.sub(r"[^a-z0-9 ]", " ", text.lower()).split("\n")[0]


def passage_qa_reward(completion: str, answer: str) -> float:
    """1.0 when the answer appears as a whole word in the completion's first non-empty line.

    Looking at the first line only stops "red blue green yellow ..." from collecting reward.
    """
    lines = [ln for ln in completion.strip().splitlines() if ln.strip()]
    if not lines:
        return 0.0
    words = _norm(lines[0]).split()
    return float(answer.lower() in words and len(words) <= 12)


def arithmetic_answer_key(completion: str) -> str | None:
    """The last integer of ``completion`` (commas allowed), as ``arithmetic_reward`` reads it."""
    found = _INT.findall(completion)
    return str(int(found[-1].replace(",", ""))) if found else None


def passage_qa_answer_key(completion: str) -> str | None:
    """The first non-empty line of ``completion``, normalised as ``passage_qa_reward`` reads it."""
    lines = [ln for ln in completion.strip().splitlines() if ln.strip()]
    return " ".join(_norm(lines[0]).split()) or None if lines else None


# completion -> the key semantic entropy clusters on (None = unparseable), per task
ANSWER_KEYS: dict[str, Callable[[str], str | None]] = {
    "arithmetic": arithmetic_answer_key,
    "graded-arithmetic": arithmetic_answer_key,
    "passage-qa": passage_qa_answer_key,
}


SYNTHETIC_TASKS: dict[str, Callable[..., list[dict[str, Any]]]] = {
    "arithmetic": make_arithmetic,
    "graded-arithmetic": make_graded_arithmetic,
    "passage-qa": make_passage_qa,
}


def make_task(
    name: str, n: int, *, split: str = "train", seed: int = 0, **knobs: Any
) -> list[dict[str, Any]]:
    """Rows of synthetic task ``name``; ``knobs`` are the task's difficulty keywords
    (arithmetic: digits, terms, ops; graded-arithmetic: levels, a list of labels such as
    ``["1d+", "2d+-", "1d*x3"]`` or of mappings of those three; passage-qa: facts)."""
    if name not in SYNTHETIC_TASKS:
        raise ValueError(f"task: got {name!r}, allowed: {', '.join(SYNTHETIC_TASKS)}")
    if name == "arithmetic":
        spec_keys = {"digits", "terms", "ops"}
        bad = set(knobs) - spec_keys
        if bad:
            raise ValueError(
                f"knobs: unknown {sorted(bad)} for arithmetic; allowed: {sorted(spec_keys)}"
            )
        return make_arithmetic(n, split=split, seed=seed, spec=ArithmeticSpec(**knobs))
    if name == "graded-arithmetic":
        bad = set(knobs) - {"levels"}
        if bad:
            raise ValueError(
                f"knobs: unknown {sorted(bad)} for graded-arithmetic; allowed: ['levels']"
            )
        levels = knobs.get("levels")
        specs = None if levels is None else [_level_spec(lv) for lv in _level_list(levels)]
        return make_graded_arithmetic(n, split=split, seed=seed, levels=specs)
    bad = set(knobs) - {"facts"}
    if bad:
        raise ValueError(f"knobs: unknown {sorted(bad)} for passage-qa; allowed: ['facts']")
    return make_passage_qa(n, split=split, seed=seed, **knobs)


def _level_list(levels: Any) -> list[Any]:
    if not isinstance(levels, (list, tuple)) or not levels:
        raise ValueError(
            "levels: expected a non-empty list of level labels ('1d+', '2d+-', '1d*x3') or "
            f"{{digits, terms, ops}} mappings, got {levels!r}"
        )
    return list(levels)


def _level_spec(level: Any) -> ArithmeticSpec:
    if isinstance(level, ArithmeticSpec):
        return level
    if isinstance(level, str):
        return ArithmeticSpec.parse(level)
    keys = {"digits", "terms", "ops"}
    if not isinstance(level, dict) or not set(level) <= keys:
        raise ValueError(
            f"levels: each level is a label such as '1d+' or a mapping with keys among "
            f"{sorted(keys)}, got {level!r}"
        )
    return ArithmeticSpec(**level)
