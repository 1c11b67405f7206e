"""GCPO inside verl: the trainer mode ``trainer.v1.trainer_mode=gcpo``.

Set-up: install gcpo next to verl (``pip install "gcpo[verl]"``); its ``verl.plugins`` entry
point (:mod:`gcpo.verl.plugin`) registers the mode in every verl process. Then add to a verl GRPO
run (``algorithm.adv_estimator=grpo``)::

    trainer.v1.trainer_mode=gcpo            # the switch
    +trainer.v1.gcpo.preset=gcpo            # optional: any gcpo.presets.available_presets() name
    +trainer.v1.gcpo.weighting.alpha=0.5    # optional: any gcpo.weighting.WeightingConfig field

or start from ``gcpo_trainer.yaml`` in :data:`CONFIG_DIR` (verl's ``ppo_trainer`` with the mode
and every setting, so no ``+``): ``--config-path=CONFIG_DIR --config-name=gcpo_trainer``.

The mode is verl's synchronous v1 trainer (:class:`gcpo.verl.trainer.GCPOVerlTrainer`, a subclass of
``PPOTrainerSync``): inside verl's own advantage step, right after GRPO, it computes one weight
per prompt group with one :class:`gcpo.scoring.GroupScorer` for the run (every preset and
registered signal; what a batch computes comes from the scorer's declared needs) and multiplies
the group's advantages by it before verl writes them. The rank window is saved with verl's checkpoints
(``global_step_N/gcpo_state.json``) and ``gcpo/*`` metrics go to verl's logger. A prompt with a
single response (verl gives it its raw score as advantage) is not a group: its advantage is left
as verl computed it and it is neither scored nor renormalised.

The embedding runs in verl's TaskRunner actor, on its CPU (Ray starts it without GPUs). The default embedder there is
``static-minilm`` re-indexed to the policy's vocabulary, embedding the generated token ids
directly (:class:`gcpo.verl.step.GCPOAdvantageStep`); ``benchmarks/embedders.py`` measures its
cost and its agreement with MiniLM.

This package imports without verl: :mod:`gcpo.verl.step` (the per-batch computation) needs only
gcpo; :mod:`gcpo.verl.trainer` needs verl 0.9. Importing the package itself imports nothing else
of gcpo (its names are loaded on first access): the ``verl.plugins`` entry point
(:mod:`gcpo.verl.plugin`) is imported by ``import verl`` in every verl process.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gcpo.verl.step import (
        GCPOAdvantageStep,
        PackedIds,
        StepResult,
        VerlGCPOConfig,
        weighting_for,
    )

__all__ = [
    "CONFIG_DIR",
    "GCPOAdvantageStep",
    "PackedIds",
    "StepResult",
    "VerlGCPOConfig",
    "register",
    "weighting_for",
]

#: Directory of ``gcpo_trainer.yaml``: verl's ``ppo_trainer`` config with the gcpo mode and all
#: its settings (``--config-path=CONFIG_DIR --config-name=gcpo_trainer``; no ``+`` needed).
CONFIG_DIR = str(Path(__file__).resolve().parent.parent / "configs" / "verl")


def register() -> None:
    """Register the ``"gcpo"`` trainer mode in verl now (the entry point does it on its own)."""
    try:
        from gcpo.verl.trainer import register as _register
    except ImportError as exc:
        raise ImportError(
            f"gcpo.verl.register(): verl 0.9 is not installed or not importable ({exc}); "
            'install it with pip install "gcpo[verl]" (gcpo itself does not need it)'
        ) from exc
    _register()


_LAZY = {
    "GCPOAdvantageStep": "gcpo.verl.step",
    "PackedIds": "gcpo.verl.step",
    "StepResult": "gcpo.verl.step",
    "VerlGCPOConfig": "gcpo.verl.step",
    "weighting_for": "gcpo.verl.step",
    "GCPOVerlTrainer": "gcpo.verl.trainer",
    "TRAINER_MODE": "gcpo.verl.trainer",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gcpo.verl' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
