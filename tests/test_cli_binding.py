"""One config binding for every subcommand: flags from the dataclass fields, a YAML file,
``KEY=VALUE`` overrides, one preset merge, one exit-code table."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import yaml

from gcpo.cli import EXIT_CODES, build_parser, main, parse_args, subcommands
from gcpo.config import dump_yaml, load
from gcpo.embedders import EmbedderConfig
from gcpo.fields import ConfigError
from gcpo.presets import preset
from gcpo.train.config import GRPO_FIELDS, TrainConfig, load_train_config
from gcpo.weighting import WeightingConfig


def _binding(command: str) -> Any:
    return subcommands()[command].binding()


def _config(argv: list[str]) -> Any:
    args = parse_args(build_parser(), argv)
    return _binding(argv[0]).load(args)


# ------------------------------------------------------------------ presets in Python


@pytest.mark.parametrize("name", ["grpo", "seed-grpo", "gcpo-bot"])
def test_a_train_config_built_in_python_gets_its_preset(name: str) -> None:
    """Regression: TrainConfig(preset="grpo") kept the gcpo weighting and trained gcpo."""
    assert TrainConfig(preset=name).weighting == preset(name)


def test_python_weighting_overrides_merge_over_the_preset() -> None:
    c = TrainConfig(preset="gcpo-bot", weighting={"alpha": 0.5})
    assert c.weighting == dataclasses.replace(preset("gcpo-bot"), alpha=0.5)
    explicit = WeightingConfig(signal="semantic_entropy", normalization="rank")
    assert TrainConfig(preset="gcpo", weighting=explicit).weighting is explicit
    with pytest.raises(ConfigError, match="preset: got 'ppo'"):
        TrainConfig(preset="ppo")
    with pytest.raises(ConfigError, match="weighting.alfa: unknown key"):
        TrainConfig(weighting={"alfa": 1})
    # the resolved config round-trips: what a run directory's config.yaml holds
    assert load(TrainConfig, None, []).weighting == preset("gcpo")


# ------------------------------------------------------------------ the embedder, nested


def test_every_embedder_field_is_settable_and_the_name_has_a_shorthand(tmp_path: Path) -> None:
    c = load_train_config(
        None, ["embedder=hashing", "embedder.batch_size=8", "embedder.device=cpu"]
    )
    assert c.embedder == EmbedderConfig(name="hashing", batch_size=8, device="cpu")
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump({"embedder": {"name": "x", "max_seq_length": 128}}))
    c = load_train_config(f, ["embedder=hashing"])  # the shorthand keeps the other fields
    assert (c.embedder.name, c.embedder.max_seq_length) == ("hashing", 128)
    assert TrainConfig(embedder="hashing").embedder.name == "hashing"
    # a config.yaml written before the embedder was nested (a run to resume) still loads
    f.write_text("model: tiny-random\nembedder: hashing\nembedder_batch_size: 8\n")
    c = load_train_config(f)
    assert (c.embedder.name, c.embedder.batch_size) == ("hashing", 8)
    assert load_train_config(f, ["embedder_batch_size=4"]).embedder.batch_size == 4
    # and flags
    c = _config(["train", "--embedder", "hashing", "--embedder-batch-size", "2", "model=m"])
    assert (c.embedder.name, c.embedder.batch_size, c.model) == ("hashing", 2, "m")
    with pytest.raises(ConfigError, match="embedder.batch_size: got 0, must be >= 1"):
        load_train_config(None, ["embedder.batch_size=0"])


# ------------------------------------------------------------------ one binding


@pytest.mark.parametrize("command", list(subcommands()))
def test_every_subcommand_derives_a_flag_from_every_field(
    command: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = capsys.readouterr().out
    cls = _binding(command).cls
    for f in dataclasses.fields(cls):
        if f.name in ("weighting", "trl", "task_options", "arms", "preset_seeds"):
            continue  # mappings / the weighting: KEY=VALUE (weighting.alpha=0.5)
        flag = "--" + ("no-" if f.default is True else "") + f.name.replace("_", "-")
        assert flag in out, (command, flag)
    assert "--plugin" in out and "KEY=VALUE" in out


@pytest.mark.parametrize(
    "command, cls_fields, file, argv, expected",
    [
        ("eval", None, {"samples": 2, "benchmarks": "hotpotqa"}, ["limit=3", "--seed", "5"],
         {"samples": 2, "benchmarks": ["hotpotqa"], "limit": 3, "seed": 5}),
        ("analyze", None, {"task": "arithmetic", "group_size": 4}, ["prompts=2", "--top-p", "0.5"],
         {"task": "arithmetic", "group_size": 4, "prompts": 2, "top_p": 0.5}),
        ("signals", None, {"preset": "gcpo-bot", "alpha": 0.5}, ["w_min=0.2", "-i", "g.jsonl"],
         {"preset": "gcpo-bot", "input": "g.jsonl"}),
    ],
)  # fmt: skip
def test_every_subcommand_takes_a_yaml_file_overrides_and_flags(
    tmp_path: Path, command: str, cls_fields: Any, file: dict, argv: list[str], expected: dict
) -> None:
    f = tmp_path / "c.yaml"
    f.write_text(yaml.safe_dump(file))
    config = _config([command, "--config", str(f), *argv])
    for key, value in expected.items():
        assert getattr(config, key) == value, key
    if command == "signals":  # bare WeightingConfig fields are the weighting's
        assert config.weighting == dataclasses.replace(preset("gcpo-bot"), alpha=0.5, w_min=0.2)


def test_flags_win_over_overrides_which_win_over_the_file(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("samples: 2\nseed: 1\nbatch_size: 3\n")
    c = _config(["eval", "--config", str(f), "seed=7", "batch_size=4", "--batch-size", "5"])
    assert (c.samples, c.seed, c.batch_size) == (2, 7, 5)
    # a regex given as a flag stays a string (it is not parsed as YAML)
    c = _config(["analyze", "--task", "arithmetic", "--params", "layers\\.[0-9]+\\.mlp"])
    assert c.params == "layers\\.[0-9]+\\.mlp"


def test_the_preset_flag_drops_the_files_weighting_in_every_subcommand(tmp_path: Path) -> None:
    f = tmp_path / "c.yaml"
    f.write_text("preset: gcpo\nweighting: {alpha: 0.5}\n")
    assert _config(["signals", "--config", str(f)]).weighting.alpha == 0.5
    assert _config(["signals", "--config", str(f), "--preset", "grpo"]).weighting == preset("grpo")
    assert _config(["train", str(f), "--preset", "grpo"]).weighting == preset("grpo")
    # ... but not the command line's own weighting overrides
    c = _config(["train", str(f), "--preset", "gcpo-bot", "weighting.w_min=0.2"])
    assert c.weighting == dataclasses.replace(preset("gcpo-bot"), w_min=0.2)


def test_plugins_are_imported_before_the_config_is_checked(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import gcpo.tasks.registry as registry

    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    (tmp_path / "my_gcpo_plugin.py").write_text(
        "from gcpo.tasks.registry import TaskKind, register_task\n"
        "register_task(TaskKind('shout', 'upper case', score=lambda c, r, **_: "
        "{'score': float(c.isupper())}, answer_key=lambda c: c))\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    data = tmp_path / "d.jsonl"
    data.write_text('{"prompt": "p", "answer": "A"}\n')
    c = _config(["train", "--plugin", "my_gcpo_plugin", f"dataset={data}", "reward=shout"])
    assert c.reward == "shout"
    assert main(["train", "--plugin", "no_such_plugin_xyz", "--check"]) == 2
    assert "--plugin no_such_plugin_xyz: cannot import it" in capsys.readouterr().err


# ------------------------------------------------------------------ GRPO knobs, listed once


def test_grpo_knobs_are_listed_once_and_reach_grpo_config(tmp_path: Path) -> None:
    from gcpo.train.run import grpo_args

    assert {"num_generations", "learning_rate", "loss_type", "seed", "save_steps"} <= set(
        GRPO_FIELDS
    )
    config = load_train_config(
        None, ["num_generations=3", "per_device_train_batch_size=6", "learning_rate=0.002"]
    )
    args = grpo_args(config, tmp_path, config.num_train_prompts)
    for name in GRPO_FIELDS:
        if name not in ("output_dir", "save_steps"):
            assert getattr(args, name) == getattr(config, name), name
    assert args.output_dir == str(tmp_path) and args.data_seed == config.seed
    for name in GRPO_FIELDS:  # each is refused under trl:, naming the top-level field
        with pytest.raises(ConfigError, match=f"trl.{name}: is a top-level field"):
            load_train_config(None, [f"trl.{name}=1"])


# ------------------------------------------------------------------ exit codes, one place


@pytest.mark.parametrize("exc, code, label", [(e("bad thing\nsecond line"), c, lab)
                                              for e, c, lab in EXIT_CODES])  # fmt: skip
def test_exit_codes_are_mapped_in_one_place(
    exc: BaseException, code: int, label: str, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:  # fmt: skip
    import gcpo.cli.eval

    def fail(args: Any) -> int:
        raise exc

    monkeypatch.setattr(gcpo.cli.eval, "run", fail)
    assert main(["eval"]) == code
    err = capsys.readouterr().err
    assert err.startswith(f"gcpo eval: {label}: bad thing second line") and err.count("\n") == 1


def test_written_train_config_reloads_identically(tmp_path: Path) -> None:
    c = load_train_config(None, ["preset=seed-grpo", "weighting.alpha=0.3", "embedder=hashing"])
    f = tmp_path / "config.yaml"
    f.write_text(dump_yaml(c))
    assert load_train_config(f) == c


def _help(command: str) -> str:
    import contextlib
    import io

    from gcpo.cli import main

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf), pytest.raises(SystemExit):
        main([command, "--help"])
    return " ".join(buf.getvalue().split())  # argparse wraps lines


@pytest.mark.parametrize("command", ["train", "eval", "signals", "analyze", "compare"])
def test_help_states_each_default_once_and_no_flag_as_its_opposite(command: str) -> None:
    import re

    text = _help(command)
    assert not re.search(r"default[^()]*\) \(default: None\)", text), command
    assert "this turns it off" not in text
    for flag in re.findall(r"(--no-[a-z-]+) ", text):
        after = text.split(flag + " ", 1)[1][:80]
        if not after.startswith("--"):  # the help text of the flag (not the usage line)
            assert after.startswith("turn off:"), (flag, after)


def test_analyze_help_lists_every_synthetic_task() -> None:
    from gcpo.tasks.synthetic import SYNTHETIC_TASKS

    text = _help("analyze")
    assert "synthetic task: " + ", ".join(SYNTHETIC_TASKS) in text
    assert "graded-arithmetic" in text


def test_unknown_signal_names_its_field_once(capsys: pytest.CaptureFixture) -> None:
    from gcpo.cli import main

    groups = Path(__file__).resolve().parents[1] / "examples" / "groups.jsonl"
    assert main(["signals", "-i", str(groups), "--signals", "nope"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gcpo signals: configuration error: signals: unknown signal 'nope'")
    assert "signals: signals:" not in err
