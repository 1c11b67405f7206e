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

__all__ = ["MetricsJsonlCallback", "ConstantMetricsCallback", "QuietTensorBoardCallback"]


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
