"""Gradient-noise statistics per group and rank correlations over groups.

Per group (docs/design.md section 8), from per-completion gradients ``g_1..g_G``:
``V = (1/G) sum_i ||g_i - g_bar||^2`` (population variance, no Bessel correction),
``||g_bar||^2`` and ``NSR = V / (||g_bar||^2 + eps)``.

Over groups: Spearman rho with a seeded percentile-bootstrap 95 % CI, the partial Spearman
correlation given one or more covariates (reward dispersion; reward dispersion and mean
completion length): the Pearson correlation of the residuals of rank(x) and rank(y) after a
joint least-squares fit on the ranks of the covariates, and the difference of two signals'
Spearman rho against the same target with a paired bootstrap CI (both rhos on the same
resample of groups).

Degenerate input never gives NaN: a correlation with a constant variable (or fewer than 3
points) is reported as 0.0, i.e. "no measurable monotone association".
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from scipy.stats import rankdata

from gcpo.signals import GRAD_NSR_EPS, gradient_noise_stats

__all__ = [
    "GradientNoise",
    "gradient_noise",
    "spearman",
    "partial_spearman",
    "spearman_difference",
    "bootstrap_ci",
    "Correlation",
    "correlate",
]

NSR_EPS = GRAD_NSR_EPS


@dataclass(frozen=True)
class GradientNoise:
    """Per-group gradient statistics, each ``[B]`` (or scalar tensors for one group)."""

    variance: torch.Tensor
    mean_sq_norm: torch.Tensor
    nsr: torch.Tensor


def gradient_noise(
    grads: torch.Tensor, mask: torch.Tensor | None = None, eps: float = NSR_EPS
) -> GradientNoise:
    """V, ||g_bar||^2 and NSR of per-completion gradients.

    grads: ``[G, P]`` (one group) or ``[B, G, P]``.
    mask: ``[G]`` / ``[B, G]`` bool, valid completions (default all). A group with no valid
      completion gives V = ||g_bar||^2 = NSR = 0.
    eps: added to ||g_bar||^2 in the NSR denominator (gradients here are O(1e-3..1) in norm).
    """
    grads = torch.as_tensor(grads, dtype=torch.float64)
    if grads.dim() not in (2, 3):
        raise ValueError(f"grads: expected [G, P] or [B, G, P], got shape {tuple(grads.shape)}")
    single = grads.dim() == 2
    if single:
        grads = grads[None]
    b, g, _ = grads.shape
    if mask is None:
        m = torch.ones(b, g, dtype=torch.float64)
    else:
        mask_t = torch.as_tensor(mask)
        if single:
            mask_t = mask_t[None]
        if tuple(mask_t.shape) != (b, g):
            raise ValueError(f"mask: expected shape {(b, g)}, got {tuple(mask_t.shape)}")
        m = mask_t.to(torch.float64)
    if eps <= 0:
        raise ValueError(f"eps must be > 0, got {eps}")
    # one definition with the trainer's grad_nsr oracle (gcpo.signals, float64 inside)
    variance, mean_sq, nsr = gradient_noise_stats(grads, m.to(torch.bool), eps)
    out = [t.to(torch.float32) for t in (variance, mean_sq, nsr)]
    if single:
        out = [t[0] for t in out]
    return GradientNoise(*out)


def _as_1d(name: str, x: object) -> np.ndarray:
    arr = np.asarray(x, dtype=np.float64)
    if arr.ndim != 1:
        raise ValueError(f"{name}: expected a 1-D sequence, got shape {arr.shape}")
    if not np.isfinite(arr).all():
        raise ValueError(f"{name}: contains non-finite values")
    return arr


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of rank-like vectors (values O(n)); 0.0 when either is (numerically) constant."""
    a = a - a.mean()
    b = b - b.mean()
    na, nb = float(np.sqrt((a * a).sum())), float(np.sqrt((b * b).sum()))
    tiny = 1e-9 * max(1, a.size)
    if na <= tiny or nb <= tiny:
        return 0.0
    return float(np.clip((a * b).sum() / (na * nb), -1.0, 1.0))


def spearman(x: object, y: object) -> float:
    """Spearman rho (average ranks for ties); 0.0 when either is constant or n < 3."""
    xa, ya = _as_1d("x", x), _as_1d("y", y)
    if xa.shape != ya.shape:
        raise ValueError(f"x and y must have the same length, got {xa.size} and {ya.size}")
    if xa.size < 3:
        return 0.0
    return _pearson(rankdata(xa), rankdata(ya))


def _residual(target: np.ndarray, covariates: list[np.ndarray]) -> np.ndarray:
    design = np.stack([np.ones_like(target), *covariates], axis=1)
    coef, *_ = np.linalg.lstsq(design, target, rcond=None)
    return target - design @ coef


def partial_spearman(x: object, y: object, *covariates: object) -> float:
    """Spearman correlation of x and y with the (linear, in ranks) effect of the covariates
    removed jointly: ``partial_spearman(x, y, rd)`` or ``partial_spearman(x, y, rd, length)``.

    0.0 when fewer than ``3 + number of covariates`` points, or a residual is constant.
    """
    if not covariates:
        raise ValueError("covariates: give at least one (e.g. the reward dispersion)")
    xa, ya = _as_1d("x", x), _as_1d("y", y)
    zs = [_as_1d(f"covariates[{i}]", z) for i, z in enumerate(covariates)]
    sizes = [xa.size, ya.size, *(z.size for z in zs)]
    if len(set(sizes)) != 1:
        raise ValueError(f"x, y and the covariates must have the same length, got {sizes}")
    if xa.size < 3 + len(zs):
        return 0.0
    rz = [rankdata(z) for z in zs]
    return _pearson(_residual(rankdata(xa), rz), _residual(rankdata(ya), rz))


def spearman_difference(a: object, b: object, target: object) -> float:
    """``spearman(a, target) - spearman(b, target)``: how much better signal ``a`` ranks the
    target than signal ``b`` over the same groups (bootstrap it with :func:`bootstrap_ci` on
    ``(a, b, target)`` for a paired CI)."""
    return spearman(a, target) - spearman(b, target)


def bootstrap_ci(
    stat: object,
    *arrays: object,
    n_resamples: int = 1000,
    level: float = 0.95,
    seed: int = 0,
) -> tuple[float, float]:
    """Percentile bootstrap CI of ``stat(*arrays)`` resampling rows (paired) with replacement."""
    if not callable(stat):
        raise ValueError(f"stat must be callable, got {stat!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must be in (0, 1), got {level}")
    if n_resamples < 1:
        raise ValueError(f"n_resamples must be >= 1, got {n_resamples}")
    cols = [_as_1d(f"arrays[{i}]", a) for i, a in enumerate(arrays)]
    n = cols[0].size
    if any(c.size != n for c in cols):
        raise ValueError(f"arrays must have equal lengths, got {[c.size for c in cols]}")
    if n == 0:
        return 0.0, 0.0
    rng = np.random.default_rng(seed)
    values = np.empty(n_resamples)
    for r in range(n_resamples):
        idx = rng.integers(0, n, size=n)
        values[r] = stat(*(c[idx] for c in cols))
    lo, hi = np.quantile(values, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(lo), float(hi)


@dataclass(frozen=True)
class Correlation:
    """Spearman rho of a signal against a target over n groups, its CI, the partial rho given
    the covariate (RD) and, when a second covariate (mean completion length) is given, the
    partial rho given both jointly (else None)."""

    n: int
    rho: float
    ci_low: float
    ci_high: float
    partial: float
    partial_ci_low: float
    partial_ci_high: float
    partial2: float | None = None
    partial2_ci_low: float | None = None
    partial2_ci_high: float | None = None


def correlate(
    signal: object,
    target: object,
    covariate: object,
    *,
    second_covariate: object | None = None,
    n_resamples: int = 1000,
    seed: int = 0,
) -> Correlation:
    """Spearman(signal, target), partial Spearman given ``covariate`` and, if given, partial
    Spearman given ``covariate`` and ``second_covariate`` jointly, each with a 95 % CI."""
    s, t, c = _as_1d("signal", signal), _as_1d("target", target), _as_1d("covariate", covariate)
    rho = spearman(s, t)
    lo, hi = bootstrap_ci(spearman, s, t, n_resamples=n_resamples, seed=seed)
    part = partial_spearman(s, t, c)
    plo, phi = bootstrap_ci(partial_spearman, s, t, c, n_resamples=n_resamples, seed=seed)
    if second_covariate is None:
        return Correlation(s.size, rho, lo, hi, part, plo, phi)
    c2 = _as_1d("second_covariate", second_covariate)
    part2 = partial_spearman(s, t, c, c2)
    p2lo, p2hi = bootstrap_ci(partial_spearman, s, t, c, c2, n_resamples=n_resamples, seed=seed)
    return Correlation(s.size, rho, lo, hi, part, plo, phi, part2, p2lo, p2hi)
