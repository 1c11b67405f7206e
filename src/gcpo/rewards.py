"""Safe reward functions: a user's reward can raise or return garbage; training keeps going.

:func:`safe_reward` wraps a reward function with TRL's signature
``fn(prompts, completions, **columns) -> list[float | None]``. Whatever the function does, the
wrapper returns one ``float`` or ``None`` per completion, where ``None`` is TRL's convention for
"unscorable": TRL turns it into NaN, excludes it from the group baseline and gives it advantage 0,
and :class:`gcpo.trl.GCPOTrainer` gives it its group's mean reward so it adds no reward
dispersion. What becomes ``None``:

=====================================  ==========================================================
the function ...                       affected completions
=====================================  ==========================================================
raises an exception                    the whole batch
returns a non-sequence / wrong length  the whole batch
returns ``None`` for an item           that item (kept as ``None``)
returns NaN or +-inf                   that item
returns a non-numeric item ("1", [])   that item
=====================================  ==========================================================

Each case is counted in a :class:`RewardStats` and, inside a TRL trainer, logged per generation
batch through TRL's ``log_metric`` keyword as ``gcpo/unscorable_frac/<name>`` (fraction of the
batch's completions made or left unscorable) and ``gcpo/reward_errors/<name>`` (calls that raised
or returned the wrong shape). With ``fail_fast=True`` the first problem raises
:class:`RewardError` naming the function, the problem and the offending value instead.

:func:`sanitize_rewards` is the tensor-side guard: ``+-inf`` -> NaN in a reward matrix, so no
non-finite value other than TRL's "unscorable" NaN reaches advantages or weights.
"""

from __future__ import annotations

import functools
import math
import numbers
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = ["RewardError", "RewardStats", "safe_reward", "sanitize_rewards"]

RewardFn = Callable[..., Any]


class RewardError(ValueError):
    """A reward function failed and ``fail_fast`` was asked for; the message names it."""


@dataclass
class RewardStats:
    """Running counts of what :func:`safe_reward` had to repair (all counts are completions,
    except ``calls``, ``errors`` and ``bad_length``, which count calls)."""

    calls: int = 0
    completions: int = 0
    unscorable: int = 0
    errors: int = 0
    bad_length: int = 0
    none: int = 0
    non_finite: int = 0
    non_numeric: int = 0
    last_error: str | None = None
    reasons: list[str] = field(default_factory=list)

    def note(self, reason: str) -> None:
        self.last_error = reason
        if len(self.reasons) < 20:
            self.reasons.append(reason)

    @property
    def unscorable_frac(self) -> float:
        """Fraction of all completions seen so far that were unscorable (0.0 before any call)."""
        return self.unscorable / self.completions if self.completions else 0.0

    def as_dict(self) -> dict[str, Any]:
        """Plain-data counts (for summary.json)."""
        out = asdict(self)
        out["unscorable_frac"] = self.unscorable_frac
        return out


def _as_float(value: Any) -> float | None | str:
    """A numeric reward as float; None stays None; anything else -> a short reason string."""
    if value is None:
        return None
    if isinstance(value, bool):
        return float(value)
    if isinstance(value, numbers.Real):
        return float(value)
    # numpy / torch scalars and 0-d or 1-element arrays
    item = getattr(value, "item", None)
    numel = value.numel() if hasattr(value, "numel") else getattr(value, "size", None)
    if callable(item) and (numel is None or numel == 1):
        try:
            inner = item()
        except (TypeError, ValueError, RuntimeError):
            return f"non-numeric {type(value).__name__}"
        if isinstance(inner, (bool, numbers.Real)):
            return float(inner)
    return f"non-numeric {type(value).__name__}"


def _to_list(values: Any) -> list[Any] | None:
    if isinstance(values, (str, bytes, dict)) or values is None:
        return None
    tolist = getattr(values, "tolist", None)
    if callable(tolist) and not isinstance(values, (list, tuple)):
        try:
            values = tolist()
        except (TypeError, ValueError, RuntimeError):
            return None
        return values if isinstance(values, list) else None
    if isinstance(values, Sequence):
        return list(values)
    try:
        return list(values)
    except TypeError:
        return None


def safe_reward(
    fn: RewardFn,
    *,
    name: str | None = None,
    fail_fast: bool = False,
    stats: RewardStats | None = None,
) -> RewardFn:
    """Wrap TRL reward function ``fn`` so it always returns ``len(completions)`` floats or Nones.

    Args:
        fn: ``fn(prompts, completions, **kwargs) -> sequence of float | None``.
        name: name used in messages and metrics (default ``fn.__name__``); the wrapper keeps
            ``fn.__name__``, so TRL's ``rewards/<name>/mean`` metrics are unchanged.
        fail_fast: raise :class:`RewardError` on the first problem instead of marking
            completions unscorable.
        stats: accumulates the counts (default: a fresh one, reachable as ``wrapper.stats``).

    Returns:
        The wrapper, with attributes ``stats`` and ``wrapped`` (= ``fn``).

    Raises:
        ValueError: ``fn`` is not callable.
    """
    if not callable(fn):
        raise ValueError(f"fn: expected a callable reward function, got {type(fn).__name__}")
    label = name or getattr(fn, "__name__", None) or type(fn).__name__
    counts = stats if stats is not None else RewardStats()

    def problem(message: str) -> None:
        counts.note(message)
        if fail_fast:
            raise RewardError(f"reward function {label!r}: {message} (fail_fast is on)")

    @functools.wraps(fn)
    def wrapper(prompts: Any = None, completions: Any = None, **kwargs: Any) -> list[float | None]:
        if completions is None:
            raise ValueError(f"reward function {label!r}: called without 'completions'")
        n = len(completions)
        counts.calls += 1
        counts.completions += n
        log_metric = kwargs.get("log_metric")
        errors_before = counts.errors + counts.bad_length
        out: list[float | None]
        try:
            raw = fn(prompts=prompts, completions=completions, **kwargs)
        except Exception as exc:  # a user function may raise anything; the batch is unscorable
            counts.errors += 1
            where = traceback.extract_tb(exc.__traceback__)[-1]
            problem(
                f"raised {type(exc).__name__}: {str(exc)[:200]} (at {where.filename}:{where.lineno})"
            )
            out = [None] * n
        else:
            values = _to_list(raw)
            if values is None or len(values) != n:
                counts.bad_length += 1
                found = (
                    f"{len(values)} values"
                    if values is not None
                    else f"a {type(raw).__name__}, not a sequence"
                )
                problem(f"returned {found} for {n} completions")
                out = [None] * n
            else:
                out = []
                for i, v in enumerate(values):
                    x = _as_float(v)
                    if x is None:
                        counts.none += 1
                    elif isinstance(x, str):
                        counts.non_numeric += 1
                        problem(f"returned {x} {v!r:.60} for completion {i}")
                        x = None
                    elif not math.isfinite(x):
                        counts.non_finite += 1
                        problem(f"returned {x} for completion {i}")
                        x = None
                    out.append(x)
        n_bad = sum(v is None for v in out)
        counts.unscorable += n_bad
        if callable(log_metric):
            log_metric(f"gcpo/unscorable_frac/{label}", n_bad / n if n else 0.0)
            log_metric(
                f"gcpo/reward_errors/{label}",
                float(counts.errors + counts.bad_length - errors_before),
            )
        return out

    wrapper.stats = counts  # type: ignore[attr-defined]
    wrapper.wrapped = fn  # type: ignore[attr-defined]
    return wrapper


def sanitize_rewards(rewards: Any) -> Any:
    """``+-inf`` -> NaN in a reward tensor ``[N, n_funcs]`` (NaN = TRL's "unscorable").

    TRL's advantage code ends with ``nan_to_num(nan=0)``, which would turn an infinite reward into
    a huge finite advantage; as NaN it is excluded from the baseline and gets advantage 0 instead.
    """
    import torch

    if not isinstance(rewards, torch.Tensor):
        raise ValueError(f"rewards: expected a torch.Tensor, got {type(rewards).__name__}")
    if not rewards.is_floating_point():
        return rewards
    return rewards.masked_fill(torch.isinf(rewards), float("nan"))
