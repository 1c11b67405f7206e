"""Trainer callbacks: one logging path from TRL's ``log()`` to a ``metrics.jsonl`` file.

TRL's ``GRPOTrainer.log`` averages ``self._metrics`` (where ``GCPOTrainer`` puts its ``gcpo/*``
metrics) into the log dict and hands it to every callback; TensorBoard (``report_to``) and
:class:`MetricsJsonlCallback` both read that same dict, so the three sinks never disagree.
"""

from __future__ import annotations

import math
import os
from typing import Any

from transformers import TrainerCallback, TrainerControl, TrainerState, TrainingArguments
from transformers.integrations import TensorBoardCallback

from gcpo.io import append_jsonl, recover_jsonl
from gcpo.models import generate

__all__ = [
    "MetricsJsonlCallback",
    "ConstantMetricsCallback",
    "QuietTensorBoardCallback",
    "HeldoutRewardCallback",
    "heldout_reward",
]


def _clean(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


class MetricsJsonlCallback(TrainerCallback):
    """Append every log dict (plus ``step`` and ``epoch``) as one JSON line to ``path``.

    Only the main process writes. Lines are flushed and fsynced as they are written, so a
    killed run keeps every step it logged; on resume, lines with a step greater than the
    resumed step are dropped first so the file never holds two histories.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:  # drop a line cut by a kill and steps after the resume
            recover_jsonl(self.path, keep=lambda row: int(row.get("step", 0)) <= state.global_step)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if not state.is_world_process_zero or not logs:
            return
        row = {"step": state.global_step, "epoch": state.epoch}
        row.update(
            {k: _clean(v) for k, v in logs.items() if isinstance(v, (int, float, str)) or v is None}
        )
        append_jsonl(self.path, row)


class ConstantMetricsCallback(TrainerCallback):
    """Add fixed values (e.g. ``data/skipped_rows``) to every log dict.

    Pass it before the sinks (:class:`MetricsJsonlCallback`, TensorBoard) in ``callbacks``:
    callbacks see the same dict in order, so the sinks then record these values too.
    """

    def __init__(self, metrics: dict[str, float]) -> None:
        self.metrics = dict(metrics)

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs is not None:
            logs.update(self.metrics)


class QuietTensorBoardCallback(TensorBoardCallback):
    """TensorBoard without a warning per metric per step for ``None`` values.

    TRL logs ``None`` for a metric with no valid value in a step (e.g. a reward function that
    returned None for a whole batch). They stay ``null`` in ``metrics.jsonl``, the unscorable
    completions are counted (``gcpo/unscorable_frac/*``, the run summary), and TensorBoard simply
    gets no point for that step.
    """

    def on_log(
        self,
        args: TrainingArguments,
        state: TrainerState,
        control: TrainerControl,
        logs: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        if logs is not None:
            logs = {k: v for k, v in logs.items() if v is not None}
        super().on_log(args, state, control, logs=logs, **kwargs)


def heldout_reward(
    model: Any,
    tokenizer: Any,
    rows: list[dict[str, Any]],
    reward_fn: Any,
    *,
    max_new_tokens: int,
    batch_size: int = 16,
) -> float:
    """Mean reward of greedy completions of TRL ``rows`` (a chat ``prompt`` and the reward's
    columns), scored by ``reward_fn`` with TRL's reward signature (NaN when there are no rows)."""
    scores: list[float] = []
    for i in range(0, len(rows), batch_size):
        chunk = rows[i : i + batch_size]
        texts = [
            tokenizer.apply_chat_template(r["prompt"], tokenize=False, add_generation_prompt=True)
            for r in chunk
        ]
        completions, _, _ = generate(model, tokenizer, texts, max_new_tokens=max_new_tokens)
        extra = {k: [r[k] for r in chunk] for k in chunk[0] if k != "prompt"}
        values = reward_fn(
            prompts=[r["prompt"] for r in chunk],
            completions=[[{"role": "assistant", "content": c}] for c in completions],
            **extra,
        )
        scores.extend(float(v) for v in values if v is not None)
    return sum(scores) / len(scores) if scores else math.nan


class HeldoutRewardCallback(TrainerCallback):
    """Greedy held-out reward every ``every`` steps, one JSON line per point appended to ``path``.

    Each line: ``step``, ``heldout_accuracy`` (mean reward of greedy completions of ``rows``,
    scored by ``reward_fn`` with TRL's reward signature), ``prompts``, ``seconds``. The starting
    model (step 0) and the last step are always scored. At train begin the file is cut back to
    the (resumed) step, so points a killed session wrote after its last checkpoint are
    recomputed from the resumed trajectory. Only the main process evaluates: single process or
    DDP, not ZeRO-3 (sharded parameters cannot generate on one rank alone).
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        rows: list[dict[str, Any]],
        reward_fn: Any,
        *,
        every: int,
        max_new_tokens: int,
        batch_size: int = 16,
    ) -> None:
        if every < 1:
            raise ValueError(f"every: got {every!r}, expected >= 1")
        if not rows:
            raise ValueError("rows: the held-out set is empty")
        self.path = os.fspath(path)
        self.rows = rows
        self.reward_fn = reward_fn
        self.every = every
        self.max_new_tokens = max_new_tokens
        self.batch_size = batch_size
        self.scored: set[int] = set()

    def _score(self, step: int, state: TrainerState, kwargs: dict[str, Any]) -> None:
        import time

        if step in self.scored or not state.is_world_process_zero:
            return
        started = time.perf_counter()
        value = heldout_reward(
            kwargs["model"],
            kwargs["processing_class"],
            self.rows,
            self.reward_fn,
            max_new_tokens=self.max_new_tokens,
            batch_size=self.batch_size,
        )
        append_jsonl(
            self.path,
            {
                "step": step,
                "heldout_accuracy": _clean(value),
                "prompts": len(self.rows),
                "seconds": round(time.perf_counter() - started, 2),
            },
        )
        self.scored.add(step)

    def on_train_begin(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        if state.is_world_process_zero:
            kept = recover_jsonl(
                self.path,
                required=("step",),
                keep=lambda r: isinstance(r["step"], int) and r["step"] <= state.global_step,
            )
            self.scored = {r["step"] for r in kept}
        if state.global_step == 0:
            self._score(0, state, kwargs)

    def on_step_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        step = state.global_step
        if step % self.every == 0 or step >= state.max_steps:
            self._score(step, state, kwargs)

    def on_train_end(
        self, args: TrainingArguments, state: TrainerState, control: TrainerControl, **kwargs: Any
    ) -> None:
        self._score(state.global_step, state, kwargs)  # a no-op when that step is scored
