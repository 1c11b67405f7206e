from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import pytest

from gcpo.config import apply_overrides, dump_yaml, load
from gcpo.fields import ConfigError, field, from_dict, help_lines, to_dict, validate


@dataclass
class Inner:
    alpha: float = field(1.0, help="strength", min=0.0)
    mode: str = field("linear", help="modulation", choices=["linear", "exp"])


@dataclass
class Outer:
    name: str = field("run", help="run name")
    steps: int = field(10, help="number of steps", min=1)
    flag: bool = field(False, help="a switch")
    tags: list[str] = field(default_factory=list, help="tags")
    kind: Literal["a", "b"] = field("a", help="a literal")
    limit: int | None = field(None, help="optional limit")
    inner: Inner = field(default_factory=Inner, help="nested")


def test_from_dict_coerces_and_nests() -> None:
    cfg = from_dict(Outer, {"steps": "5", "flag": "true", "tags": "x,y", "inner": {"alpha": 2}})
    assert cfg.steps == 5 and cfg.flag is True and cfg.tags == ["x", "y"]
    assert isinstance(cfg.inner, Inner) and cfg.inner.alpha == 2.0


@pytest.mark.parametrize(
    ("data", "match"),
    [
        ({"stepz": 1}, r"stepz: unknown key for Outer \(did you mean steps\?\); allowed keys: .*steps"),
        ({"zzz": 1}, r"zzz: unknown key for Outer; allowed keys: "),
        ({"steps": 0}, r"steps: got 0, must be >= 1"),
        ({"steps": "ten"}, r"steps: expected an integer, got 'ten'"),
        ({"steps": True}, r"steps: expected an integer"),
        ({"inner": {"alpha": -1}}, r"inner\.alpha: got -1\.0, must be >= 0"),
        ({"inner": {"mode": "cubic"}}, r"inner\.mode: got 'cubic', allowed: linear, exp"),
        ({"inner": {"alpha": float("nan")}}, r"inner\.alpha: got NaN"),
        ({"kind": "c"}, r"kind: got 'c', allowed: 'a', 'b'"),
        ({"flag": "maybe"}, r"flag: expected true/false"),
        ({"inner": 3}, r"inner: expected a mapping"),
    ],
)
def test_bad_values_name_field_value_and_allowed(data: dict, match: str) -> None:
    with pytest.raises(ConfigError, match=match):
        from_dict(Outer, data)


def test_config_error_is_value_error() -> None:
    assert issubclass(ConfigError, ValueError)


def test_overrides_parse_yaml_values_and_dotted_keys() -> None:
    data = apply_overrides({"inner": {"alpha": 1.0}}, ["inner.alpha=0.5", "limit=null", "--steps=3"])
    assert data == {"inner": {"alpha": 0.5}, "limit": None, "steps": 3}
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        apply_overrides({}, ["steps"])


def test_load_yaml_roundtrip(tmp_path) -> None:
    cfg = from_dict(Outer, {"steps": 7, "inner": {"mode": "exp"}})
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(cfg))
    again = load(Outer, path, ["name=other"])
    assert to_dict(again) == {**to_dict(cfg), "name": "other"}


def test_load_reports_missing_and_invalid_files(tmp_path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load(Outer, tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: [1,\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load(Outer, bad)
    listy = tmp_path / "list.yaml"
    listy.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load(Outer, listy)


def test_validate_catches_direct_construction() -> None:
    cfg = Outer(steps=-3)
    with pytest.raises(ConfigError, match="steps: got -3"):
        validate(cfg)


def test_help_lines_cover_every_leaf_field() -> None:
    lines = help_lines(Outer)
    names = [line.split(" ", 1)[0] for line in lines]
    assert names == ["name", "steps", "flag", "tags", "kind", "limit", "inner.alpha", "inner.mode"]
    assert any("one of linear, exp" in line for line in lines)


# -- presets: resolved in one place ---------------------------------------------------------


def test_preset_merges_overrides_and_names_bad_input() -> None:
    from gcpo.presets import available_presets, check_preset, preset
    from gcpo.weighting import WeightingConfig

    assert {"grpo", "gcpo", "gcpo-bot", "seed-grpo", "oracle"} <= set(available_presets())
    bot = preset("gcpo-bot", {"alpha": 0.5})
    assert (bot.signal, bot.alpha) == ("barycentric_transport", 0.5)
    given = WeightingConfig(signal="semantic_entropy")
    assert preset("gcpo", given) is given  # a config given whole replaces the preset
    with pytest.raises(ConfigError, match="preset: got 'gpro', allowed: .*grpo"):
        preset("gpro")
    with pytest.raises(ConfigError, match="trainer.v1.gcpo.preset: got 'x'"):
        check_preset("x", "trainer.v1.gcpo.preset")
    with pytest.raises(ConfigError, match="trainer.v1.gcpo.weighting.alpha"):
        preset("gcpo", {"alpha": -1}, where="trainer.v1.gcpo.weighting.")
    with pytest.raises(ConfigError, match="weighting: expected a mapping"):
        preset("gcpo", ["alpha"])  # type: ignore[arg-type]


def test_every_entry_point_resolves_a_preset_through_presets_preset(monkeypatch) -> None:
    import gcpo.presets as presets
    from gcpo.cli.signals import SignalsConfig
    from gcpo.train.config import TrainConfig, load_train_config
    from gcpo.verl.step import VerlGCPOConfig, weighting_for

    calls: list[str] = []
    real = presets._values.__wrapped__

    def counted(name: str):  # the uncached file read, counted
        calls.append(name)
        return real(name)

    monkeypatch.setattr(presets, "_values", counted)
    t = load_train_config(None, ["weighting.alpha=0.5"], preset_name="gcpo-bot")
    assert (t.weighting.signal, t.weighting.alpha) == ("barycentric_transport", 0.5)
    assert calls == ["gcpo-bot"]  # once: TrainConfig.__post_init__ does not resolve again
    assert TrainConfig(preset="grpo").weighting.alpha == 0.0  # built in Python
    assert load(SignalsConfig, values={"preset": "seed-grpo"}).weighting.signal == "semantic_entropy"
    w = weighting_for(VerlGCPOConfig(preset="gcpo", weighting={"alpha": 0.25}))
    assert w.alpha == 0.25
    assert calls == ["gcpo-bot", "grpo", "seed-grpo", "gcpo"]


def test_weighting_config_defaults_are_the_gcpo_preset() -> None:
    # WeightingConfig's field defaults must exist (a bare WeightingConfig(signal=...) must
    # weigh, never silently train GRPO); the gcpo preset file is what gcpo means, and the two
    # may not drift apart
    from gcpo.presets import preset
    from gcpo.weighting import WeightingConfig

    assert preset("gcpo") == WeightingConfig()


def test_help_lists_what_the_registries_hold_plugins_included(capsys) -> None:
    from gcpo.cli import main
    from gcpo.signals import SIGNALS, register_signal

    @register_signal("help_probe_signal", needs=("rewards",), bound=1.0, description="probe")
    def _probe(rewards, mask):  # pragma: no cover - never called
        return rewards.mean(1)

    try:
        with pytest.raises(SystemExit):
            main(["train", "--help"])
        out = " ".join(capsys.readouterr().out.split())
        assert "help_probe_signal" in out and "gcpo-bot" in out and "oracle" in out
    finally:
        SIGNALS.pop("help_probe_signal")


def test_help_lists_a_plugin_named_on_the_command_line(tmp_path, capsys) -> None:
    from gcpo.cli import main
    from gcpo.signals import SIGNALS

    plugin = tmp_path / "help_plugin.py"
    plugin.write_text(
        "from gcpo.signals import register_signal\n"
        "@register_signal('help_file_signal', needs=('rewards',), bound=1.0, description='x')\n"
        "def f(rewards, mask):\n    return rewards.mean(1)\n"
    )
    try:
        with pytest.raises(SystemExit):
            main(["signals", "--plugin", str(plugin), "--help"])
        assert "help_file_signal" in " ".join(capsys.readouterr().out.split())
    finally:
        SIGNALS.pop("help_file_signal", None)
