"""File I/O that never loses data and never hides where bad data came from.

- ``read_jsonl`` reports malformed lines, non-UTF-8 bytes, missing fields and empty files as a
  :class:`DataError` naming the file and the 1-based line number, or skips such rows and counts
  them when the caller asks for it.
- ``atomic_*`` writers write to a temporary file in the same directory, fsync, then ``os.replace``
  it over the target, so a reader (or a resumed run) sees either the old or the new content,
  never a half-written file.
- ``append_jsonl`` appends one fsynced row at a time; ``recover_jsonl`` reads such a file back
  after a kill (dropping a line cut short) so that appending can continue.
- ``find_config`` finds a YAML config given as a path or by name in a folder of packaged ones.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gcpo.fields import ConfigError

__all__ = [
    "DataError",
    "JsonlReport",
    "read_jsonl",
    "atomic_write_text",
    "atomic_write_bytes",
    "append_jsonl",
    "write_jsonl",
    "recover_jsonl",
    "fsync_dir",
    "find_config",
]


class DataError(ValueError):
    """Input data is malformed; the message names the file and line."""


@dataclass
class JsonlReport:
    """What ``read_jsonl`` skipped (only filled when ``skip_bad_rows=True``)."""

    skipped: int = 0
    reasons: list[str] = field(default_factory=list)


def read_jsonl(
    path: str | os.PathLike[str],
    *,
    required: Sequence[str] = (),
    skip_bad_rows: bool = False,
    report: JsonlReport | None = None,
    allow_empty: bool = False,
) -> list[dict[str, Any]]:
    """Read a JSON Lines file of objects.

    Args:
        path: the file.
        required: keys every row must have.
        skip_bad_rows: skip (and count in ``report``) rows that are malformed, not objects, not
            UTF-8 or miss a required key, instead of raising.
        report: receives the skip count and the first reasons when ``skip_bad_rows``.
        allow_empty: return ``[]`` for a file with no rows instead of raising.

    Raises:
        DataError: naming the file and line for the first bad row (or for a missing / empty file).
    """
    p = Path(path)
    if not p.exists():
        raise DataError(f"{p}: file does not exist")
    if p.is_dir():
        raise DataError(f"{p}: is a directory, expected a .jsonl file")
    rows: list[dict[str, Any]] = []
    rep = report if report is not None else JsonlReport()
    with p.open("rb") as fh:
        for lineno, raw in enumerate(fh, start=1):
            problem: str | None = None
            row: Any = None
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                problem = f"not valid UTF-8 (byte {exc.start}: {raw[exc.start:exc.start + 1]!r})"
            else:
                if not text.strip():
                    continue
                try:
                    row = json.loads(text)
                except json.JSONDecodeError as exc:
                    problem = f"malformed JSON ({exc.msg} at column {exc.colno})"
                else:
                    if not isinstance(row, dict):
                        problem = f"expected a JSON object, got {type(row).__name__}"
                    else:
                        missing = [k for k in required if k not in row]
                        if missing:
                            problem = (
                                f"missing field(s) {', '.join(map(repr, missing))}; "
                                f"found {', '.join(map(repr, row)) or 'none'}"
                            )
            if problem is not None:
                message = f"{p}:{lineno}: {problem}"
                if not skip_bad_rows:
                    raise DataError(message)
                rep.skipped += 1
                if len(rep.reasons) < 20:
                    rep.reasons.append(message)
                continue
            rows.append(row)
    if not rows and not allow_empty:
        extra = f" ({rep.skipped} bad rows skipped)" if rep.skipped else ""
        raise DataError(f"{p}: no rows found{extra}; expected one JSON object per line")
    return rows


def _atomic_write(path: str | os.PathLike[str], write: Any, mode: str) -> Path:
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent)
    try:
        encoding = None if "b" in mode else "utf-8"
        with os.fdopen(fd, mode, encoding=encoding) as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, target)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(target.parent)
    return target


def fsync_dir(directory: str | os.PathLike[str]) -> None:
    """fsync a directory, so a rename or a new file in it survives a power cut (best effort:
    some file systems cannot fsync a directory)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` to ``path`` atomically (temporary file + fsync + rename)."""
    return _atomic_write(path, lambda fh: fh.write(text), "w")


def atomic_write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically (temporary file + fsync + rename)."""
    return _atomic_write(path, lambda fh: fh.write(data), "wb")


def append_jsonl(path: str | os.PathLike[str], row: dict[str, Any]) -> None:
    """Append one row and flush it to disk (a killed run keeps every completed row).

    A crash can at worst leave a truncated last line, which :func:`recover_jsonl` drops on
    resume.
    """
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(row, ensure_ascii=False, default=_json_default) + "\n"
    with p.open("a", encoding="utf-8") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


def write_jsonl(path: str | os.PathLike[str], rows: Iterable[dict[str, Any]]) -> Path:
    """Write all rows atomically."""
    text = "".join(
        json.dumps(r, ensure_ascii=False, default=_json_default) + "\n" for r in rows
    )
    return atomic_write_text(path, text)


def recover_jsonl(
    path: str | os.PathLike[str],
    *,
    required: Sequence[str] = (),
    keep: Callable[[dict[str, Any]], bool] | None = None,
) -> list[dict[str, Any]]:
    """The rows of a JSONL file a run appends to, read back after a possible kill.

    Lines that are not valid rows (a line cut short mid-write, a row missing a ``required``
    key) are dropped, and so are the rows ``keep`` rejects (e.g. steps after the checkpoint a
    run resumes from). When anything was dropped the file is rewritten atomically with the rows
    kept, so the next :func:`append_jsonl` starts on a line of its own and the file never holds
    two histories. A missing file gives ``[]``.
    """
    p = Path(path)
    if not p.exists():
        return []
    report = JsonlReport()
    rows = read_jsonl(p, required=required, skip_bad_rows=True, report=report, allow_empty=True)
    kept = [r for r in rows if keep is None or keep(r)]
    if report.skipped or len(kept) != len(rows):
        write_jsonl(p, kept)
    return kept


def find_config(name: str | os.PathLike[str], directory: Path, *, key: str, kind: str) -> Path:
    """``name`` when it is a file, else ``directory/name`` or ``directory/name.yaml``; otherwise
    a ConfigError for the setting ``key`` listing the ``kind`` configs in ``directory``."""
    if Path(name).is_file():
        return Path(name)
    for candidate in (directory / name, directory / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    names = ", ".join(sorted(p.stem for p in directory.glob("*.yaml")))
    raise ConfigError(
        f"{key}: {str(name)!r} is neither a file nor a {kind} in {directory} ({names})"
    )


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")
