"""A training run's files, as ``gcpo train``, ``gcpo compare``, ``gcpo eval`` and both trainers
read and write them: their names, the newest complete checkpoint, the GCPO state saved in every
checkpoint (the scorer's rank window) and the logged metrics."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from gcpo.io import atomic_write_text, read_jsonl

__all__ = [
    "CONFIG_FILE", "METRICS_FILE", "STATE_FILE", "SUMMARY_FILE",
    "last_checkpoint", "read_metrics", "read_state", "write_state",
]  # fmt: skip

CONFIG_FILE = "config.yaml"
SUMMARY_FILE = "summary.json"
METRICS_FILE = "metrics.jsonl"
STATE_FILE = "gcpo_state.json"


def last_checkpoint(run_dir: str | os.PathLike[str]) -> Path | None:
    """Newest complete ``checkpoint-N`` in ``run_dir`` (one with trainer_state.json), or None."""
    best: tuple[int, Path] | None = None
    for p in Path(run_dir).glob("checkpoint-*"):
        suffix = p.name.split("-", 1)[1]
        if p.is_dir() and suffix.isdigit() and (p / "trainer_state.json").is_file():
            step = int(suffix)
            if best is None or step > best[0]:
                best = (step, p)
    return None if best is None else best[1]


def write_state(checkpoint: str | os.PathLike[str], state: Any) -> Path:
    """Save the plain-data GCPO ``state`` in ``checkpoint`` (:data:`STATE_FILE`, atomically)."""
    return atomic_write_text(Path(checkpoint) / STATE_FILE, json.dumps(state))


def read_state(checkpoint: str | os.PathLike[str]) -> Any:
    """The GCPO state saved in ``checkpoint``, or None when it holds no :data:`STATE_FILE`."""
    path = Path(checkpoint) / STATE_FILE
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def read_metrics(path: str | os.PathLike[str]) -> list[dict[str, Any]]:
    """Training log rows of a metrics.jsonl (rows with a ``reward``; a cut last line is skipped)."""
    rows = read_jsonl(path, skip_bad_rows=True, allow_empty=True) if Path(path).is_file() else []
    return [r for r in rows if "reward" in r]
