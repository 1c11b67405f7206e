"""End-to-end: ``gcpo analyze`` on the tiny random model, a built-in task and a cheap embedder."""

import csv
import json

import pytest

from gcpo.cli import main


def _read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.slow
def test_analyze_runs_end_to_end_and_resumes(tmp_path):
    out = tmp_path / "run"
    argv = [
        "analyze",
        "--model",
        "tiny-random",
        "--task",
        "arithmetic",
        "--prompts",
        "2",
        "--group-size",
        "4",
        "--max-new-tokens",
        "6",
        "--embedder",
        "hashing",
        "--bootstrap",
        "50",
        "--project-dim",
        "256",
        "--no-progress",
        "--output",
        str(out),
    ]
    assert main(argv) == 0
    for name in (
        "groups.csv",
        "groups.jsonl",
        "correlations.md",
        "correlations.csv",
        "comparison.md",
        "comparison.csv",
        "scatter_V.png",
        "scatter_NSR.png",
        "scatter_V_sum.png",
        "scatter_NSR_sum.png",
        "run.json",
    ):
        assert (out / name).is_file(), name
    rows = _read_csv(out / "groups.csv")
    assert len(rows) == 2
    expected = {
        "prompt_id",
        "se_lik",
        "se_emb_lik",
        "cd",
        "bot",
        "eig",
        "te",
        "reward_dispersion",
        "grad_variance",
        "grad_mean_sq_norm",
        "grad_nsr",
        "cal_gcpo",
        "weight_gcpo",
        "cal_seed-grpo",
        "weight_seed-grpo",
        "grad_variance_mean",
        "grad_variance_sum",
        "grad_nsr_sum",
    }
    assert expected <= set(rows[0])
    for r in rows:
        for k, v in r.items():
            if k != "prompt_id":
                assert v.lower() not in ("nan", "inf", "-inf"), (k, v)
        # V = 0 exactly when all advantages vanish, i.e. when RD = 0
        assert (float(r["reward_dispersion"]) == 0) <= (float(r["grad_variance"]) == 0)
    md = (out / "correlations.md").read_text()
    assert "rho vs V" in md and "| cd " in md and "given RD, len" in md
    assert "cd − se_lik" in md  # the paper's comparison is appended
    assert "objective=sum" in md and "rho vs V[sum]" in md  # the other objective, same groups
    assert (out / "scatter_V.png").read_bytes()[:4] == b"\x89PNG"

    # resume: a truncated last line is dropped, the finished groups are not recomputed
    lines = (out / "groups.jsonl").read_text().splitlines()
    (out / "groups.jsonl").write_text(lines[0] + "\n" + lines[1][:20])
    before = {json.loads(lines[0])["prompt_id"]: json.loads(lines[0])["seconds"]}
    assert main(argv) == 0
    after = [json.loads(line) for line in (out / "groups.jsonl").read_text().splitlines()]
    assert len(after) == 2
    assert {after[0]["prompt_id"]: after[0]["seconds"]} == before
    assert json.loads(lines[1])["completions"] == after[1]["completions"]  # seeded sampling

    # a different setting may not resume into the same directory
    assert main([*argv, "--group-size", "5"]) == 2
    assert main([*argv, "--objective", "sum"]) == 2


def test_analyze_rejects_task_and_benchmark_together(tmp_path, capsys):
    code = main(
        [
            "analyze",
            "--model",
            "tiny-random",
            "--task",
            "arithmetic",
            "--benchmark",
            "math500",
            "--output",
            str(tmp_path / "x"),
        ]
    )
    assert code == 2
    assert "give exactly one" in capsys.readouterr().err


def test_analyze_rejects_bad_group_size(tmp_path, capsys):
    code = main(["analyze", "--task", "arithmetic", "--group-size", "1", "--output", str(tmp_path)])
    assert code == 2
    assert "group_size" in capsys.readouterr().err
