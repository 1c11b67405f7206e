"""Prompts for ``gcpo analyze``: a synthetic task or a benchmark, each scored by its task kind.

The reward and the answer key that the ``answer`` clusterer of semantic entropy groups
completions by come from :mod:`gcpo.tasks.registry`, the same entries ``gcpo train`` trains
with, so the diagnostics measure the signal training weights by.
"""

from __future__ import annotations

import os
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gcpo.fields import ConfigError
from gcpo.tasks.registry import TaskKind, get_task

__all__ = ["Item", "load_items"]

# the project's offline benchmark copies: ../shared/data next to the repository root
_SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


@dataclass
class Item:
    """One prompt of the analysis: its chat messages, reference answers and task kind, and
    what the source says about it (``meta``: a benchmark's level, graded-arithmetic's level)."""

    prompt_id: str
    messages: list[dict[str, str]]
    answers: list[str]
    task: TaskKind
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def answer(self) -> str:
        """The first reference answer."""
        return self.answers[0]

    def reward(self, completion: str) -> float:
        """The task kind's reward of ``completion`` against every reference."""
        return self.task.reward(completion, self.answers)

    def answer_key(self, completion: str) -> str | None:
        """The key semantic entropy clusters ``completion`` by (the task kind's)."""
        return self.task.answer_key(completion)


def _level(value: Any) -> int:
    """MATH difficulty level (1..5) from ``meta['level']`` (int or 'Level 3'); unknown -> 99."""
    digits = "".join(ch for ch in str(value) if ch.isdigit())
    return int(digits) if digits else 99


def load_items(
    *,
    task: str | None,
    benchmark: str | None,
    prompts: int,
    seed: int = 0,
    data_dir: str | None = None,
    max_level: int = 0,
    split: str = "test",
    options: dict[str, Any] | None = None,
) -> list[Item]:
    """The first ``prompts`` prompts of a synthetic task or a benchmark.

    Synthetic tasks use their held-out ("test") split unless ``split`` says otherwise, with the
    difficulty knobs ``options`` (as ``task_options`` in training). Benchmarks are read from ``data_dir``, else
    ``$GCPO_DATA_DIR``, else ``../shared/data`` next to the repository, else the hub; ``max_level`` keeps MATH items of
    that difficulty or lower (then the prompts are a seeded shuffle's prefix, so a smaller
    ``prompts`` picks a subset of a larger one). Prompt ids are stable across runs.
    """
    from gcpo.tasks.evalsets import load_benchmark
    from gcpo.tasks.registry import synthetic_task_names

    if (task is None) == (benchmark is None):
        raise ConfigError(f"task={task!r}, benchmark={benchmark!r}: give exactly one of them")
    if task is not None:
        if task not in synthetic_task_names():
            raise ConfigError(f"task: got {task!r}, allowed: {', '.join(synthetic_task_names())}")
        # a synthetic task is a generated benchmark; its item id is a hash of the prompt text
        knobs = {**(options or {}), **({"split": split} if split != "test" else {})}
        try:
            examples = load_benchmark(task, limit=prompts, seed=seed, options=knobs)
        except ValueError as exc:  # unknown knob, or fewer distinct problems than asked
            raise ConfigError(f"task_options: {exc}") from None
        return [
            Item(f"{task}-{ex.id}", ex.messages, list(ex.answers), get_task(ex.kind), ex.meta)
            for ex in examples
        ]
    assert benchmark is not None
    if data_dir is None and not os.environ.get("GCPO_DATA_DIR") and _SHARED_DATA.is_dir():
        data_dir = str(_SHARED_DATA)
    if max_level:
        pool = [
            ex
            for ex in load_benchmark(benchmark, data_dir=data_dir)
            if _level(ex.meta.get("level")) <= max_level
        ]
        if not pool:
            raise ConfigError(f"max_level={max_level}: no {benchmark} item has a level that low")
        # a seeded shuffle, so that --prompts n picks a prefix of what a larger n picks
        order = list(range(len(pool)))
        random.Random(seed).shuffle(order)
        examples = [pool[i] for i in order[:prompts]]
    else:
        examples = load_benchmark(benchmark, data_dir=data_dir, limit=prompts, seed=seed)
    return [
        Item(f"{benchmark}-{ex.id}", ex.messages, list(ex.answers), get_task(ex.kind), ex.meta)
        for ex in examples
    ]
