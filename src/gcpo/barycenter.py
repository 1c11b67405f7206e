"""Free-support Wasserstein barycenters of point clouds, and the transport cost to them.

The solver behind :func:`gcpo.signals.barycentric_transport`: POT's fixed-point algorithm
(``ot.lp.free_support_barycenter``) written out so the last iterate's transport plans give the
cost directly, with exact plans from POT's network simplex (``ot.emd``) and shortcuts for plans
that have a single feasible solution. NumPy in, a float out; POT is imported on first use.
"""

from __future__ import annotations

import numpy as np

__all__ = ["barycenter_cost"]


def _sq_dists(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Squared Euclidean cost matrix ``[len(x), len(y)]`` (what ``ot.dist`` computes)."""
    d = (x * x).sum(1)[:, None] + (y * y).sum(1)[None, :] - 2.0 * (x @ y.T)
    return np.maximum(d, 0.0)


def _is_uniform(p: np.ndarray) -> bool:
    return bool(np.all(p == p[0]))


def _transport_plan(b: np.ndarray, a: np.ndarray, cost: np.ndarray) -> np.ndarray:
    """Optimal plan between weights ``b`` (rows) and ``a`` (columns) under ``cost``.

    One-point marginals have a single feasible plan, so POT is only called when both sides have
    several points (saves most of the solver calls for short completions).
    """
    if cost.shape[0] == 1:
        return a[None, :].copy()
    if cost.shape[1] == 1:
        return b[:, None].copy()
    if cost.shape[0] == cost.shape[1] and _is_uniform(a) and _is_uniform(b):
        # uniform measures of equal size: the transport polytope's vertices are permutation
        # matrices / n (Birkhoff), so an optimal assignment is an optimal plan
        from scipy.optimize import linear_sum_assignment

        rows, cols = linear_sum_assignment(cost)
        plan = np.zeros_like(cost)
        plan[rows, cols] = 1.0 / cost.shape[0]
        return plan
    import ot  # POT; imported lazily so `import gcpo.signals` stays light

    return ot.emd(b, a, cost, center_dual=False, check_marginals=False)


def _initial_support(ys: list[np.ndarray], w: np.ndarray, k: int) -> np.ndarray:
    """Deterministic, permutation-equivariant initial barycenter support ``[k, D]``.

    Among the largest clouds, the one whose mean is closest to the weighted mean of all cloud
    means (the first such on an exact tie); its first ``k`` points, tiled cyclically when it has
    fewer than ``k``. Starting from a real cloud of full size avoids duplicated support points,
    whose ties make the fixed point depend on the solver's tie-breaking.
    """
    sizes = np.array([y.shape[0] for y in ys])
    means = np.stack([y.mean(axis=0) for y in ys])
    centre = (w[:, None] * means).sum(axis=0)
    dist = ((means - centre) ** 2).sum(axis=1)
    dist[sizes < sizes.max()] = np.inf
    init = ys[int(np.argmin(dist))]
    return init[np.arange(k) % init.shape[0]]


def barycenter_cost(
    clouds: list[np.ndarray], w: np.ndarray, support_size: int | None, max_iter: int, tol: float
) -> float:
    """Transport cost ``sum_i w_i W_2^2(nu_i, nu*)`` from one group's clouds (unit rows) to
    their free-support barycenter ``nu*`` with ``support_size`` points (None: the largest cloud).

    The loop is the algorithm of ``ot.lp.free_support_barycenter`` (Cuturi & Doucet 2014, Alg. 2
    with theta = 1; squared-Euclidean cost, fixed uniform barycenter weights) with the same
    stopping rule, written out so the plans of the last iterate give the final cost without a
    second round of solves, and so that trivial one-point plans skip the solver. Each transport
    plan is solved exactly by POT's network simplex (``ot.emd``); ``tests/test_signals.py``
    checks the result against ``ot.lp.free_support_barycenter`` + ``ot.emd2``.
    """
    keep = [i for i in range(len(clouds)) if w[i] > 0]
    if len(keep) <= 1:
        return 0.0
    ys = [clouds[i] for i in keep]
    w = w[keep] / w[keep].sum()
    sizes = [y.shape[0] for y in ys]
    k = max(sizes) if support_size is None else support_size
    x = _initial_support(ys, w, k)
    a = [np.full(s, 1.0 / s) for s in sizes]
    b = np.full(k, 1.0 / k)
    displacement = tol + 1.0
    for it in range(max_iter + 1):
        costs = [_sq_dists(x, y) for y in ys]
        plans = [_transport_plan(b, ai, c) for ai, c in zip(a, costs, strict=True)]
        if it == max_iter or displacement <= tol:
            return float(sum(wi * (p * c).sum() for wi, p, c in zip(w, plans, costs, strict=True)))
        x_new = sum(wi * (p @ y) for wi, p, y in zip(w, plans, ys, strict=True)) / b[:, None]
        displacement = float(((x_new - x) ** 2).sum())
        x = x_new
    raise AssertionError("unreachable")
