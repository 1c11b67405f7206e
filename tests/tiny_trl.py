"""The tiny CPU GRPOConfig the trainer tests share (tests/ is on sys.path under pytest)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def tiny_grpo_args(output_dir: str | Path, **overrides: Any) -> Any:
    """A 2-step, 4-token, CPU, no-save, no-report ``trl.GRPOConfig``; ``overrides`` win."""
    from trl import GRPOConfig

    settings: dict[str, Any] = dict(
        output_dir=str(output_dir),
        max_steps=2,
        per_device_train_batch_size=4,
        num_generations=2,
        max_completion_length=4,
        logging_steps=1,
        report_to=[],
        use_cpu=True,
        bf16=False,
        save_strategy="no",
        seed=0,
        disable_tqdm=True,
    )
    settings.update(overrides)
    return GRPOConfig(**settings)


def exit_worker() -> None:
    """End a ``torch.distributed.run`` worker whose results are on disk: an orderly gloo
    teardown, then ``os._exit(0)``. Interpreter finalisation tears gloo's and torch's C++ worker
    threads down in an order that, under load, can abort a finished rank ("terminate called
    without an active exception", exit -6); leaving through os._exit makes the exit status the
    work's alone."""
    import os
    import sys

    import torch.distributed as dist

    if dist.is_initialized():
        dist.barrier()
        dist.destroy_process_group()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
