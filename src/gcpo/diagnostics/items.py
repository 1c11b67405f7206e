"""Prompts for ``gcpo analyze``: a built-in task or a benchmark, each with its reward and the
answer key that the ``answer`` clusterer of semantic entropy groups completions by."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcpo.config import ConfigError

__all__ = ["SYNTHETIC", "Item", "load_items"]

SYNTHETIC = ("arithmetic", "passage-qa")
# the project's offline benchmark copies: ../shared/data next to the repository root
_SHARED_DATA = Path(__file__).resolve().parents[4] / "shared" / "data"


@dataclass
class Item:
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


def _math_reward(completion: str, answer: str) -> float:
    from gcpo.tasks import math_reward

    return math_reward(completion, answer)


def _qa_f1(references: list[str]) -> Callable[[str, str], float]:
    """QA reward: F1 of the answer span (first line, as ``gcpo eval`` and ``gcpo train`` score
    it) against every reference (the ``answer`` argument is the first of them)."""
    from gcpo.tasks import qa_scores
    from gcpo.tasks.prompts import qa_prediction

    def reward(completion: str, answer: str) -> float:
        return float(qa_scores(qa_prediction(completion), references)["f1"])

    return reward


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
) -> list[Item]:
    """The first ``prompts`` prompts of a built-in task or a benchmark, with reward functions.

    Built-in tasks use their held-out ("test") split. Benchmarks are read from ``data_dir``, else
    ``../shared/data`` next to the repository, else the hub; ``max_level`` keeps MATH items of
    that difficulty or lower (then the prompts are a seeded shuffle's prefix, so a smaller
    ``prompts`` picks a subset of a larger one). Prompt ids are stable across runs.
    """
    from gcpo.tasks import extract_answer

    if (task is None) == (benchmark is None):
        raise ConfigError(f"task={task!r}, benchmark={benchmark!r}: give exactly one of them")
    reward: Callable[[str, str], float]
    key: Callable[[str], str | None]
    if task is not None:
        from gcpo.tasks.synthetic import arithmetic_reward, make_task, passage_qa_reward

        rows = make_task(task, prompts, split="test", seed=seed)
        if task == "arithmetic":
            reward, key = (
                arithmetic_reward,
                (lambda c: extract_answer(c, last_number_fallback=True)),
            )
        else:
            reward, key = passage_qa_reward, _first_line_key
        items = []
        for row in rows:
            text = row["prompt"][0]["content"]
            pid = f"{task}-{hashlib.sha1(text.encode()).hexdigest()[:12]}"
            items.append(Item(pid, row["prompt"], row["answer"], reward, key))
        return items
    from gcpo.tasks.benchmarks import load_benchmark

    assert benchmark is not None

    if data_dir is None and _SHARED_DATA.is_dir():
        data_dir = str(_SHARED_DATA)
    if max_level:
        import random

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
    items = []
    for ex in examples:
        if ex.kind == "math":
            reward, key = _math_reward, extract_answer
        else:
            reward, key = _qa_f1(list(ex.answers)), _first_line_key
        items.append(Item(f"{benchmark}-{ex.id}", ex.messages, ex.answer, reward, key))
    return items
