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
