"""Checkpoints that appear only when complete.

The HF Trainer writes ``checkpoint-N/`` file by file (model, optimizer, scheduler, RNG states,
trainer state) straight into the run directory, so a run killed mid-save leaves a directory that
looks like a checkpoint but cannot be resumed from. :class:`~gcpo.trl.GCPOTrainer` instead lets
the Trainer save into a staging folder ``RUN/.tmp-checkpoint-N/checkpoint-N``, adds its own
``gcpo_state.json``, fsyncs every file, and then renames the finished folder to
``RUN/checkpoint-N`` in one ``os.rename``: a directory named ``checkpoint-N`` is always complete.
Leftover staging folders of a killed run are deleted at the next save.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

from gcpo.io import fsync_dir

__all__ = [
    "STAGING_PREFIX",
    "staging_parent",
    "publish_checkpoint",
    "replace_dir",
    "remove_stale_staging",
]

STAGING_PREFIX = ".tmp-"
_OLD_PREFIX = ".old-"


def staging_parent(run_dir: str | os.PathLike[str], step: int) -> str:
    """The folder the Trainer is pointed at while saving step ``step`` (it creates
    ``checkpoint-<step>`` inside it)."""
    return os.path.join(os.fspath(run_dir), f"{STAGING_PREFIX}{PREFIX_CHECKPOINT_DIR}-{step}")


def _fsync_tree(folder: Path) -> None:
    for path in sorted(folder.rglob("*")):
        if path.is_file():
            fd = os.open(path, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    fsync_dir(folder)


def publish_checkpoint(run_dir: str | os.PathLike[str], step: int) -> Path:
    """Move the finished ``checkpoint-<step>`` from its staging folder into ``run_dir``.

    Returns the final path. Raises FileNotFoundError if nothing was staged for ``step``.
    """
    run = Path(run_dir)
    name = f"{PREFIX_CHECKPOINT_DIR}-{step}"
    parent = Path(staging_parent(run, step))
    src = parent / name
    if not src.is_dir():
        raise FileNotFoundError(f"checkpoint step {step}: nothing staged in {src}")
    dst = replace_dir(src, run / name)
    shutil.rmtree(parent, ignore_errors=True)
    return dst


def replace_dir(src: str | os.PathLike[str], dst: str | os.PathLike[str]) -> Path:
    """fsync every file of the finished folder ``src``, then rename it to ``dst``.

    An existing ``dst`` is first renamed to ``.old-<name>`` and deleted after the swap, so at every
    moment either the old or the new complete folder exists (see :func:`remove_stale_staging`).
    """
    src, dst = Path(src), Path(dst)
    _fsync_tree(src)
    old = dst.parent / f"{_OLD_PREFIX}{dst.name}"
    if dst.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.rename(dst, old)
    os.rename(src, dst)
    fsync_dir(dst.parent)
    shutil.rmtree(old, ignore_errors=True)
    return dst


def remove_stale_staging(run_dir: str | os.PathLike[str]) -> list[Path]:
    """Delete staging / swap folders a killed save left in ``run_dir``; returns what was removed.

    A complete ``.old-checkpoint-N`` whose replacement never arrived is renamed back instead.
    """
    run = Path(run_dir)
    removed: list[Path] = []
    if not run.is_dir():
        return removed
    for old in run.glob(f"{_OLD_PREFIX}{PREFIX_CHECKPOINT_DIR}-*"):
        dst = run / old.name[len(_OLD_PREFIX) :]
        if not dst.exists():
            os.rename(old, dst)
    for prefix in (STAGING_PREFIX, _OLD_PREFIX):
        for path in run.glob(f"{prefix}{PREFIX_CHECKPOINT_DIR}-*"):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed
