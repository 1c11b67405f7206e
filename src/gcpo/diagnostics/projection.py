"""Seeded, memory-bounded random projection of gradient vectors (CountSketch).

The implementation (and its norm-preservation tolerance) lives in :mod:`gcpo.gradients`, shared
with the trainer's ``grad_nsr`` oracle and live monitor; re-exported here for ``gcpo analyze``.
"""

from __future__ import annotations

from gcpo.gradients import CountSketch

__all__ = ["CountSketch"]
