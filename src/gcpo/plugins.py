"""Loading user extensions: modules that register signals, tasks or weight functions.

A plugin is any importable module whose import registers something (``@register_signal``,
``register_task``, ...). The CLI loads the modules named with ``--plugin MODULE`` (or ``--plugin
path/to/file.py``) and every entry point of the ``gcpo.plugins`` group (a package declares
``[project.entry-points."gcpo.plugins"] name = "my_package.signals"``), so a signal defined
outside gcpo works by name in every subcommand. In Python, importing the module is enough.

A ``gcpo train`` run records its plugins in ``RUN/plugins.json`` (a file plugin by its absolute
path), and ``gcpo train --resume`` / ``gcpo eval --model RUN/final`` import them again.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import sys
from collections.abc import Sequence
from pathlib import Path

from gcpo.fields import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "PLUGINS_FILE", "load_plugins", "plugin_spec", "run_plugins"]

ENTRY_POINT_GROUP = "gcpo.plugins"
PLUGINS_FILE = "plugins.json"  # in a gcpo train run directory


def _is_file(name: str) -> bool:
    return name.endswith(".py") or "/" in name or "\\" in name


def plugin_spec(name: str) -> str:
    """How a plugin is recorded in a run: a file by its absolute path (the run may be resumed or
    evaluated from another directory), a module by its name."""
    return str(Path(name).expanduser().resolve()) if _is_file(name) else name


def _import_file(name: str) -> None:
    path = Path(name).expanduser().resolve()
    if not path.is_file():
        raise ConfigError(f"--plugin {name}: no such file")
    module_name = path.stem
    loaded = sys.modules.get(module_name)
    if loaded is not None and Path(getattr(loaded, "__file__", "") or "").resolve() == path:
        return  # already imported: registering its signals twice would fail
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ConfigError(f"--plugin {name}: not a Python file")
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module  # so that pickling and `import stem` find it
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # whatever the plugin raises at import: one line, not a traceback
        del sys.modules[module_name]
        raise ConfigError(
            f"--plugin {name}: importing it failed: {type(exc).__name__}: {exc}"
        ) from None


def _import_module(name: str) -> None:
    try:
        importlib.import_module(name)
    except ImportError as exc:
        missing = getattr(exc, "name", None)
        if missing and name.split(".")[0] == missing.split(".")[0]:
            # the plugin itself is not on sys.path (not one of its own imports)
            raise ConfigError(
                f"--plugin {name}: cannot import it ({exc}); a module must be on sys.path (add its "
                "folder to PYTHONPATH), or give the path of its file, e.g. --plugin "
                f"{name.replace('.', '/')}.py"
            ) from None
        raise ConfigError(f"--plugin {name}: importing it failed: {exc}") from None
    except Exception as exc:  # e.g. a signal name registered twice
        raise ConfigError(
            f"--plugin {name}: importing it failed: {type(exc).__name__}: {exc}"
        ) from None


def load_plugins(modules: Sequence[str] = (), *, entry_points: bool = True) -> list[str]:
    """Import ``modules`` (names, or paths of ``.py`` files) and, with ``entry_points``, the
    ``gcpo.plugins`` entry points.

    Returns the plugins imported, as :func:`plugin_spec` records them. A plugin that cannot be
    imported raises ``ConfigError`` naming it and the reason, so a typo fails at once instead of
    as an unknown signal later.
    """
    loaded: list[str] = []
    for name in modules:
        if _is_file(name):
            _import_file(name)
        else:
            _import_module(name)
        loaded.append(plugin_spec(name))
    if entry_points:
        for ep in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
            try:
                ep.load()
            except ImportError as exc:
                raise ConfigError(
                    f"plugin entry point {ep.name!r} ({ep.value}): cannot import it ({exc})"
                ) from None
            loaded.append(ep.value)
    return loaded


def run_plugins(run_dir: str | Path) -> list[str]:
    """The plugins recorded in a gcpo train run directory (``[]`` when it has none)."""
    path = Path(run_dir) / PLUGINS_FILE
    if not path.is_file():
        return []
    try:
        recorded = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ConfigError(f"{path}: not valid JSON ({exc})") from None
    if not isinstance(recorded, list) or not all(isinstance(p, str) for p in recorded):
        raise ConfigError(f"{path}: expected a JSON list of plugin names, got {recorded!r:.100}")
    return recorded
