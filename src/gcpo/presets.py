"""Named weighting presets: the YAML files in ``gcpo/configs/presets``, read into WeightingConfigs.

The presets (``grpo``, ``seed-grpo``, ``seed-grpo-strong``, ``gcpo``, ``gcpo-bot``) are the source
of truth for what each method means (docs/design.md, section 4). This module sits above the pure
core: :mod:`gcpo.weighting` defines :class:`~gcpo.weighting.WeightingConfig` and never reads a
file; reading the preset files is done here, with :func:`gcpo.config.load`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gcpo.config import load
from gcpo.fields import from_dict, to_dict
from gcpo.weighting import WeightingConfig

__all__ = ["PRESET_DIR", "available_presets", "preset"]

PRESET_DIR = Path(__file__).resolve().parent / "configs" / "presets"


def available_presets() -> list[str]:
    """Names of the preset YAML files shipped in ``gcpo/configs/presets``."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def preset(name: str, **overrides: Any) -> WeightingConfig:
    """The :class:`WeightingConfig` of a named preset (loaded from its YAML file), with any
    field overridden: ``preset("gcpo", signal="barycentric_transport", alpha=0.5)``."""
    names = available_presets()
    if name not in names:
        raise ValueError(f"preset: unknown name {name!r}; available: {', '.join(names)}")
    config = load(WeightingConfig, PRESET_DIR / f"{name}.yaml")
    if not overrides:
        return config
    return from_dict(WeightingConfig, {**to_dict(config), **overrides})
