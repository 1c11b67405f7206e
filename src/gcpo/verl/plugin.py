"""The ``verl.plugins`` entry point of gcpo: registers the ``"gcpo"`` trainer mode.

``import verl`` loads every ``verl.plugins`` entry point in every verl process (driver, Ray
workers, rollout servers). Importing verl's trainer there just to register a class would cost
every worker seconds and memory, so this module only arranges for
:func:`gcpo.verl.trainer.register` to run right after ``verl.trainer.ppo.v1`` is first imported
(immediately, if it already is). It also wraps verl's ``verl.utils.config.validate_config``
(which ``verl.trainer.main_ppo`` calls in the driver before Ray starts) with
:func:`check_trainer_path`: GCPO settings on the legacy trainer (``trainer.use_v1=false``), which
ignores ``trainer_mode``, stop the run with one line instead of training plain GRPO. The processes that build a trainer import that package before
they look the mode up (``verl.trainer.main_ppo`` does), so ``trainer.v1.trainer_mode=gcpo`` finds
it; no other process pays anything.

verl swallows exceptions raised by plugins (it logs them at debug level), so a failure here is
reported with a warning instead of passing silently. Without the entry point (e.g.
``VERL_USE_EXTERNAL_PLUGINS=none``), ``VERL_USE_EXTERNAL_MODULES=gcpo.verl.plugin`` loads it.
"""

from __future__ import annotations

import functools
import importlib.abc
import importlib.machinery
import logging
import sys
import warnings
from types import ModuleType
from typing import Any

__all__ = ["CONFIG_MODULE", "TRIGGER_MODULE", "check_trainer_path", "install"]

TRIGGER_MODULE = "verl.trainer.ppo.v1"
CONFIG_MODULE = "verl.utils.config"

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


def check_trainer_path(config: Any) -> None:
    """Refuse a run that asks for GCPO on verl's legacy trainer (``trainer.use_v1=false``).

    verl's legacy ``RayPPOTrainer`` never reads ``trainer.v1.trainer_mode``, so such a run
    would train plain GRPO with no error. Also refuses ``trainer.v1.gcpo.device`` other than
    ``cpu`` (the step's actor has no GPU) before Ray starts. Runs from verl's
    ``validate_config`` (the driver calls it before Ray starts).
    """
    trainer = _get(config, "trainer")
    v1 = _get(trainer, "v1")
    asks = _get(v1, "trainer_mode") == "gcpo" or _get(v1, "gcpo") is not None
    device = _get(_get(v1, "gcpo"), "device")
    if asks and device is not None and device != "cpu":
        from gcpo.fields import ConfigError

        raise ConfigError(
            f"trainer.v1.gcpo.device: got {device!r}; the gcpo step runs in verl's TaskRunner "
            "actor, which Ray starts without GPUs (no accelerator is visible there), so only "
            "'cpu' works"
        )
    if asks and _get(trainer, "use_v1") is False:
        from gcpo.fields import ConfigError

        raise ConfigError(
            "trainer.use_v1=false: verl's legacy RayPPOTrainer ignores trainer.v1.trainer_mode "
            "and trainer.v1.gcpo, so this run would train plain GRPO; GCPO runs on verl's v1 "
            "trainer: set trainer.use_v1=true (verl's default)"
        )


def _get(node: Any, key: str) -> Any:
    if node is None:
        return None
    try:
        return node.get(key)
    except Exception:  # an OmegaConf node that is not a mapping
        return None


def _guard_validate_config() -> None:
    """Wrap ``verl.utils.config.validate_config`` with :func:`check_trainer_path` (once)."""
    module = sys.modules.get(CONFIG_MODULE)
    original = getattr(module, "validate_config", None)
    if original is None or hasattr(original, "__gcpo_original__"):
        return

    @functools.wraps(original)
    def validate_config(config: Any, *args: Any, **kwargs: Any) -> Any:
        check_trainer_path(config)
        return original(config, *args, **kwargs)

    validate_config.__gcpo_original__ = original  # type: ignore[attr-defined]
    module.validate_config = validate_config  # type: ignore[union-attr]


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


def _after_import(name: str, callback: Any) -> None:
    """Run ``callback`` now if module ``name`` is loaded, else right after it is imported."""
    if name in sys.modules:
        callback()
        return
    if not any(isinstance(f, _AfterImportFinder) and f.name == name for f in sys.meta_path):
        sys.meta_path.insert(0, _AfterImportFinder(name, callback))


def install() -> None:
    """Register the trainer when verl's v1 trainer package is loaded, and guard verl's config
    check against GCPO settings on the legacy trainer path (both now if already loaded)."""
    _after_import(TRIGGER_MODULE, _register)
    _after_import(CONFIG_MODULE, _guard_validate_config)


install()
