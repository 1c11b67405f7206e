"""The live alignment monitor: does the run's own signal track its gradient noise?

Every ``monitor_every`` optimizer steps, :class:`~gcpo.trl.GCPOTrainer` measures per-completion
policy gradients ``g_i = A_i * grad l_i`` of that step's *active* groups (``RD > 0``; the same
definitions and parameter subset as ``gcpo analyze`` and the ``grad_nsr`` oracle, reusing the
oracle's gradients when it computed them that step), turns them into each group's gradient
variance ``V`` and noise-to-signal ratio ``NSR`` (:func:`gcpo.signals.gradient_noise_stats`), and
adds the groups to a window of the last ``monitor_window`` measured groups. It then logs, over the
window, the Spearman rho of every configured signal (the weighting signal and ``extra_signals``,
by their unique labels) and of the applied weight with V and NSR::

    gcpo/align/<label>/V     gcpo/align/<label>/NSR     gcpo/align/weight/V   ...
    gcpo/align/n             (groups in the window)     gcpo/monitor_s        (seconds this step)

A signal that tracks gradient noise has rho > 0 (higher = more uncertain); a weighting that
down-weights noisy groups has rho(weight, NSR) < 0. Rho is 0.0 with fewer than 3 groups or a
constant column (as in ``gcpo analyze``). The window is plain data saved in every checkpoint
(``gcpo_state.json``, key ``"monitor"``), so a resumed run continues it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
from scipy.stats import rankdata

__all__ = ["AlignmentMonitor", "spearman", "WEIGHT_LABEL"]

#: the pseudo-signal label under which the applied weight's alignment is reported
WEIGHT_LABEL = "weight"
TARGETS = ("V", "NSR")


def spearman(x: Any, y: Any) -> float:
    """Spearman rho (average ranks for ties); 0.0 when either side is constant or n < 3 (the
    rule of ``gcpo.diagnostics.stats.spearman``)."""
    a = np.asarray(x, dtype=np.float64)
    b = np.asarray(y, dtype=np.float64)
    if a.shape != b.shape or a.ndim != 1:
        raise ValueError(f"x and y: expected two 1-D sequences of one length, got {a.shape}, {b.shape}")
    if a.size < 3:
        return 0.0
    ra, rb = rankdata(a), rankdata(b)
    ra, rb = ra - ra.mean(), rb - rb.mean()
    na, nb = float(np.sqrt((ra * ra).sum())), float(np.sqrt((rb * rb).sum()))
    tiny = 1e-9 * max(1, a.size)
    if na <= tiny or nb <= tiny:
        return 0.0
    return float(np.clip((ra * rb).sum() / (na * nb), -1.0, 1.0))


class AlignmentMonitor:
    """Schedule and window of the live monitor.

    Args:
        every: measure every this many optimizer steps (``>= 1``).
        window: groups kept (the most recent measured ones; ``>= 1``).
    """

    def __init__(self, every: int, window: int = 256) -> None:
        for name, v in (("monitor_every", every), ("monitor_window", window)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        self.every = every
        self.window = window
        self.groups: deque[dict[str, Any]] = deque(maxlen=window)
        self.measurements = 0  # steps measured so far (over the whole run, resumes included)

    def due(self, global_step: int, steps_per_batch: int = 1) -> bool:
        """Whether the generation batch made at ``global_step`` (optimizer steps done so far)
        and used for the next ``steps_per_batch`` steps covers a step divisible by ``every``."""
        last = global_step + max(1, steps_per_batch)
        return last // self.every > global_step // self.every

    def observe(
        self,
        signals: Mapping[str, torch.Tensor],
        variance: torch.Tensor,
        nsr: torch.Tensor,
        active: torch.Tensor,
        weights: torch.Tensor | None = None,
        step: int = 0,
    ) -> int:
        """Add the ``active`` groups of one batch (``signals``: label -> ``[B]``); returns how
        many were added."""
        idx = torch.nonzero(active.reshape(-1)).reshape(-1).tolist()
        for b in idx:
            row: dict[str, Any] = {
                "step": int(step),
                "V": float(variance[b]),
                "NSR": float(nsr[b]),
                "signals": {k: float(v[b]) for k, v in signals.items()},
            }
            if weights is not None:
                row["signals"][WEIGHT_LABEL] = float(weights[b])
            self.groups.append(row)
        self.measurements += 1
        return len(idx)

    def correlations(self) -> dict[str, dict[str, float]]:
        """label -> {"V": rho, "NSR": rho} over the groups in the window that have the label."""
        labels: list[str] = []
        for row in self.groups:
            labels.extend(k for k in row["signals"] if k not in labels)
        out: dict[str, dict[str, float]] = {}
        for label in labels:
            rows = [r for r in self.groups if label in r["signals"]]
            x = [r["signals"][label] for r in rows]
            out[label] = {t: spearman(x, [r[t] for r in rows]) for t in TARGETS}
        return out

    def metrics(self) -> dict[str, float]:
        """The ``gcpo/align/*`` values for the current window."""
        out = {"gcpo/align/n": float(len(self.groups))}
        for label, rhos in self.correlations().items():
            for t, rho in rhos.items():
                out[f"gcpo/align/{label}/{t}"] = rho
        return out

    def summary(self) -> dict[str, Any]:
        """Plain data for a run summary: window size, steps measured, rho per label."""
        return {
            "every": self.every,
            "window": self.window,
            "groups": len(self.groups),
            "measured_steps": self.measurements,
            "rho": self.correlations(),
        }

    # -- checkpoint --------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        return {
            "version": 1,
            "every": self.every,
            "window": self.window,
            "measurements": self.measurements,
            "groups": list(self.groups),
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` output (a smaller ``window`` now keeps the newest groups)."""
        if not isinstance(state, Mapping) or not isinstance(state.get("groups"), list):
            raise ValueError(f"monitor state: expected a dict with a 'groups' list, got {state!r:.100}")
        rows = []
        for i, row in enumerate(state["groups"]):
            ok = isinstance(row, Mapping) and isinstance(row.get("signals"), Mapping)
            if not ok or not all(
                isinstance(row.get(t), (int, float)) and math.isfinite(row[t]) for t in TARGETS
            ):
                raise ValueError(f"monitor state: groups[{i}] is malformed: {row!r:.100}")
            rows.append(
                {
                    "step": int(row.get("step", 0)),
                    "V": float(row["V"]),
                    "NSR": float(row["NSR"]),
                    "signals": {str(k): float(v) for k, v in row["signals"].items()},
                }
            )
        self.groups = deque(rows, maxlen=self.window)
        self.measurements = int(state.get("measurements", 0))
