"""Task kinds: what a task means for training, diagnostics and evaluation, defined once.

``gcpo train`` (its reward and the answer key of semantic entropy), ``gcpo analyze`` (the
reward and answer key of each prompt group) and ``gcpo eval`` (the scores of each generation and
the prompt template) all look a task up here, so the three measure the same thing. A
:class:`TaskKind` holds:

- ``score(completion, references) -> dict``: every per-completion score ``gcpo eval`` records.
  ``score["score"]`` is *the* reward; any other numeric key is a reward variant, named
  ``KIND-KEY`` (``qa-em`` is the ``em`` key of ``qa``).
- ``answer_key(completion) -> str | None``: the key the ``answer`` clusterer of semantic entropy
  groups completions by (None = unparseable: a cluster of its own). Each key reads the completion
  the way the kind's reward reads it (the last integer for ``arithmetic``, the first line for the
  QA kinds, the boxed / stated final answer for ``math``), so semantic entropy clusters what the
  reward scores.
- ``prompt(question, context) -> str``: the user message for a question (a benchmark whose
  wording differs gives its own template, see :mod:`gcpo.tasks.evalsets`).
- ``binary``: rewards are 0/1 (``gcpo eval`` reports pass@k) or graded (it averages ``metrics``).
- ``make_rows``: synthetic tasks only, the seeded prompt generator (``gcpo train task=NAME``,
  ``gcpo analyze --task NAME``, ``gcpo eval --benchmarks NAME``).

Built in: ``math``, ``qa``, ``arithmetic``, ``graded-arithmetic``, ``passage-qa``.
:func:`register_task` adds a kind from user code (``gcpo <subcommand> --plugin my_module``
imports such a module first)::

    from gcpo.tasks.registry import TaskKind, register_task

    register_task(TaskKind(
        name="yes-no",
        description="1.0 when the first word matches the reference",
        score=lambda c, refs, **_: {"score": float(c.split()[:1] == refs[0].split()[:1])},
        answer_key=lambda c: (c.split() or [None])[0],
    ))
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from gcpo.tasks import math as _math
from gcpo.tasks import qa as _qa
from gcpo.tasks import synthetic as _synthetic
from gcpo.tasks.prompts import MATH_INSTRUCTION, QA_TEMPLATES, completion_text, qa_prediction

__all__ = [
    "TaskKind",
    "register_task",
    "get_task",
    "synthetic_task_names",
    "reward_names",
    "resolve_reward",
    "trl_reward",
]

Score = Callable[..., dict[str, Any]]


def _question_only(question: str, context: str | None = None) -> str:
    return question


@dataclass(frozen=True)
class TaskKind:
    """One task kind (see the module docstring for what each part is used for).

    ``score(completion, references, timeout=None)`` must accept the keyword ``timeout`` (a time
    limit per call for verifiers that need one; others ignore it) and return a dict with a float
    ``"score"``. ``batch_reward(completions, references, timeout=None)``, when given, computes
    ``score["score"]`` for many completions at once (e.g. in parallel worker processes).
    """

    name: str
    description: str
    score: Score
    answer_key: Callable[[str], str | None]
    prompt: Callable[[str, str | None], str] = _question_only
    binary: bool = True
    metrics: tuple[str, ...] = ()
    make_rows: Callable[..., list[dict[str, Any]]] | None = None
    batch_reward: Callable[..., list[float]] | None = None

    def reward(self, completion: str, references: Sequence[str]) -> float:
        """The reward of one completion against its reference answers."""
        return float(self.score(completion, list(references))["score"])


_TASKS: dict[str, TaskKind] = {}


def register_task(kind: TaskKind, *, replace: bool = False) -> TaskKind:
    """Add ``kind`` to the registry (``replace=True`` to redefine a name); returns it."""
    if not isinstance(kind, TaskKind):
        raise ValueError(f"kind: expected a TaskKind, got {type(kind).__name__}")
    if not kind.name or any(ch.isspace() or ch == ":" for ch in kind.name):
        raise ValueError(
            f"kind.name: got {kind.name!r}; use a non-empty name without spaces or ':'"
        )
    if kind.name in _TASKS and not replace:
        raise ValueError(f"task kind {kind.name!r} is already registered (pass replace=True)")
    _TASKS[kind.name] = kind
    return kind


def synthetic_task_names() -> list[str]:
    """The registered kinds that generate their own prompts (``make_rows``)."""
    return [name for name, kind in _TASKS.items() if kind.make_rows is not None]


def get_task(name: str) -> TaskKind:
    """The registered task kind ``name``; ValueError naming the known ones otherwise."""
    if name not in _TASKS:
        raise ValueError(f"task: got {name!r}, allowed: {', '.join(_TASKS)}")
    return _TASKS[name]


def reward_names() -> list[str]:
    """Reward names ``gcpo train reward=NAME`` accepts: every kind, and ``KIND-METRIC`` for the
    metrics of a graded kind (``qa-f1``, ``qa-em``, ``qa-cover_em``)."""
    names = []
    for name, kind in _TASKS.items():
        names.append(name)
        names.extend(f"{name}-{m}" for m in kind.metrics)
    return names


def resolve_reward(spec: str) -> tuple[TaskKind, str]:
    """``"qa-em"`` -> (the ``qa`` kind, ``"em"``); ``"math"`` -> (``math``, ``"score"``)."""
    if spec in _TASKS:
        return _TASKS[spec], "score"
    for name, kind in _TASKS.items():
        for metric in kind.metrics:
            if spec == f"{name}-{metric}":
                return kind, metric
    raise ValueError(f"reward: got {spec!r}, allowed: {', '.join(reward_names())}")


def _references(answer: Any) -> list[str]:
    return [str(a) for a in answer] if isinstance(answer, (list, tuple)) else [str(answer)]


def trl_reward(spec: str) -> Callable[..., list[float]]:
    """A TRL reward function ``fn(prompts, completions, answer, **kwargs) -> list[float]`` for the
    reward named ``spec`` (see :func:`reward_names`); ``answer`` holds each row's reference(s).

    Its ``__name__`` (TRL's ``rewards/<name>/mean`` metric) is ``<kind>_reward`` for a kind's own
    reward (``math_reward``, ``arithmetic_reward``, ...) and ``<kind>_<metric>`` for a variant
    (``qa_f1``, ``qa_em``).
    """
    kind, key = resolve_reward(spec)

    def reward(
        prompts: Sequence[Any], completions: Sequence[Any], answer: Sequence[Any], **_: Any
    ) -> list[float]:
        if len(completions) != len(answer):
            raise ValueError(
                f"answer: got {len(answer)} answers for {len(completions)} completions"
            )
        texts = [completion_text(c) for c in completions]
        refs = [_references(a) for a in answer]
        if key == "score" and kind.batch_reward is not None:
            return [float(r) for r in kind.batch_reward(texts, refs)]
        return [float(kind.score(t, r)[key]) for t, r in zip(texts, refs, strict=True)]

    base = kind.name.replace("-", "_")
    reward.__name__ = f"{base}_reward" if key == "score" else f"{base}_{key}"
    return reward


# ------------------------------------------------------------------------------- built-ins


def _math_gold(reference: str) -> str:
    # a reference may be a full worked solution (MATH's "solution"): compare its boxed answer
    return _math.extract_boxed(reference) or reference


def _math_score(
    completion: str, references: Sequence[str], timeout: float | None = None
) -> dict[str, Any]:
    reward = _math.math_reward(completion, _math_gold(references[0]), timeout=timeout)
    return {"extracted": _math.extract_answer(completion), "score": reward, "correct": reward > 0.5}


def _math_batch(
    completions: list[str], references: list[list[str]], timeout: float | None = None
) -> list[float]:
    golds = [_math_gold(r[0]) for r in references]
    return _math.math_rewards(completions, golds, timeout=timeout)


def _math_prompt(question: str, context: str | None = None) -> str:
    return f"{question}\n{MATH_INSTRUCTION}"


def _qa_score(
    completion: str, references: Sequence[str], timeout: float | None = None
) -> dict[str, Any]:
    prediction = qa_prediction(completion)
    scores = _qa.qa_scores(prediction, list(references))
    return {"prediction": prediction, "score": scores["f1"], **scores}


def _qa_key(completion: str) -> str | None:
    """The answer line, SQuAD-normalised: what the EM / F1 / cover-EM scores compare."""
    return _qa.normalize_answer(qa_prediction(completion)) or None


def _qa_prompt(question: str, context: str | None = None) -> str:
    return QA_TEMPLATES["hotpotqa"].format(context=context or "", question=question)


def _synthetic_score(task: str) -> Score:
    reward_fn = {
        "arithmetic": _synthetic.arithmetic_reward,
        "graded-arithmetic": _synthetic.arithmetic_reward,
        "passage-qa": _synthetic.passage_qa_reward,
    }[task]
    key_fn = _synthetic.ANSWER_KEYS[task]

    def score(
        completion: str, references: Sequence[str], timeout: float | None = None
    ) -> dict[str, Any]:
        reward = reward_fn(completion, references[0])
        return {"extracted": key_fn(completion), "score": reward, "correct": reward > 0.5}

    return score


def _rows_of(task: str) -> Callable[..., list[dict[str, Any]]]:
    def make_rows(n: int, *, split: str = "train", seed: int = 0, **knobs: Any) -> list[dict]:
        return _synthetic.make_task(task, n, split=split, seed=seed, **knobs)

    return make_rows


register_task(
    TaskKind(
        name="math",
        description="final answer (boxed / 'the answer is') equivalent to the gold answer, "
        "checked by math-verify under a time limit; 1.0 / 0.0",
        score=_math_score,
        answer_key=_math.extract_answer,
        prompt=_math_prompt,
        batch_reward=_math_batch,
    )
)
register_task(
    TaskKind(
        name="qa",
        description="token F1 (also EM, cover-EM) of the first answer line, max over the "
        "references, SQuAD / HotpotQA normalisation",
        score=_qa_score,
        answer_key=_qa_key,
        prompt=_qa_prompt,
        binary=False,
        metrics=("em", "f1", "cover_em"),
    )
)
for _name, _description in (
    ("arithmetic", "synthetic arithmetic: 1.0 when the last integer equals the answer"),
    (
        "graded-arithmetic",
        "synthetic arithmetic of mixed difficulty levels (1-digit +, *, -, 2-digit + by "
        "default): 1.0 when the last integer equals the answer",
    ),
    (
        "passage-qa",
        "synthetic passage QA: 1.0 when the answer is a word of the first non-empty line",
    ),
):
    register_task(
        TaskKind(
            name=_name,
            description=_description,
            score=_synthetic_score(_name),
            answer_key=_synthetic.ANSWER_KEYS[_name],
            make_rows=_rows_of(_name),
        )
    )
