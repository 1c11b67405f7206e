"""Named weighting presets: the YAML files in ``gcpo/configs/presets``, read into WeightingConfigs.

The preset files are the single source of what each method means (docs/design.md, section 4).
:func:`preset` is the one place a preset name becomes a
:class:`~gcpo.weighting.WeightingConfig`: the name is checked, the file read (once per process)
and any field overrides merged, for every entry point (``gcpo train`` / ``signals`` /
``compare`` / ``analyze``, :class:`~gcpo.train.config.TrainConfig`,
:class:`~gcpo.trl.GCPOTrainer`, the verl step). This module sits above the pure core:
:mod:`gcpo.weighting` never reads a file.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from gcpo.config import read_yaml
from gcpo.fields import ConfigError, from_dict
from gcpo.weighting import WeightingConfig

__all__ = ["PRESET_DIR", "available_presets", "check_preset", "merge_preset", "preset"]

PRESET_DIR = Path(__file__).resolve().parent / "configs" / "presets"


@functools.cache
def _names() -> tuple[str, ...]:
    return tuple(sorted(p.stem for p in PRESET_DIR.glob("*.yaml")))


@functools.cache
def _values(name: str) -> tuple[tuple[str, Any], ...]:
    return tuple(read_yaml(PRESET_DIR / f"{name}.yaml").items())


def available_presets() -> list[str]:
    """Names of the preset YAML files shipped in ``gcpo/configs/presets``."""
    return list(_names())


def check_preset(name: Any, where: str = "preset") -> str:
    """``name`` if it is a preset, else a :class:`ConfigError` naming ``where`` and the choices."""
    if not isinstance(name, str) or name not in _names():
        raise ConfigError(f"{where}: got {name!r}, allowed: {', '.join(_names())}")
    return name


def preset(
    name: str,
    overrides: Mapping[str, Any] | WeightingConfig | None = None,
    *,
    where: str = "weighting.",
) -> WeightingConfig:
    """Preset ``name`` as a :class:`WeightingConfig`, its fields updated with ``overrides``: a
    mapping (``preset("gcpo", {"alpha": 0.5})``), None, or a WeightingConfig (returned as it
    is). ``where`` prefixes field names in errors (``trainer.v1.gcpo.weighting.`` under verl)."""
    check_preset(name)
    if isinstance(overrides, WeightingConfig):
        return overrides
    if overrides is None:
        overrides = {}
    if not isinstance(overrides, Mapping):
        raise ConfigError(
            f"{where.rstrip('.')}: expected a mapping of WeightingConfig fields, got {overrides!r}"
        )
    try:
        return from_dict(WeightingConfig, {**dict(_values(name)), **overrides}, prefix=where)
    except ConfigError:
        raise
    except ValueError as exc:  # WeightingConfig.__post_init__ cross-field checks
        raise ConfigError(f"{where.rstrip('.')}: {exc}") from None


def merge_preset(cls: type, data: dict[str, Any]) -> None:
    """``config_prepare`` hook of a config with ``preset`` and ``weighting`` fields: replaces
    ``data["weighting"]`` by :func:`preset` of ``data["preset"]`` (else the field's default)
    with the given fields, before :func:`gcpo.fields.from_dict` converts the values."""
    defaults = {f.name: f.default for f in dataclasses.fields(cls)}
    data["weighting"] = preset(data.get("preset", defaults["preset"]), data.get("weighting"))
