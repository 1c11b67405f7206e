"""The ``verl.plugins`` entry point of gcpo: registers the ``"gcpo"`` trainer mode.

``import verl`` loads every ``verl.plugins`` entry point in every verl process (driver, Ray
workers, rollout servers). Importing verl's trainer there just to register a class would cost
every worker seconds and memory, so this module only arranges for
:func:`gcpo.verl.trainer.register` to run right after ``verl.trainer.ppo.v1`` is first imported
(immediately, if it already is). The processes that build a trainer import that package before
they look the mode up (``verl.trainer.main_ppo`` does), so ``trainer.v1.trainer_mode=gcpo`` finds
it; no other process pays anything.

verl swallows exceptions raised by plugins (it logs them at debug level), so a failure here is
reported with a warning instead of passing silently. Without the entry point (e.g.
``VERL_USE_EXTERNAL_PLUGINS=none``), ``VERL_USE_EXTERNAL_MODULES=gcpo.verl.plugin`` loads it.
"""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import logging
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["TRIGGER_MODULE", "install"]

TRIGGER_MODULE = "verl.trainer.ppo.v1"

_logger = logging.getLogger(__name__)


def _register() -> None:
    try:
        from gcpo.verl.trainer import register

        register()
    except Exception as exc:  # verl hides plugin errors; say why "gcpo" will be unknown
        message = (
            f"gcpo: could not register verl trainer mode 'gcpo' ({type(exc).__name__}: {exc}); "
            "trainer.v1.trainer_mode=gcpo will not be available"
        )
        _logger.warning(message)
        warnings.warn(message, stacklevel=2)


class _RunAfter(importlib.abc.Loader):
    """Wraps the real loader of the trigger module and calls ``callback`` once it has run."""

    def __init__(self, inner: importlib.abc.Loader, callback: Any) -> None:
        self.inner = inner
        self.callback = callback

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        return self.inner.create_module(spec)

    def exec_module(self, module: ModuleType) -> None:
        self.inner.exec_module(module)
        self.callback()


class _AfterImportFinder(importlib.abc.MetaPathFinder):
    """Meta-path finder that fires ``callback`` after ``name`` is imported, then removes itself."""

    def __init__(self, name: str, callback: Any) -> None:
        self.name = name
        self.callback = callback

    def find_spec(self, fullname: str, path: Any, target: Any = None) -> Any:
        if fullname != self.name:
            return None
        self._remove()
        spec = importlib.machinery.PathFinder.find_spec(fullname, path, target)
        if spec is None:
            for finder in sys.meta_path:
                find = getattr(finder, "find_spec", None)
                spec = find(fullname, path, target) if find is not None else None
                if spec is not None:
                    break
        if spec is None or spec.loader is None:
            return spec
        spec.loader = _RunAfter(spec.loader, self.callback)
        return spec

    def _remove(self) -> None:
        if self in sys.meta_path:
            sys.meta_path.remove(self)


def install() -> None:
    """Register the trainer now if verl's v1 trainer package is loaded, else right after it is."""
    if TRIGGER_MODULE in sys.modules:
        _register()
        return
    if not any(
        isinstance(f, _AfterImportFinder) and f.name == TRIGGER_MODULE for f in sys.meta_path
    ):
        sys.meta_path.insert(0, _AfterImportFinder(TRIGGER_MODULE, _register))


install()
