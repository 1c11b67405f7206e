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
