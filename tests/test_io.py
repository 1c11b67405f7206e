from __future__ import annotations

import json
import os

import pytest

from gcpo.io import (
    DataError,
    JsonlReport,
    append_jsonl,
    atomic_write_text,
    read_jsonl,
    write_jsonl,
)


def _write(path, lines: list[bytes]) -> None:
    path.write_bytes(b"".join(line + b"\n" for line in lines))


def test_read_jsonl_reads_objects_and_skips_blank_lines(tmp_path) -> None:
    p = tmp_path / "a.jsonl"
    _write(p, [b'{"x": 1}', b"", b'{"x": 2}'])
    assert read_jsonl(p, required=["x"]) == [{"x": 1}, {"x": 2}]


@pytest.mark.parametrize(
    ("line", "match"),
    [
        (b'{"x": 1', r"a\.jsonl:2: malformed JSON"),
        (b"[1, 2]", r"a\.jsonl:2: expected a JSON object, got list"),
        (b'{"y": 1}', r"a\.jsonl:2: missing field\(s\) 'x'; found 'y'"),
        (b'{"x": "\xff"}', r"a\.jsonl:2: not valid UTF-8"),
    ],
)
def test_read_jsonl_names_file_and_line(tmp_path, line: bytes, match: str) -> None:
    p = tmp_path / "a.jsonl"
    _write(p, [b'{"x": 0}', line, b'{"x": 3}'])
    with pytest.raises(DataError, match=match):
        read_jsonl(p, required=["x"])
    report = JsonlReport()
    rows = read_jsonl(p, required=["x"], skip_bad_rows=True, report=report)
    assert rows == [{"x": 0}, {"x": 3}]
    assert report.skipped == 1 and ":2:" in report.reasons[0]


def test_read_jsonl_empty_and_missing(tmp_path) -> None:
    empty = tmp_path / "e.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(DataError, match="no rows found"):
        read_jsonl(empty)
    assert read_jsonl(empty, allow_empty=True) == []
    with pytest.raises(DataError, match="does not exist"):
        read_jsonl(tmp_path / "missing.jsonl")


def test_atomic_write_replaces_and_leaves_no_temporaries(tmp_path) -> None:
    target = tmp_path / "sub" / "f.txt"
    atomic_write_text(target, "one")
    atomic_write_text(target, "two")
    assert target.read_text() == "two"
    assert os.listdir(target.parent) == ["f.txt"]


def test_atomic_write_failure_keeps_old_content(tmp_path) -> None:
    target = tmp_path / "f.txt"
    atomic_write_text(target, "old")
    before = target.read_bytes()
    with pytest.raises(TypeError):  # fails half-way, inside the temporary file's write
        atomic_write_text(target, 123)  # type: ignore[arg-type]
    assert target.read_bytes() == before
    assert os.listdir(tmp_path) == ["f.txt"]


def test_append_and_write_jsonl_roundtrip(tmp_path) -> None:
    p = tmp_path / "m.jsonl"
    append_jsonl(p, {"step": 1})
    append_jsonl(p, {"step": 2})
    assert read_jsonl(p) == [{"step": 1}, {"step": 2}]
    write_jsonl(p, [{"k": "ü"}])
    assert json.loads(p.read_text(encoding="utf-8")) == {"k": "ü"}


def test_recover_jsonl_drops_a_cut_line_and_rejected_rows_then_appends_cleanly(tmp_path) -> None:
    from gcpo.io import recover_jsonl

    p = tmp_path / "g.jsonl"
    assert recover_jsonl(p) == [] and not p.exists()
    for step in (1, 2, 3):
        append_jsonl(p, {"step": step})
    intact = p.read_bytes()
    assert recover_jsonl(p) == [{"step": 1}, {"step": 2}, {"step": 3}]
    assert p.read_bytes() == intact  # nothing dropped: the file is not rewritten
    p.write_bytes(intact + b'{"step": 4, "lo')  # killed mid-write
    assert recover_jsonl(p, keep=lambda r: r["step"] <= 2) == [{"step": 1}, {"step": 2}]
    append_jsonl(p, {"step": 3})
    assert read_jsonl(p) == [{"step": 1}, {"step": 2}, {"step": 3}]
    p.write_bytes(p.read_bytes() + b'{"no_step": 1}\n')
    assert recover_jsonl(p, required=("step",)) == read_jsonl(p) == [{"step": s} for s in (1, 2, 3)]
