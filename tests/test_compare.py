"""``gcpo compare``: statistics against references, the table from hand-built results, and end to
end on tiny-random (skip finished runs, kill + resume, a replaced machine, refused mixing)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from gcpo.compare import (
    COMPARE_DIR,
    CompareConfig,
    curve_stats,
    load_compare_config,
    plan_runs,
    run_comparison,
    t_interval,
    table_markdown,
    table_rows,
)
from gcpo.fields import ConfigError

TINY_TRAIN = {
    "model": "tiny-random",
    "embedder": "hashing",
    "task": "graded-arithmetic",
    "num_train_prompts": 16,
    "num_eval_prompts": 4,
    "per_device_train_batch_size": 4,
    "num_generations": 2,
    "max_completion_length": 4,
    "eval_max_new_tokens": 4,
    "max_steps": 4,
    "save_steps": 2,
    "plot": False,
    "save_final": False,
    "torch_threads": 1,
}


def _tiny(tmp_path: Path, **kw: Any) -> CompareConfig:
    settings: dict[str, Any] = dict(
        train=dict(TINY_TRAIN),
        presets=["grpo", "gcpo"],
        seeds=[0],
        eval_every=2,
        results=str(tmp_path / "results"),
        runs=str(tmp_path / "runs"),
    )
    settings.update(kw)
    return CompareConfig(**settings)


def _curve(c: CompareConfig, name: str) -> list[dict[str, Any]]:
    path = Path(c.results) / "runs" / name / "curve.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


# -- statistics -----------------------------------------------------------------------------


def test_t_interval_matches_scipy() -> None:
    from scipy import stats

    values = [0.31, 0.45, 0.38, 0.52]
    lo, hi = t_interval(values)
    ref = stats.t.interval(
        0.95, len(values) - 1, loc=sum(values) / 4, scale=stats.sem(values)
    )
    assert lo == pytest.approx(ref[0]) and hi == pytest.approx(ref[1])
    assert t_interval([0.5]) == (None, None)
    assert t_interval([0.2, 0.2, 0.2]) == (pytest.approx(0.2), pytest.approx(0.2))


def test_curve_stats_hand_computed() -> None:
    curve = [
        {"step": 0, "heldout_accuracy": 0.0},
        {"step": 2, "heldout_accuracy": 0.5},
        {"step": 4, "heldout_accuracy": 1.0},
    ]
    s = curve_stats(curve, max_steps=4, threshold=0.5)
    assert s == {"final_accuracy": 1.0, "area": pytest.approx(0.5), "steps_to_threshold": 2}
    # a curve without its start or end point has no area; an unreached threshold is None
    s = curve_stats(curve[1:], max_steps=4, threshold=0.9)
    assert s["area"] is None and s["steps_to_threshold"] == 4
    assert curve_stats(curve[:2], max_steps=4, threshold=0.99)["final_accuracy"] is None


def _write_summary(results: Path, preset: str, seed: int, **values: Any) -> None:
    d = results / "runs" / f"{preset}-s{seed}"
    d.mkdir(parents=True, exist_ok=True)
    summary = {
        "preset": preset,
        "seed": seed,
        "finished": True,
        "final_accuracy": None,
        "area": None,
        "steps_to_threshold": None,
        "heldout_accuracy_start": 0.1,
        "weight_spread": None,
        "mean_active_groups": None,
    }
    summary.update(values)
    (d / "summary.json").write_text(json.dumps(summary))


def test_table_paired_differences_from_hand_built_results(tmp_path: Path) -> None:
    results = tmp_path / "results"
    finals = {"grpo": [0.40, 0.50, 0.45], "gcpo": [0.50, 0.55, 0.45]}
    for preset, values in finals.items():
        for seed, v in enumerate(values):
            _write_summary(
                results,
                preset,
                seed,
                final_accuracy=v,
                area=v / 2,
                steps_to_threshold=10 if v >= 0.5 else None,
                # grpo logged no weight_std: missing, not 0
                weight_spread=None if preset == "grpo" else 0.1 * (seed + 1),
                mean_active_groups=6.0,
            )
    c = CompareConfig(presets=["grpo", "gcpo"], seeds=[0, 1, 2], results=str(results))
    rows = {r["preset"]: r for r in table_rows(c)}
    diffs = [0.10, 0.05, 0.0]
    assert rows["gcpo"]["final_diff_mean"] == pytest.approx(sum(diffs) / 3)
    lo, hi = t_interval(diffs)
    assert rows["gcpo"]["final_diff_ci_low"] == pytest.approx(lo)
    assert rows["gcpo"]["final_diff_ci_high"] == pytest.approx(hi)
    assert rows["gcpo"]["final_diff_per_seed"] == "s0:+0.100 s1:+0.050 s2:+0.000"
    assert rows["gcpo"]["area_diff_mean"] == pytest.approx(sum(diffs) / 6)
    assert rows["grpo"]["final_diff_mean"] is None
    assert rows["gcpo"]["final_mean"] == pytest.approx(0.5)
    assert rows["grpo"]["weight_spread_mean"] is None
    assert rows["gcpo"]["weight_spread_mean"] == pytest.approx(0.2)
    assert (rows["grpo"]["threshold_reached"], rows["gcpo"]["threshold_reached"]) == (1, 2)
    assert rows["gcpo"]["steps_to_threshold_mean"] == 10.0
    # an unfinished seed is left out of the paired difference
    (results / "runs" / "gcpo-s2" / "summary.json").write_text(json.dumps({"finished": False}))
    rows = {r["preset"]: r for r in table_rows(c)}
    assert rows["gcpo"]["seeds_done"] == 2
    assert rows["gcpo"]["final_diff_mean"] == pytest.approx(0.075)


def test_fraction_of_the_reference_gain_from_hand_built_results(tmp_path: Path) -> None:
    results = tmp_path / "results"
    finals = {
        "grpo": [0.40, 0.50, 0.45],
        "oracle": [0.50, 0.62, 0.53],  # gains +0.10 +0.12 +0.08: clearly above 0
        "gcpo": [0.45, 0.56, 0.49],  # gains +0.05 +0.06 +0.04: half of the oracle's
        "seed-grpo": [0.40, 0.50, 0.45],  # no gain
    }
    areas = {"grpo": [0.3] * 3, "oracle": [0.4, 0.2, 0.3], "gcpo": [0.35] * 3, "seed-grpo": [0.3] * 3}
    for preset, values in finals.items():
        for seed, v in enumerate(values):
            _write_summary(results, preset, seed, final_accuracy=v, area=areas[preset][seed])
    c = CompareConfig(
        presets=list(finals), seeds=[0, 1, 2], reference="oracle", results=str(results)
    )
    rows = {r["preset"]: r for r in table_rows(c)}
    assert rows["gcpo"]["final_fraction"] == pytest.approx(0.5)
    assert rows["seed-grpo"]["final_fraction"] == pytest.approx(0.0)
    assert rows["gcpo"]["final_reference_gain"] == pytest.approx(0.10)
    assert rows["gcpo"]["final_fraction_seeds"] == 3
    # the oracle's area gains +0.1 -0.1 0: no measurable gain, so no fraction
    assert rows["gcpo"]["area_fraction"] is None
    assert "final_fraction" not in rows["grpo"] and "final_fraction" not in rows["oracle"]
    text = table_markdown(table_rows(c), c)
    assert "| gcpo | 3 | **0.50** (+0.050 of +0.100 [" in text
    assert "none: oracle +0.000 [" in text and "not distinguishable from 0 (this arm +0.050)" in text
    # on the seeds both finished: an arm with one seed is compared on that seed only
    (results / "runs" / "gcpo-s1" / "summary.json").write_text(json.dumps({"finished": False}))
    (results / "runs" / "gcpo-s2" / "summary.json").write_text(json.dumps({"finished": False}))
    row = {r["preset"]: r for r in table_rows(c)}["gcpo"]
    assert row["final_fraction_seeds"] == 1 and row["final_fraction"] is None  # no interval


@pytest.mark.parametrize(
    "kw, match",
    [
        ({"presets": ["grpo", "ppo"]}, "presets"),
        ({"presets": ["gcpo"]}, "baseline"),
        ({"only": ["gcpo-bot"]}, "only"),
        ({"seeds": [0, 0]}, "seeds"),
        ({"train": {"seed": 3}}, "train.seed"),
        ({"train": {"weighting": {"alpha": 2}}}, "train.weighting"),
        ({"preset_seeds": {"gcpo-bot": [0]}}, "preset_seeds.gcpo-bot"),
        ({"preset_seeds": {"gcpo": [0, 7]}}, "preset_seeds.gcpo"),
        ({"preset_seeds": {"gcpo": []}}, "preset_seeds.gcpo"),
        ({"preset_seeds": {"grpo": [0]}}, "baseline runs on every seed"),
        ({"reference": "oracle"}, "reference"),
        ({"reference": "grpo"}, "reference"),
    ],
)
def test_bad_config_is_refused(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        CompareConfig(**kw)


@pytest.mark.parametrize(
    "path", sorted(COMPARE_DIR.glob("*.yaml")), ids=lambda p: p.stem
)
def test_packaged_comparisons_load_and_every_run_config_is_valid(path: Path) -> None:
    from gcpo.compare import train_config_for

    c = load_compare_config(path.stem)
    assert c.baseline in c.presets and len(c.seeds) >= 3
    for preset in c.presets:
        t = train_config_for(c, preset, c.seeds[0], "runs/x")
        arm = c.arms.get(preset)
        assert t.preset == (arm["preset"] if arm else preset)
        assert t.seed == c.seeds[0] and t.output_dir == "runs/x"
        for key, value in (arm or {}).get("weighting", {}).items():
            assert getattr(t.weighting, key) == value  # the arm's change, on top of its preset
        from gcpo.weighting import is_weighted

        assert (not is_weighted(t.weighting)) == (preset == "grpo")
        assert t.num_eval_prompts > 0  # the comparison's held-out curve needs prompts
    if path.stem == "arithmetic":
        assert t.task == "graded-arithmetic" and t.model == "smollm2-135m-instruct"
    if path.stem == "dose":  # issue: >= 128 held-out prompts, >= 5 seeds, two gcpo strengths
        assert t.num_eval_prompts >= 128 and len(c.seeds) >= 5
        assert {a["weighting"]["alpha"] for a in c.arms.values()} == {0.5, 1.3}


def test_preset_seeds_plan_fewer_runs_and_the_table_counts_them(tmp_path: Path) -> None:
    results = tmp_path / "results"
    c = CompareConfig(
        presets=["grpo", "gcpo", "seed-grpo"],
        seeds=[0, 1, 2],
        preset_seeds={"seed-grpo": [2, 0]},
        results=str(results),
        runs=str(tmp_path / "runs"),
    )
    # seed-major, and seed-grpo only on its seeds (in the order of 'seeds')
    assert [s.name for s in plan_runs(c)] == [
        "grpo-s0", "gcpo-s0", "seed-grpo-s0", "grpo-s1", "gcpo-s1", "grpo-s2", "gcpo-s2",
        "seed-grpo-s2",
    ]
    for preset, seed, v in [("grpo", 0, 0.4), ("grpo", 2, 0.5), ("seed-grpo", 0, 0.6)]:
        _write_summary(results, preset, seed, final_accuracy=v, area=v)
    rows = {r["preset"]: r for r in table_rows(c)}
    assert (rows["seed-grpo"]["seeds_done"], rows["seed-grpo"]["seeds"]) == (1, 2)
    assert rows["grpo"]["seeds"] == 3
    assert rows["seed-grpo"]["final_diff_mean"] == pytest.approx(0.2)


def test_unknown_comparison_name() -> None:
    with pytest.raises(ConfigError, match="configs/compare"):
        load_compare_config("no-such-comparison")


# -- end to end on tiny-random ---------------------------------------------------------------


def test_end_to_end_then_finished_runs_are_skipped(tmp_path: Path, monkeypatch) -> None:
    c = _tiny(tmp_path)
    out = run_comparison(c, log=lambda *_: None)
    assert [s.state for s in out["runs"]] == ["done", "done"]
    for name in ("grpo-s0", "gcpo-s0"):
        assert [r["step"] for r in _curve(c, name)] == [0, 2, 4]
        summary = json.loads((Path(c.results) / "runs" / name / "summary.json").read_text())
        assert summary["finished"] and summary["steps"] == 4
        metrics = (Path(c.results) / "runs" / name / "metrics.jsonl").read_text().splitlines()
        assert [json.loads(m)["step"] for m in metrics] == [1, 2, 3, 4]
        assert not list((Path(c.runs) / name).glob("checkpoint-*"))  # deleted once finished
    results = Path(c.results)
    assert (results / "curves.png").stat().st_size > 1000
    table = (results / "table.md").read_text()
    assert "| grpo | 1/1 |" in table and "| gcpo | 1/1 |" in table
    assert "preset,seeds_done" in (results / "table.csv").read_text()

    # the heavy run directories are lost (a replaced machine): compact results say finished
    import shutil

    import gcpo.train.run as run_module

    shutil.rmtree(c.runs)

    def no_training(*a: Any, **k: Any) -> None:
        raise AssertionError("a finished run was trained again")

    monkeypatch.setattr(run_module, "run_training", no_training)
    monkeypatch.setattr(run_module, "resume_training", no_training)
    out = run_comparison(c, log=lambda *_: None)
    assert [s.state for s in out["runs"]] == ["done", "done"]

    # results of another setup are never mixed in
    other = _tiny(tmp_path, train={**TINY_TRAIN, "learning_rate": 1e-3})
    with pytest.raises(ConfigError, match="train.learning_rate"):
        run_comparison(other, log=lambda *_: None)


def test_killed_run_resumes_and_recomputes_eval_points(tmp_path: Path, monkeypatch) -> None:
    from gcpo.trl.callbacks import HeldoutRewardCallback

    c = _tiny(tmp_path, presets=["grpo"], eval_every=1)
    original = HeldoutRewardCallback.on_step_end
    writes: list[int] = []

    def killed_after_step_3(self, args, state, control, **kwargs):  # noqa: ANN001
        original(self, args, state, control, **kwargs)
        writes.append(state.global_step)
        if state.global_step == 3 and writes.count(3) == 1:
            raise KeyboardInterrupt("simulated kill after step 3 was scored")

    monkeypatch.setattr(HeldoutRewardCallback, "on_step_end", killed_after_step_3)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(c, log=lambda *_: None)
    # killed: step 3 was scored, but the newest checkpoint is step 2
    assert [r["step"] for r in _curve(c, "grpo-s0")] == [0, 1, 2, 3]
    (status,) = plan_runs(c)
    assert status.state == "resume" and status.checkpoint.name == "checkpoint-2"
    # a kill can also cut the last line in half
    with (Path(c.results) / "runs" / "grpo-s0" / "curve.jsonl").open("a") as f:
        f.write('{"step": 4, "heldout_acc')

    out = run_comparison(c, log=lambda *_: None)
    assert out["runs"][0].state == "done"
    curve = _curve(c, "grpo-s0")
    assert [r["step"] for r in curve] == [0, 1, 2, 3, 4]  # 3 recomputed once, no duplicates
    assert writes.count(3) == 2
    assert all(math.isfinite(r["heldout_accuracy"]) for r in curve)
    summary = json.loads((Path(c.results) / "runs" / "grpo-s0" / "summary.json").read_text())
    assert summary["finished"] and summary["final_accuracy"] is not None
    # the training log holds each step once (its last line is TRL's end-of-training summary)
    rows = [json.loads(x) for x in (Path(c.runs) / "grpo-s0" / "metrics.jsonl").open()]
    assert [r["step"] for r in rows if "reward" in r] == [1, 2, 3, 4]


def test_unfinished_run_without_its_heavy_dir_starts_again(tmp_path: Path) -> None:
    c = _tiny(tmp_path, presets=["grpo", "gcpo"], only=["grpo"])
    run_dir = Path(c.results) / "runs" / "grpo-s0"
    run_dir.mkdir(parents=True)
    # a curve from a machine that was replaced mid-run; no summary, no heavy directory
    (run_dir / "curve.jsonl").write_text(
        '{"step": 0, "heldout_accuracy": 0.0}\n{"step": 2, "heldout_accuracy": 0.99}\n'
    )
    assert [s.state for s in plan_runs(c)] == ["fresh", "fresh"]
    logged: list[str] = []
    out = run_comparison(c, log=logged.append)
    # the gcpo arm is left to another invocation, not counted as done
    assert "2 runs (0 done, 1 left to other invocations (--only))" in logged[0]
    # only the grpo arm was trained; the table lists both presets
    assert [s.state for s in out["runs"]] == ["done", "fresh"]
    assert [r["seeds_done"] for r in out["table"]] == [1, 0]
    curve = _curve(c, "grpo-s0")
    assert [r["step"] for r in curve] == [0, 2, 4]
    assert curve[1]["heldout_accuracy"] != 0.99  # the stale point was dropped and recomputed


def test_cli_status_and_table_only_from_results(tmp_path: Path, capsys) -> None:
    import yaml

    from gcpo.cli import main

    results = tmp_path / "results"
    for seed, (g, c) in enumerate([(0.4, 0.5), (0.5, 0.5)]):
        _write_summary(results, "grpo", seed, final_accuracy=g, area=g)
        _write_summary(results, "gcpo", seed, final_accuracy=c, area=c, weight_spread=0.2)
    config = tmp_path / "c.yaml"
    config.write_text(
        yaml.safe_dump({"train": TINY_TRAIN, "results": str(results), "runs": str(tmp_path / "r")})
    )
    argv = ["compare", str(config), "--presets", "grpo,gcpo", "--seeds", "0,1,2"]
    assert main([*argv, "--status"]) == 0
    out = capsys.readouterr().out.split("\n")
    assert out[0].startswith(f"results {results} ")  # where it looked
    assert out[1].split() == ["grpo-s0", "done"] and out[6].split() == ["gcpo-s2", "fresh"]
    assert main([*argv, "--table-only"]) == 0
    out = capsys.readouterr().out
    assert "| gcpo | 2/3 |" in out and "+0.050" in out  # paired mean over the 2 finished seeds
    assert (results / "table.md").is_file() and (results / "table.csv").is_file()
    assert main(["compare", "no-such-comparison", "--status"]) == 2


def test_compact_results_are_not_ignored_by_git() -> None:
    """The per-run curves and summaries under ``<results>/runs/`` are meant to be committed; only
    the heavy top-level ``runs/`` directory is ignored."""
    import shutil
    import subprocess

    repo = Path(__file__).resolve().parents[1]
    if shutil.which("git") is None or not (repo / ".git").exists():
        pytest.skip("not a git checkout")

    def ignored(rel: str) -> bool:
        proc = subprocess.run(["git", "check-ignore", "-q", rel], cwd=repo, check=False)
        return proc.returncode == 0

    assert not ignored("docs/results/compare-arithmetic/runs/grpo-s0/curve.jsonl")
    assert ignored("runs/compare-arithmetic/grpo-s0/config.yaml")


def test_packaged_comparison_reproduces_unless_the_committed_results_are_named(
    tmp_path: Path, monkeypatch, capsys
) -> None:
    """`gcpo compare arithmetic` on a fresh clone trains its runs: the committed results count
    only when named with --output (the evidence runs, --status / --table-only of them)."""
    from gcpo.cli import main

    committed = Path(__file__).resolve().parents[1] / "docs" / "results" / "compare-arithmetic"
    if not (committed / "runs").is_dir():
        pytest.skip("no committed comparison results")
    monkeypatch.chdir(tmp_path)
    assert main(["compare", "arithmetic", "--status"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("results runs/compare-arithmetic/results ")
    assert len(out) == 13 and all(line.split()[1] == "fresh" for line in out[1:])
    assert main(["compare", "arithmetic", "--status", "--output", str(committed)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(f"results {committed} ")
    assert [line.split()[1] for line in out[1:]] == ["done"] * 12
