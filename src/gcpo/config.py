"""Config files: YAML <-> typed dataclasses, ``key=value`` overrides.

The typed fields themselves (help, choices, ranges, validation, ``from_dict`` / ``to_dict``) are
:mod:`gcpo.fields`, free of YAML and files so the core can use them. This module adds what reads
and writes files: a YAML file maps one-to-one onto a config dataclass's fields (torchtune
style), ``KEY=VALUE`` overrides are parsed as YAML. (A config with a ``preset`` name and a
``weighting`` field gets the named preset's weighting from :func:`gcpo.presets.merge_preset`,
its ``config_prepare`` hook.)

:func:`load` builds a config from its layers in one order for every entry point: YAML file,
``preset`` (a command-line ``--preset``), ``KEY=VALUE`` overrides, then typed values (flags).
Errors are :class:`gcpo.fields.ConfigError`.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

import yaml

from gcpo.fields import ConfigError, from_dict, normalize_keys, rewrite_key, set_path, to_dict

T = TypeVar("T")

__all__ = [
    "load",
    "read_yaml",
    "apply_overrides",
    "dump_yaml",
]


def apply_overrides(
    data: dict[str, Any], overrides: Sequence[str], cls: type | None = None
) -> dict[str, Any]:
    """Apply ``a.b=value`` overrides (value parsed as YAML) to a nested dict, returning a copy.

    With ``cls``, keys are first rewritten by its aliases and shorthands (``embedder=hashing``
    sets ``embedder.name``, keeping the other embedder fields).
    """
    out = copy.deepcopy(data)
    for item in overrides:
        if "=" not in item:
            raise ConfigError(f"override {item!r}: expected KEY=VALUE (e.g. weighting.alpha=0.5)")
        key, raw = item.split("=", 1)
        key = key.strip().lstrip("-").replace("-", "_")
        if not key:
            raise ConfigError(f"override {item!r}: empty key")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        set_path(out, rewrite_key(cls, key, value) if cls is not None else key, value)
    return out


def read_yaml(path: str | Path) -> dict[str, Any]:
    """The top-level mapping of a YAML config file ({} for an empty file)."""
    p = Path(path)
    if not p.is_file():
        raise ConfigError(f"config file {str(p)!r} does not exist")
    try:
        loaded = yaml.safe_load(p.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"config file {str(p)!r}: top level must be a mapping")
    return loaded


def load(
    cls: type[T],
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    preset: str | None = None,
    values: Mapping[str, Any] | None = None,
) -> T:
    """Build ``cls`` from its layers, each over the one before:

    1. the YAML file ``path`` (defaults when None);
    2. ``preset``: replaces the file's preset *and drops the file's weighting fields*, so that
       ``--preset grpo`` really means GRPO (a ``preset=NAME`` override keeps them);
    3. ``overrides``: ``KEY=VALUE`` strings, values parsed as YAML;
    4. ``values``: dotted path -> value, converted by the field's type (command-line flags; a
       string stays a string, so a regex is not parsed as YAML).
    """
    data = normalize_keys(cls, read_yaml(path)) if path is not None else {}
    if preset is not None:
        data.pop("weighting", None)
        data["preset"] = preset
    data = apply_overrides(data, overrides, cls)
    for key, value in (values or {}).items():
        set_path(data, rewrite_key(cls, key, value), value)
    return from_dict(cls, data)


def dump_yaml(obj: Any) -> str:
    return yaml.safe_dump(to_dict(obj), sort_keys=False, allow_unicode=True)
