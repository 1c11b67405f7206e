"""Training data and reward functions of a :class:`~gcpo.train.config.TrainConfig`.

Rows are TRL-ready: ``prompt`` is a chat (list of messages), and the reference answer is in
``answer`` (renamed from ``answer_field``), which TRL hands to reward functions as a keyword.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gcpo.fields import ConfigError
from gcpo.io import DataError, JsonlReport
from gcpo.tasks.registry import get_task, resolve_reward, trl_reward
from gcpo.train.config import TrainConfig

__all__ = ["load_rows", "build_data", "load_reward", "answer_fn_for", "reward_spec"]

RewardFn = Callable[..., Sequence[float | None]]


def _to_chat(prompt: Any, system_prompt: str, where: str) -> list[dict[str, str]]:
    if isinstance(prompt, str):
        chat = [{"role": "user", "content": prompt}]
        return [{"role": "system", "content": system_prompt}, *chat] if system_prompt else chat
    if (
        isinstance(prompt, list)
        and prompt
        and all(isinstance(m, dict) and "role" in m and "content" in m for m in prompt)
    ):
        return [{"role": m["role"], "content": m["content"]} for m in prompt]
    raise ValueError(
        f"{where}: prompt must be a string or a list of chat messages, got {prompt!r:.80}"
    )


def load_rows(
    source: str,
    split: str,
    config: TrainConfig,
    *,
    dataset_config: str = "",
    report: JsonlReport | None = None,
) -> list[dict[str, Any]]:
    """Rows of a JSONL file or a Hugging Face dataset, normalised to ``prompt`` / ``answer``.

    A bad row raises :class:`~gcpo.io.DataError` naming the file and line, or, with
    ``config.skip_bad_rows``, is skipped and counted in ``report``.
    """
    report = report if report is not None else JsonlReport()
    spec = reward_spec(config)
    # built-in rewards all read the reference answer: a row without one cannot be scored
    needs_answer = ":" not in spec
    if Path(source).suffix in (".jsonl", ".json") or Path(source).is_file():
        from gcpo.io import read_jsonl

        required = (config.prompt_field,) + ((config.answer_field,) if needs_answer else ())
        raw = read_jsonl(
            source, required=required, skip_bad_rows=config.skip_bad_rows, report=report
        )
    else:
        from datasets import load_dataset

        from gcpo.tasks.evalsets import hub_problem

        problem = hub_problem()
        if problem is not None:
            raise DataError(
                f"dataset {source!r}: not a local file, and the Hugging Face hub is unreachable "
                f"({problem}); give a JSONL file, or set HF_HUB_OFFLINE=1 to read a warm "
                "Hugging Face cache"
            )
        try:
            ds = load_dataset(source, dataset_config or None, split=split)
        except Exception as exc:  # hub offline, unknown id, unknown split
            raise DataError(
                f"dataset {source!r} (split {split!r}): cannot be loaded: {exc}"
            ) from None
        raw = [dict(r) for r in ds]
    if not raw:
        raise DataError(f"dataset {source!r}: no rows")
    rows = []
    for i, r in enumerate(raw):
        where = f"dataset {source!r} row {i + 1}"
        try:
            if config.prompt_field not in r:
                raise DataError(f"{where}: no {config.prompt_field!r} field (prompt_field)")
            if needs_answer and config.answer_field not in r:
                raise DataError(f"{where}: no {config.answer_field!r} field (answer_field)")
            chat = _to_chat(r[config.prompt_field], config.system_prompt, where)
        except ValueError as exc:
            if not config.skip_bad_rows:
                raise DataError(str(exc)) from None
            report.skipped += 1
            if len(report.reasons) < 20:
                report.reasons.append(str(exc))
            continue
        row = {k: v for k, v in r.items() if k not in (config.prompt_field, config.answer_field)}
        row["prompt"] = chat
        if config.answer_field in r:
            answer = r[config.answer_field]
            row["answer"] = answer if isinstance(answer, (str, list)) else str(answer)
        rows.append(row)
    return rows


def build_data(
    config: TrainConfig, *, report: JsonlReport | None = None
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(train rows, held-out rows) for ``config``; skipped bad rows are counted in ``report``."""
    if not config.dataset:
        make_rows = get_task(config.task).make_rows
        if make_rows is None:
            raise ConfigError(f"task: {config.task!r} generates no prompts; give a dataset")
        try:
            train = make_rows(
                config.num_train_prompts, split="train", seed=config.seed, **config.task_options
            )
            heldout = make_rows(
                config.num_eval_prompts, split="test", seed=config.seed, **config.task_options
            )
        except (TypeError, ValueError) as exc:  # unknown or out-of-range difficulty knobs
            raise ConfigError(f"task_options: {exc}") from None
        return train, heldout
    rows = load_rows(
        config.dataset,
        config.dataset_split,
        config,
        dataset_config=config.dataset_config,
        report=report,
    )
    if not rows:
        raise DataError(f"dataset {config.dataset!r}: every row was skipped as bad")
    if config.eval_dataset:
        heldout = load_rows(config.eval_dataset, config.eval_split, config, report=report)[
            : config.num_eval_prompts
        ]
        train = rows
    else:
        n = min(config.num_eval_prompts, len(rows) // 2)
        heldout, train = (rows[len(rows) - n :], rows[: len(rows) - n]) if n else ([], rows)
    if config.num_train_prompts:
        train = train[: config.num_train_prompts]
    return train, heldout


def reward_spec(config: TrainConfig) -> str:
    """The reward ``config`` trains with: ``config.reward``, else the synthetic task's own, else
    ``math`` for a dataset."""
    return config.reward or (config.task if not config.dataset else "math")


def load_reward(config: TrainConfig) -> RewardFn:
    """The reward function named by ``config.reward`` (TRL signature): a task kind of
    :mod:`gcpo.tasks.registry` (or one of its metrics, ``qa-em``), or ``module:function``."""
    spec = reward_spec(config)
    if ":" not in spec:
        try:
            return trl_reward(spec)
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
    module_name, _, fn_name = spec.partition(":")
    try:
        fn = getattr(importlib.import_module(module_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise ConfigError(f"reward: cannot import {spec!r}: {exc}") from None
    if not callable(fn):
        raise ConfigError(f"reward: {spec!r} is not callable")
    return fn


def answer_fn_for(config: TrainConfig) -> Callable[[str], str | None]:
    """Answer key for answer-clustered semantic entropy: the reward's task kind's own (the same
    key ``gcpo analyze`` clusters by); ``math``'s for a ``module:function`` reward."""
    spec = reward_spec(config)
    kind = get_task("math") if ":" in spec else resolve_reward(spec)[0]
    return kind.answer_key
