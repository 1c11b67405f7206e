"""Loading user extensions: modules that register signals, tasks or weight functions.

A plugin is any importable module whose import registers something (``@register_signal``,
``register_task``, ...). The CLI loads the modules named with ``--plugin MODULE`` and every entry
point of the ``gcpo.plugins`` group (a package declares ``[project.entry-points."gcpo.plugins"]
name = "my_package.signals"``), so a signal defined outside gcpo works by name in every
subcommand. In Python, importing the module is enough.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Sequence

from gcpo.fields import ConfigError

__all__ = ["ENTRY_POINT_GROUP", "load_plugins"]

ENTRY_POINT_GROUP = "gcpo.plugins"


def load_plugins(modules: Sequence[str] = (), *, entry_points: bool = True) -> list[str]:
    """Import ``modules`` (and, with ``entry_points``, the ``gcpo.plugins`` entry points).

    Returns the names imported. A module that cannot be imported raises ``ConfigError`` naming it
    and the reason, so a typo fails at once instead of as an unknown signal later.
    """
    loaded: list[str] = []
    for name in modules:
        try:
            importlib.import_module(name)
        except ImportError as exc:
            raise ConfigError(f"--plugin {name}: cannot import it: {exc}") from None
        loaded.append(name)
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
