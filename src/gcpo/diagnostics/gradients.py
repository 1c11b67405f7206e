"""Per-completion policy gradients on a parameter subset (docs/design.md section 8).

The implementation lives in :mod:`gcpo.gradients` (glue), shared with the trainer's ``grad_nsr``
oracle and live monitor; this module re-exports it for ``gcpo analyze`` and existing imports.
"""

from __future__ import annotations

from gcpo.gradients import (
    OBJECTIVES,
    PARAM_SUBSETS,
    CompletionGradients,
    completion_gradients,
    frozen_except,
    select_parameters,
)

__all__ = [
    "PARAM_SUBSETS",
    "OBJECTIVES",
    "select_parameters",
    "frozen_except",
    "CompletionGradients",
    "completion_gradients",
]
