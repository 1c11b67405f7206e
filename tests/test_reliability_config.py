"""Issue 6, config: every bad config fails before any model loads, with one message naming the
field, the value and what is allowed; `gcpo train --check` validates without training."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from gcpo.cli import main


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Record (and refuse) any policy load: configuration errors must come first."""
    loads: list[str] = []

    def refuse(name: Any = None, *args: Any, **kwargs: Any) -> None:
        loads.append(str(name))
        raise AssertionError("a model was loaded before the config was validated")

    import gcpo.models

    monkeypatch.setattr(gcpo.models, "load_policy", refuse)
    return loads


BAD = [
    # (arguments, substrings the one-line message must contain: field, value, allowed)
    (["bogus_key=1"], ["bogus_key", "unknown key", "allowed keys", "num_generations"]),
    (["weighting.bogus=1"], ["bogus", "unknown key", "alpha"]),
    (["max_steps=abc"], ["max_steps", "'abc'", "integer"]),
    (["learning_rate=fast"], ["learning_rate", "'fast'"]),
    (["plot=maybe"], ["plot", "'maybe'"]),
    (["weighting.alpha=-0.5"], ["weighting.alpha", "-0.5", ">= 0"]),
    (["num_generations=1"], ["num_generations", "got 1", ">= 2"]),
    (["preset=nope"], ["preset", "'nope'", "gcpo-bot", "seed-grpo"]),
    (["--preset", "nope"], ["preset", "'nope'", "grpo"]),
    (["weighting.signal=entropyy"], ["signal", "'entropyy'", "cosine_dispersion"]),
    (["extra_signals=[se,xyz]"], ["extra_signals", "'xyz'", "cd (cosine_dispersion)"]),
    (["weighting.modulation=cubic"], ["modulation", "'cubic'", "linear, exp, focal, inverse"]),
    (["task=chess"], ["task", "'chess'", "arithmetic, passage-qa"]),
    (["task=arithmetic", "task_options={digits: 0}"], ["task_options", "digits", "got 0"]),
    (["loss_type=ppo"], ["loss_type", "'ppo'", "dapo"]),
    (["reward=magic"], ["reward", "'magic'", "module:function"]),
    (["reward=no_such_module_xyz:fn"], ["reward", "no_such_module_xyz"]),
    (["trl.max_steps=3"], ["trl.max_steps", "top-level field"]),
    (["trl.not_an_arg=3"], ["trl", "not_an_arg"]),
    (
        ["per_device_train_batch_size=2", "num_generations=4"],
        ["generation_batch_size (2)", "divisible by num_generations (4)"],
    ),
]


@pytest.mark.parametrize("args, parts", BAD, ids=[" ".join(a) for a, _ in BAD])
def test_bad_config_fails_before_any_model_with_one_clear_line(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    no_model: list[str],
    args: list[str],
    parts: list[str],
) -> None:
    base = ["train", "model=tiny-random", "embedder=hashing", f"output_dir={tmp_path / 'run'}"]
    for extra in ([], ["--check"]):
        rc = main([*base, *args, *extra])
        err = capsys.readouterr().err
        assert rc == 2, err
        lines = [ln for ln in err.strip().splitlines() if "Warning" not in ln and "warn" not in ln]
        assert len(lines) == 1 and lines[0].startswith("gcpo train: configuration error: "), err
        for part in parts:
            assert part in lines[0], f"{part!r} not in {lines[0]!r}"
    assert no_model == []
    assert not (tmp_path / "run" / "checkpoint-1").exists()


def test_bad_yaml_file_fails_naming_the_key(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: list[str]
) -> None:
    path = tmp_path / "cfg.yaml"
    path.write_text("preset: gcpo\nweighting: {alpha: 0.5, normalisation: rank}\n")
    assert main(["train", str(path), "--check"]) == 2
    err = capsys.readouterr().err
    assert "normalisation" in err and "unknown key" in err and "normalization" in err
    path.write_text("preset: [gcpo\n")
    assert main(["train", str(path), "--check"]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    assert main(["train", str(tmp_path / "missing.yaml"), "--check"]) == 2
    assert "missing.yaml' is neither a file nor a recipe" in capsys.readouterr().err


def test_check_valid_config_prints_plan_and_trains_nothing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: list[str]
) -> None:
    run = tmp_path / "run"
    args = ["train", "model=tiny-random", "embedder=hashing", "max_steps=7", f"output_dir={run}"]
    assert main([*args, "--check"]) == 0
    out = capsys.readouterr().out
    assert "config and data are valid" in out
    assert "arithmetic_reward" in out and "tiny-random (built in)" in out
    assert main([*args, "--check", "--json"]) == 0
    plan = json.loads(capsys.readouterr().out)
    assert plan["steps"] == 7 and plan["skipped_rows"] == 0 and plan["run_dir"] == str(run)
    # KEY=VALUE alone changes the quickstart, as flags do
    from gcpo.train.config import QUICKSTART, load_train_config

    quickstart = load_train_config(QUICKSTART)
    assert plan["completions_per_step"] == quickstart.per_device_train_batch_size
    assert plan["train_prompts"] == quickstart.num_train_prompts
    assert not run.exists()  # --check writes nothing
    assert no_model == []


def test_check_refuses_an_existing_run_and_a_missing_model_dir(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: list[str]
) -> None:
    run = tmp_path / "run"
    (run / "checkpoint-2").mkdir(parents=True)
    (run / "checkpoint-2" / "trainer_state.json").write_text("{}")
    assert main(["train", "embedder=hashing", f"output_dir={run}", "--check"]) == 2
    assert "already holds a run" in capsys.readouterr().err
    missing = tmp_path / "no_such_model"
    assert main(["train", f"model={missing}", "embedder=hashing", "--check"]) == 2
    assert "does not exist" in capsys.readouterr().err


def test_check_catches_a_reward_with_the_wrong_signature(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    no_model: list[str],
) -> None:
    module = tmp_path / "my_rewards_for_check.py"
    module.write_text("def reward(completions):\n    return [1.0] * len(completions)\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    rc = main(["train", "embedder=hashing", "reward=my_rewards_for_check:reward", "--check"])
    err = capsys.readouterr().err
    assert rc == 2
    assert "reward error: reward function 'reward': raised TypeError" in err


def test_resume_rejects_check_and_new_settings(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--resume", str(tmp_path), "--check"]) == 2
    assert "--resume: the run's own config.yaml is used" in capsys.readouterr().err
    assert main(["train", "--resume", str(tmp_path)]) == 2
    assert "not a gcpo run directory" in capsys.readouterr().err
    (tmp_path / "config.yaml").write_text("model: tiny-random\n")
    assert main(["train", "--resume", str(tmp_path), "learning_rate=1"]) == 2
    assert "override 'learning_rate=1' would change the run" in capsys.readouterr().err
