"""Trainer callbacks: metrics sinks that record what TRL logs, without per-step log noise."""

from __future__ import annotations

import logging
from typing import Any

import pytest

pytest.importorskip("trl")

from transformers import TrainerControl, TrainerState, TrainingArguments  # noqa: E402
from transformers.integrations import TensorBoardCallback  # noqa: E402

from gcpo.trl.callbacks import QuietTensorBoardCallback  # noqa: E402


class FakeWriter:
    def __init__(self) -> None:
        self.scalars: list[tuple[str, float]] = []

    def add_scalar(self, key: str, value: float, step: int) -> None:
        self.scalars.append((key, value))

    def add_text(self, *args: Any) -> None:  # pragma: no cover - no strings logged here
        pass

    def flush(self) -> None:
        pass


@pytest.mark.parametrize("cls, warns", [(TensorBoardCallback, True), (QuietTensorBoardCallback, False)])
def test_none_metrics_do_not_warn_every_step(
    cls: type, warns: bool, tmp_path: Any, caplog: pytest.LogCaptureFixture
) -> None:
    writer = FakeWriter()
    cb = cls(tb_writer=writer)
    args = TrainingArguments(output_dir=str(tmp_path), report_to=[])
    state = TrainerState(is_world_process_zero=True)
    with caplog.at_level(logging.WARNING):
        for step in range(3):
            state.global_step = step
            cb.on_log(args, state, TrainerControl(), logs={"reward": None, "loss": 0.5})
    warned = [r for r in caplog.records if "attempting to log a value" in r.getMessage()]
    assert bool(warned) == warns
    assert writer.scalars == [("train/loss", 0.5)] * 3
