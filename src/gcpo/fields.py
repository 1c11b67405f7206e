"""Typed config fields: dataclass fields with help, choices and ranges, checked and converted.

Every configurable object in gcpo is a dataclass whose fields carry
``metadata={"help": ..., "choices": [...], "min": x, "max": y}`` (TRL ``GRPOConfig`` style), made
with :func:`field`. The help text feeds the CLI, :func:`validate` feeds every entry point, and
:func:`from_dict` / :func:`to_dict` map a dataclass onto plain data (nested dataclasses onto
nested mappings). Standard library only -- no YAML, no files -- so the core
(:mod:`gcpo.weighting`) can declare its config with it; reading YAML files and ``KEY=VALUE``
overrides is :mod:`gcpo.config`, above it.

Validation raises :class:`ConfigError`, a ``ValueError`` whose message names the field, the
value found and what is allowed.

A config dataclass may also declare, as ``ClassVar`` attributes read by :func:`from_dict`:

- ``config_aliases: dict[str, str]`` -- more keys accepted in YAML and overrides, each mapped to a
  dotted field path (old names, shorthands: ``embedder_batch_size`` -> ``embedder.batch_size``);
- ``config_shorthand: str`` (on a nested dataclass) -- the field a plain value sets when given for
  the whole dataclass (``embedder: hashing`` means ``embedder: {name: hashing}``);
- ``config_prepare: Callable[[type, dict], None]`` -- called as ``config_prepare(cls, data)`` on
  the raw mapping (aliases rewritten) before its values are converted, to edit it in place
  (:func:`gcpo.config.merge_preset` sets the weighting to the named preset's fields updated
  with the given ones).
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import math
import types
import typing
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

T = TypeVar("T")

__all__ = [
    "ConfigError",
    "field",
    "coerce",
    "validate",
    "from_dict",
    "to_dict",
    "tagged_fields",
    "normalize_keys",
    "rewrite_key",
    "set_path",
    "help_lines",
    "registered_text",
]


class ConfigError(ValueError):
    """A configuration value is missing, unknown, of the wrong type or out of range."""


def field(
    default: Any = dataclasses.MISSING,
    *,
    help: str,
    choices: Sequence[Any] | None = None,
    min: float | None = None,
    max: float | None = None,
    default_factory: Any = dataclasses.MISSING,
    tags: Sequence[str] = (),
    names: Callable[[], Sequence[str]] | None = None,
) -> Any:
    """A dataclass field with help text and optional allowed values / numeric range.

    ``tags`` mark fields for a consumer (see :func:`tagged_fields`), e.g. the train config's
    fields that are passed to TRL's ``GRPOConfig`` under the same name. ``names`` returns the
    names a registry holds now (signals, presets, plugins included): ``--help`` lists them
    when it is printed, instead of a copy in the help text that drifts.
    """
    meta: dict[str, Any] = {"help": help}
    if names is not None:
        meta["names"] = names
    if tags:
        meta["tags"] = tuple(tags)
    if choices is not None:
        meta["choices"] = tuple(choices)
    if min is not None:
        meta["min"] = min
    if max is not None:
        meta["max"] = max
    if default_factory is not dataclasses.MISSING:
        return dataclasses.field(default_factory=default_factory, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def tagged_fields(cls: type, tag: str) -> tuple[str, ...]:
    """Names of the fields of dataclass ``cls`` declared with ``tags`` containing ``tag``."""
    return tuple(f.name for f in dataclasses.fields(cls) if tag in f.metadata.get("tags", ()))


def _type_name(tp: Any) -> str:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        return " | ".join(_type_name(a) for a in typing.get_args(tp))
    if tp is type(None):
        return "null"
    if origin is not None:
        args = ", ".join(_type_name(a) for a in typing.get_args(tp))
        return f"{getattr(origin, '__name__', str(origin))}[{args}]"
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, where: str) -> Any:
    """Convert ``value`` to type ``tp`` or raise ConfigError naming ``where``."""
    origin = typing.get_origin(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {_type_name(tp)}, got {value!r}")
    if origin is typing.Literal:
        allowed = typing.get_args(tp)
        if value not in allowed:
            raise ConfigError(f"{where}: got {value!r}, allowed: {', '.join(map(repr, allowed))}")
        return value
    if origin in (list, tuple, Sequence):
        if isinstance(value, str) and origin is not str:
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (inner,) = typing.get_args(tp)[:1] or (Any,)
        items = [_coerce(v, inner, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin in (dict, Mapping):
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return dict(value)
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        if dataclasses.is_dataclass(value) and isinstance(value, tp):
            return value
        shorthand = getattr(tp, "config_shorthand", None)
        if shorthand and isinstance(value, str):
            value = {shorthand: value}
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping of {tp.__name__} fields, got {value!r}")
        return from_dict(tp, value, prefix=f"{where}.")
    if tp is bool:
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "1", "0"):
            return value.lower() in ("true", "yes", "1")
        raise ConfigError(f"{where}: expected true/false, got {value!r}")
    if tp is int:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected an integer, got {value!r}")
        if isinstance(value, int):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                pass
        raise ConfigError(f"{where}: expected an integer, got {value!r}")
    if tp is float:
        if isinstance(value, bool):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if isinstance(value, (int, float)):
            out = float(value)
        elif isinstance(value, str):
            try:
                out = float(value)
            except ValueError:
                raise ConfigError(f"{where}: expected a number, got {value!r}") from None
        else:
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if math.isnan(out):
            raise ConfigError(f"{where}: got NaN, expected a number")
        return out
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {value!r}")
    if isinstance(tp, type) and not isinstance(value, tp):
        raise ConfigError(f"{where}: expected {tp.__name__}, got {value!r}")
    return value


def coerce(value: Any, tp: Any, where: str) -> Any:
    """``value`` converted to type ``tp`` (a mapping or a shorthand string becomes a nested
    dataclass), or a ConfigError naming ``where``. For ``__post_init__`` of configs that are
    also built in Python."""
    return _coerce(value, tp, where)


def _check_meta(f: dataclasses.Field[Any], value: Any, where: str) -> None:
    meta = f.metadata
    choices = meta.get("choices")
    if choices is not None and value is not None:
        values = value if isinstance(value, (list, tuple)) else [value]
        for v in values:
            if v not in choices:
                raise ConfigError(f"{where}: got {v!r}, allowed: {', '.join(map(str, choices))}")
    lo, hi = meta.get("min"), meta.get("max")
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if lo is not None and value < lo:
            raise ConfigError(f"{where}: got {value!r}, must be >= {lo}")
        if hi is not None and value > hi:
            raise ConfigError(f"{where}: got {value!r}, must be <= {hi}")


def validate(obj: Any, prefix: str = "") -> None:
    """Check every field of a dataclass instance against its type and metadata (recursively).

    Dataclasses may add cross-field checks in a ``__post_init__`` that raises ConfigError.
    """
    hints = typing.get_type_hints(type(obj))
    for f in dataclasses.fields(obj):
        where = f"{prefix}{f.name}"
        value = getattr(obj, f.name)
        coerced = _coerce(value, hints.get(f.name, Any), where)
        if coerced is not value:
            object.__setattr__(obj, f.name, coerced)
        _check_meta(f, coerced, where)
        if dataclasses.is_dataclass(coerced) and not isinstance(coerced, type):
            validate(coerced, prefix=f"{where}.")


def _dataclass_type(tp: Any) -> type | None:
    """``tp`` (or the dataclass inside ``X | None``) if it is a dataclass type, else None."""
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        tp = inner[0] if len(inner) == 1 else None
    return tp if dataclasses.is_dataclass(tp) and isinstance(tp, type) else None


def rewrite_key(cls: type, key: str, value: Any) -> str:
    """The dotted path a raw key of ``cls`` stands for (aliases, shorthands), else ``key``."""
    head, dot, rest = key.partition(".")
    aliases: Mapping[str, str] = getattr(cls, "config_aliases", {})
    if head in aliases:
        return aliases[head] + dot + rest
    if not dot:
        hints = typing.get_type_hints(cls)
        nested = _dataclass_type(hints.get(key)) if key in hints else None
        shorthand = getattr(nested, "config_shorthand", None)
        if shorthand and not isinstance(value, Mapping) and not dataclasses.is_dataclass(value):
            return f"{key}.{shorthand}"
    return key


def normalize_keys(cls: type, data: Mapping[str, Any]) -> dict[str, Any]:
    """``data`` with the aliases and shorthands of ``cls`` rewritten to field paths (a copy)."""
    out: dict[str, Any] = {}
    plain = [(k, v) for k, v in data.items() if rewrite_key(cls, str(k), v) == k]
    moved = [(k, v) for k, v in data.items() if rewrite_key(cls, str(k), v) != k]
    for key, value in plain:
        out[key] = copy.deepcopy(value)
    for key, value in moved:  # after the plain keys, so they merge into a nested mapping
        set_path(out, rewrite_key(cls, str(key), value), copy.deepcopy(value))
    return out


def from_dict(cls: type[T], data: Mapping[str, Any], prefix: str = "") -> T:
    """Build dataclass ``cls`` from a mapping; unknown keys and bad values raise ConfigError."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{prefix or cls.__name__}: expected a mapping, got {data!r}")
    assert dataclasses.is_dataclass(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    data = normalize_keys(cls, data)
    unknown = [k for k in data if k not in fields]
    if unknown:
        close = difflib.get_close_matches(str(unknown[0]), list(fields), n=1)
        guess = f" (did you mean {prefix}{close[0]}?)" if close else ""
        raise ConfigError(
            f"{prefix}{unknown[0]}: unknown key for {cls.__name__}{guess}; "
            f"allowed keys: {', '.join(sorted(fields))}"
        )
    prepare = getattr(cls, "config_prepare", None)
    if prepare is not None:
        prepare(cls, data)
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        coerced = _coerce(value, hints.get(key, Any), where)
        _check_meta(fields[key], coerced, where)
        kwargs[key] = coerced
    try:
        obj = cls(**kwargs)
    except TypeError as exc:  # a required field is missing
        raise ConfigError(f"{prefix or cls.__name__}: {exc}") from None
    return obj


def to_dict(obj: Any) -> dict[str, Any]:
    """Plain-data (YAML-safe) dict of a dataclass instance."""

    def conv(v: Any) -> Any:
        if dataclasses.is_dataclass(v) and not isinstance(v, type):
            return {f.name: conv(getattr(v, f.name)) for f in dataclasses.fields(v)}
        if isinstance(v, (list, tuple)):
            return [conv(x) for x in v]
        if isinstance(v, dict):
            return {k: conv(x) for k, x in v.items()}
        if isinstance(v, Path):
            return str(v)
        return v

    return conv(obj)


def set_path(data: dict[str, Any], dotted: str, value: Any) -> None:
    """Set ``data[a][b][c] = value`` for ``dotted = "a.b.c"``, making (or replacing by) dicts on
    the way."""
    keys = dotted.split(".")
    node = data
    for k in keys[:-1]:
        child = node.get(k)
        if not isinstance(child, dict):
            child = {}
            node[k] = child
        node = child
    node[keys[-1]] = value


def registered_text(f: dataclasses.Field[Any]) -> str:
    """``; registered: a, b`` for a field whose values come from a registry (``names``): what it
    holds when the help is built, plugins included; else ''."""
    names = f.metadata.get("names")
    return f"; registered: {', '.join(names())}" if names else ""


def help_lines(cls: type, prefix: str = "") -> list[str]:
    """``name (type, default): help`` for every field, recursing into nested dataclasses."""
    lines = []
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        tp = hints.get(f.name, Any)
        nested = _dataclass_type(tp)
        if nested is not None:
            lines.extend(help_lines(nested, prefix=f"{prefix}{f.name}."))
            continue
        if f.default is not dataclasses.MISSING:
            default = repr(f.default)
        elif f.default_factory is not dataclasses.MISSING:
            default = repr(f.default_factory())
        else:
            default = "required"
        extra = ""
        if "choices" in f.metadata:
            extra = f"; one of {', '.join(map(str, f.metadata['choices']))}"
        else:
            extra = registered_text(f)
        lines.append(
            f"{prefix}{f.name} ({_type_name(tp)}, default {default}): "
            f"{f.metadata.get('help', '')}{extra}"
        )
    return lines
