"""One config binding for every subcommand: a config dataclass <-> flags, YAML and ``KEY=VALUE``.

Each subcommand is a config dataclass (``TrainConfig``, ``EvalConfig``, ``SignalsConfig``,
``AnalyzeConfig``). Its :class:`Binding` derives the command line from the fields:

- a YAML config file (``--config FILE``, or ``gcpo train [CONFIG]``);
- one flag per top-level field, named after it (``max_new_tokens`` -> ``--max-new-tokens``),
  with the field's help text and default; a bool defaulting to False is a switch
  (``--skip-bad-rows``), one defaulting to True a ``--no-...`` switch (``--no-progress``); a
  nested dataclass with a shorthand field gets a flag for it (``--embedder NAME`` sets
  ``embedder.name``); mappings and the other nested fields are set as ``KEY=VALUE``;
- ``KEY=VALUE`` overrides of any field, dotted for nested ones (``weighting.alpha=0.5``);
- ``--plugin MODULE`` (repeatable): imported first, so it can register signals and task kinds.

:meth:`Binding.load` applies the layers in one order (:func:`gcpo.config.load`): file,
``--preset`` (replaces the file's preset and drops its weighting fields), overrides, flags.

A new subcommand is a module ``gcpo.cli.<name>`` (listed in ``gcpo.cli.subcommands``) with::

    HELP = "one line"

    def binding() -> Binding:
        return Binding(MyConfig)               # flags, --config, KEY=VALUE, --plugin

    def add_arguments(parser):
        binding().add_arguments(parser)        # plus any action flags of its own

    def run(args) -> int:
        config = binding().load(args)          # validated MyConfig
        ...                                    # raise ConfigError / DataError: one line, exit 2
"""

from __future__ import annotations

import argparse
import dataclasses
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gcpo.config import load
from gcpo.fields import registered_text
from gcpo.plugins import load_plugins

__all__ = ["Binding"]

_DEST = "cfg__"  # argparse dest prefix of the flags a binding adds


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-").replace(".", "-")


def _default_text(f: dataclasses.Field[Any]) -> str:
    if f.default is not dataclasses.MISSING:
        value = f.default
    elif f.default_factory is not dataclasses.MISSING:
        value = f.default_factory()
    else:
        return "required"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value)) or "none"
    return str(value)


@dataclass(frozen=True)
class Binding:
    """The command line of one subcommand, derived from config dataclass ``cls``.

    Args:
        cls: the config dataclass.
        positional_config: the YAML file is the first positional argument (``gcpo train
            [CONFIG]``) instead of ``--config FILE``.
        aliases: field -> more option strings for its flag (``{"input": ("-i",)}``).
        extra_flags: flag -> dotted path of a nested field (``{"--device": "embedder.device"}``).
        exclusive: groups of fields whose flags exclude each other.
    """

    cls: type
    positional_config: bool = False
    aliases: Mapping[str, Sequence[str]] = field(default_factory=dict)
    extra_flags: Mapping[str, str] = field(default_factory=dict)
    exclusive: Sequence[Sequence[str]] = ()

    # ------------------------------------------------------------------------ argparse side

    def _flags(self) -> list[tuple[str, str, str, dataclasses.Field[Any] | None, Any]]:
        """(flag, dest, dotted path, field, type) for every flag this binding adds."""
        out: list[tuple[str, str, str, dataclasses.Field[Any] | None, Any]] = []
        hints = typing.get_type_hints(self.cls)
        for f in dataclasses.fields(self.cls):
            tp = hints.get(f.name, Any)
            nested = tp if dataclasses.is_dataclass(tp) and isinstance(tp, type) else None
            if nested is not None:
                shorthand = getattr(nested, "config_shorthand", None)
                if shorthand:
                    out.append((_flag(f.name), _DEST + f.name, f"{f.name}.{shorthand}", f, str))
                continue
            if typing.get_origin(tp) in (dict, Mapping) or tp in (dict, Mapping):
                continue  # a mapping: KEY=VALUE only
            out.append((_flag(f.name), _DEST + f.name, f.name, f, tp))
        for flag, path in self.extra_flags.items():
            out.append((flag, _DEST + path.replace(".", "__"), path, None, str))
        return out

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        """Add the config file, one flag per field, ``--plugin`` and ``KEY=VALUE`` overrides."""
        if self.positional_config:
            parser.add_argument(
                "config",
                nargs="?",
                default=None,
                help="YAML config file (its keys are the fields below)",
            )
        else:
            parser.add_argument(
                "--config", help="YAML file of config fields (overrides and flags come after it)"
            )
        parser.add_argument(
            "--plugin",
            action="append",
            default=[],
            metavar="MODULE",
            help="import MODULE first (it may register signals, task kinds, benchmarks); "
            "repeatable. Entry points of the 'gcpo.plugins' group are always loaded",
        )
        groups: dict[str, Any] = {}
        for exclusive in self.exclusive:
            shared = parser.add_mutually_exclusive_group()
            for name in exclusive:
                groups[name] = shared
        for flag, dest, path, f, tp in self._flags():
            target = groups.get(path, parser)
            names = [flag, *self.aliases.get(path, ())]
            if f is None:  # an extra flag for a nested field
                nested = self._nested_field(path)
                text = f"{nested.metadata.get('help', path)}{registered_text(nested)} (sets {path}; "
                text += "default: "
                text += f"{_default_text(nested)})"
                metavar = path.rsplit(".", 1)[-1].upper()
                target.add_argument(
                    *names, dest=dest, default=None, metavar=metavar, help=_escape(text)
                )
                continue
            text = f.metadata.get("help", f.name)
            if tp is bool:
                if f.default is True:
                    names = [_flag("no_" + f.name), *self.aliases.get(path, ())]
                    # the field's help says what it does when on; the flag does the opposite
                    text = f"turn off: {text} (on by default)"
                target.add_argument(*names, dest=dest, action="store_true", help=_escape(text))
                continue
            if path != f.name:  # the shorthand of a nested dataclass
                nested = self._nested_field(path)
                text = f"{nested.metadata.get('help', path)} (sets {path})"
                default = _default_text(nested)
            else:
                default = _default_text(f)
                if "choices" in f.metadata:
                    text += f"; one of {', '.join(map(str, f.metadata['choices']))}"
                text += registered_text(f)
                if f.name == "preset":
                    text += "; replaces the config file's preset and drops its weighting fields"
            metavar = path.rsplit(".", 1)[-1].upper()
            if not (default == "None" and "default" in text):  # the help says it in words
                text = f"{text} (default: {default})"
            target.add_argument(
                *names, dest=dest, default=None, metavar=metavar, help=_escape(text)
            )
        parser.add_argument(
            "overrides",
            nargs="*",
            metavar="KEY=VALUE",
            help="config field overrides, any field, dotted for nested ones (value parsed as YAML)",
        )

    def _nested_field(self, path: str) -> dataclasses.Field[Any]:
        cls: Any = self.cls
        *parents, leaf = path.split(".")
        for name in parents:
            cls = typing.get_type_hints(cls)[name]
        return {f.name: f for f in dataclasses.fields(cls)}[leaf]

    # ------------------------------------------------------------------------ config side

    def config_path(self, args: argparse.Namespace) -> str | None:
        """The YAML file named on the command line (None when there is none)."""
        path = getattr(args, "config", None)
        if path is not None and "=" in path and self.positional_config:
            return None  # `gcpo train key=value`: the first override, not a file
        return path

    def overrides(self, args: argparse.Namespace) -> list[str]:
        """The ``KEY=VALUE`` overrides, in command-line order."""
        items = list(getattr(args, "overrides", []) or [])
        path = getattr(args, "config", None)
        if self.positional_config and path is not None and "=" in path:
            items.insert(0, path)
        return items

    def flag_values(self, args: argparse.Namespace) -> dict[str, Any]:
        """Dotted path -> value of every flag given on the command line."""
        values: dict[str, Any] = {}
        for _, dest, path, f, tp in self._flags():
            value = getattr(args, dest, None)
            if tp is bool and f is not None:
                if value:
                    values[path] = f.default is not True
                continue
            if value is not None:
                values[path] = value
        return values

    def load(self, args: argparse.Namespace, path: str | Path | None = None) -> Any:
        """The validated config: file (``path`` or the one named), ``--preset``, overrides,
        flags. Imports the ``--plugin`` modules first."""
        load_plugins(getattr(args, "plugin", []) or [])
        values = self.flag_values(args)
        preset = values.pop("preset", None)
        file = path if path is not None else self.config_path(args)
        return load(self.cls, file, self.overrides(args), preset=preset, values=values)


def _escape(text: str) -> str:
    return text.replace("%", "%%")  # argparse formats help with %
