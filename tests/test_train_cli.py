"""``gcpo train``: config validation, run directory contents, resume, user rewards and data."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from gcpo.cli import main
from gcpo.fields import ConfigError
from gcpo.rundir import last_checkpoint
from gcpo.train.config import QUICKSTART, RECIPES_DIR, TrainConfig, load_train_config
from gcpo.train.run import resume_training, run_training

TINY = [
    "model=tiny-random",
    "embedder=hashing",
    "num_train_prompts=16",
    "num_eval_prompts=4",
    "per_device_train_batch_size=4",
    "num_generations=2",
    "max_completion_length=4",
    "eval_max_new_tokens=4",
]


def test_quickstart_is_the_default_and_valid() -> None:
    c = load_train_config(QUICKSTART)
    assert c.model == "smollm2-135m-instruct"
    assert c.preset == "gcpo" and c.weighting.signal == "cosine_dispersion"
    assert c.task == "graded-arithmetic"
    assert c.embedder.name == "all-MiniLM-L6-v2"
    # several prompt groups per step, so the weights can differ from GRPO's (issue 9)
    assert c.per_device_train_batch_size // c.num_generations >= 4


@pytest.mark.parametrize("path", sorted(RECIPES_DIR.glob("*.yaml")), ids=lambda p: p.name)
def test_recipes_load(path: Path) -> None:
    c = load_train_config(path)
    assert c.dataset and c.model.startswith("Qwen/")
    assert c.trl.get("use_vllm") is True


def test_preset_replaces_weighting_and_overrides_apply(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"preset": "gcpo", "weighting": {"alpha": 0.5}}))
    assert load_train_config(f).weighting.alpha == 0.5
    assert load_train_config(f).weighting.signal == "cosine_dispersion"
    grpo = load_train_config(f, preset_name="grpo")
    assert grpo.weighting.signal == "none"
    bot = load_train_config(f, ["preset=gcpo-bot", "weighting.w_min=0.2", "max_steps=7"])
    assert bot.weighting.signal == "barycentric_transport"
    assert bot.weighting.alpha == 0.5 and bot.weighting.w_min == 0.2 and bot.max_steps == 7


@pytest.mark.parametrize(
    "overrides, match",
    [
        (["num_generations=1"], "num_generations"),
        (["preset=ppo"], "preset"),
        (["task=chess"], "task"),
        (["learning_rate=fast"], "learning_rate"),
        (["weighting.modulation=cubic"], "weighting.modulation"),
        (["nonsense=1"], "nonsense"),
        (["reward=bogus"], "reward"),
        (["trl.max_steps=3"], "trl.max_steps"),
    ],
)
def test_bad_config_is_rejected_before_loading_anything(overrides: list[str], match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        load_train_config(QUICKSTART, overrides)


def test_cli_help_lists_every_field(capsys: pytest.CaptureFixture[str]) -> None:
    import dataclasses

    with pytest.raises(SystemExit):
        main(["train", "--help"])
    out = capsys.readouterr().out
    for f in dataclasses.fields(TrainConfig):
        if f.name not in ("weighting", "embedder", "gradients"):  # nested: listed field by field
            assert f"  {f.name} (" in out, f.name
    assert "weighting.alpha (" in out and "embedder.batch_size (" in out
    assert "gradients.project_dim (" in out and "monitor_every (" in out


def test_cli_config_error_exit_code(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rc = main(["train", "num_generations=0", "--output", str(tmp_path / "r")])
    assert rc == 2
    assert "num_generations" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # rejected before a run directory was made


@pytest.mark.slow
def test_train_run_directory_and_resume(tmp_path: Path) -> None:
    run = tmp_path / "run"
    rc = main(["train", "--output", str(run), "max_steps=2", "save_steps=1", *TINY, "--json"])
    assert rc == 0
    for name in (
        "config.yaml",
        "metrics.jsonl",
        "metrics.png",
        "summary.json",
        "final/config.json",
    ):
        assert (run / name).is_file(), name
    assert any((run / "tensorboard").glob("events.out.tfevents.*"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["steps"] == 2 and summary["heldout_prompts"] == 4
    assert 0.0 <= summary["heldout_reward_before"] <= 1.0
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "gcpo/active_groups" in r]
    assert steps == [1, 2]
    # the resolved config reproduces the run
    assert load_train_config(run / "config.yaml").output_dir == str(run)

    # a second fresh run into the same directory is refused
    with pytest.raises(ConfigError, match="--resume"):
        run_training(load_train_config(run / "config.yaml"), run_dir=run)

    state2 = json.loads((run / "checkpoint-2" / "gcpo_state.json").read_text())["rank_state"]
    summary = resume_training(run, ["max_steps=3"])
    assert summary["steps"] == 3
    assert summary["resumed_from"].endswith("checkpoint-2")
    assert last_checkpoint(run).name == "checkpoint-3"
    state3 = json.loads((run / "checkpoint-3" / "gcpo_state.json").read_text())["rank_state"]
    # the rank window was restored and continued, not restarted
    assert state3["values"][: len(state2["values"])] == state2["values"]
    assert len(state3["values"]) == len(state2["values"]) + 2
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "gcpo/active_groups" in r] == [1, 2, 3]
    # held-out "before" is kept from the first session
    assert json.loads((run / "summary.json").read_text())["heldout_reward_before"] == pytest.approx(
        summary["heldout_reward_before"]
    )


def test_resume_refuses_run_changing_overrides(tmp_path: Path) -> None:
    (tmp_path / "config.yaml").write_text("model: tiny-random\n")
    with pytest.raises(ConfigError, match="would change the run"):
        resume_training(tmp_path, ["learning_rate=1"])
    with pytest.raises(ConfigError, match="no complete checkpoint"):
        resume_training(tmp_path, [])
    with pytest.raises(ConfigError, match="missing' does not exist"):
        resume_training(tmp_path / "missing", [])
    (tmp_path / "empty").mkdir()
    with pytest.raises(ConfigError, match="not a gcpo run directory"):
        resume_training(tmp_path / "empty", [])


USER_REWARD = """
def my_reward(prompts, completions, answer, **kwargs):
    return [0.25 * (i % 2) for i, _ in enumerate(completions)]
"""


@pytest.mark.slow
def test_user_reward_and_jsonl_dataset(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "myrewards.py").write_text(USER_REWARD)
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / "data.jsonl"
    data.write_text(
        "".join(json.dumps({"question": f"Say {i}.", "answer": str(i)}) + "\n" for i in range(12))
    )
    summary = run_training(
        load_train_config(
            None,
            [
                *TINY,
                f"dataset={data}",
                "prompt_field=question",
                "reward=myrewards:my_reward",
                "max_steps=1",
                "save_final=false",
                "plot=false",
                "num_eval_prompts=2",
                f"output_dir={tmp_path / 'r'}",
            ],
        )
    )
    assert summary["heldout_reward_before"] == pytest.approx(0.125)  # 2 prompts: 0 and 0.25
    assert summary["task"] == str(data)
    rows = [json.loads(x) for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["rewards/my_reward/mean"] == pytest.approx(0.125)
    assert not (tmp_path / "r" / "final").exists()


def test_hub_dataset_with_the_hub_unreachable_fails_at_once(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    def forbidden(*args, **kwargs):
        raise AssertionError("datasets.load_dataset would retry for ~25 s")

    monkeypatch.setattr(datasets, "load_dataset", forbidden)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("HF_DATASETS_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    assert main(["train", "dataset=some-org/some-data", "embedder=hashing", "--check"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "dataset 'some-org/some-data': not a local file" in err and "unreachable" in err


def test_weight_summary_says_when_too_few_groups_were_active() -> None:
    from gcpo.metrics import weight_summary

    rows = [
        {"step": s, "gcpo/active_groups": a, "gcpo/weight_mean": 1.0, "gcpo/weight_min": lo,
         "gcpo/weight_max": hi, "gcpo/weight_std": sd}
        for s, a, lo, hi, sd in [(1, 1.0, 1.0, 1.0, 0.0), (2, 0.0, None, None, None),
                                 (3, 3.0, 0.9, 1.1, 0.08)]
    ]  # fmt: skip
    for r in rows:  # a step with no active group logs no weights
        if r["gcpo/active_groups"] == 0:
            for k in ("gcpo/weight_mean", "gcpo/weight_min", "gcpo/weight_max", "gcpo/weight_std"):
                del r[k]
    s = weight_summary(rows)
    assert s["few_active_groups"] is True  # 2 of 3 steps had fewer than 2 active groups
    assert s["min_weight"] == 0.9 and s["max_weight"] == 1.1
    assert s["weight_spread"] == pytest.approx(0.04)
    assert s["mean_active_groups"] == pytest.approx(4 / 3)
    rows[0]["gcpo/active_groups"] = 4.0
    assert weight_summary(rows)["few_active_groups"] is False


def test_summary_prints_the_fix_when_few_groups_were_active(capsys: pytest.CaptureFixture) -> None:
    from gcpo.cli.train import _print_summary

    summary = {
        "preset": "gcpo", "task": "arithmetic", "model": "m", "steps": 3, "heldout_prompts": 2,
        "heldout_reward_before": 0.1, "heldout_reward_after": 0.2, "mean_weight": 1.0,
        "min_weight": 1.0, "max_weight": 1.0, "weight_spread": 0.0, "mean_active_groups": 0.7,
        "few_active_groups": True, "train_reward_first": 0.0, "train_reward_last": 0.5,
        "run_dir": "r",
    }  # fmt: skip
    _print_summary(summary)
    out = capsys.readouterr().out
    assert "fewer than 2 groups had reward dispersion in most steps" in out
    assert "more prompts per step" in out
    _print_summary({**summary, "few_active_groups": False})
    assert "fewer than 2 groups" not in capsys.readouterr().out


# -- issue 18: one spelling, one experiment; the nits a new user meets -----------------------------


def test_key_value_alone_changes_the_quickstart_as_the_flag_does(
    capsys: pytest.CaptureFixture[str],
) -> None:
    import json

    from gcpo.cli import main

    def check(*argv: str) -> dict:
        assert main(["train", *argv, "--check", "--json"]) == 0
        report = json.loads(capsys.readouterr().out)
        report.pop("run_dir")  # holds the time
        return report

    flag, override = check("--max-steps", "1"), check("max_steps=1")
    assert flag == override
    assert override["steps"] == 1 and "graded-arithmetic" in override["data"]  # the quickstart's


def test_misspelt_key_gets_a_did_you_mean(capsys: pytest.CaptureFixture[str]) -> None:
    from gcpo.cli import main

    assert main(["train", "max_step=1", "--check"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1 and "max_step: unknown key for TrainConfig (did you mean max_steps?)" in err


def test_resume_of_a_missing_directory_says_it_does_not_exist(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from gcpo.cli import main

    assert main(["train", "--resume", str(tmp_path / "nope")]) == 2
    assert capsys.readouterr().err.strip() == (
        f"gcpo train: configuration error: --resume: '{tmp_path / 'nope'}' does not exist"
    )


def test_check_prints_no_trl_future_warnings(tmp_path: Path) -> None:
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-W", "default", "-m", "gcpo", "train", "--check"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "FutureWarning" not in proc.stderr and "Warning" not in proc.stderr, proc.stderr
