"""Group-level uncertainty signals: one value per prompt group, higher = more uncertain.

Pure functions on tensors (numpy accepted and converted), vectorised over a batch of ``B``
prompt groups of ``G`` completions, with an optional validity ``mask[B, G]`` (bool) for variable
group sizes. No model, embedder, file I/O or training framework in here (docs/design.md,
sections 2-3).

Every signal is registered under a name (``SIGNALS``, :func:`get_signal`) together with its upper
bound, used by ``bound`` normalisation in :mod:`gcpo.weighting`:

==========================  ===========================  ========================================
name                        inputs                       bound (``SignalSpec.bound(G, rd_max)``)
==========================  ===========================  ========================================
``semantic_entropy``        cluster ids [B,G]            ``log G`` (G = valid group size)
``cosine_dispersion``       embeddings [B,G,D]           ``1``
``barycentric_transport``   point clouds (ragged lists)  ``1`` (see :func:`barycentric_transport`)
``reward_dispersion``       rewards [B,G]                ``rd_max`` (half the reward range)
``eigenscore``              embeddings [B,G,D]           none (can be negative)
``token_entropy``           per-completion entropies     none
``negative_log_likelihood`` per-completion log-probs     none
``grad_nsr``                per-completion gradients     none (the oracle: needs a model's
                            [B,G,P]                      gradients, see :func:`gradient_nsr`)
==========================  ===========================  ========================================

Degenerate groups (G = 1, identical completions, all rewards equal, zero embeddings, every member
masked) give finite values documented per function -- never NaN. Bad input raises ``ValueError``
naming the argument and the shape or value found.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from gcpo.barycenter import barycenter_cost
from gcpo.validation import (
    as_tensor,
    check_mask,
    completion_weights,
    float_tensor,
    shape_of,
    unit_rows,
)

__all__ = [
    "NEEDS",
    "SIGNALS",
    "signal_names",
    "SignalSpec",
    "register_signal",
    "get_signal",
    "semantic_entropy",
    "answer_clusters",
    "embedding_clusters",
    "cosine_dispersion",
    "barycentric_transport",
    "reward_dispersion",
    "eigenscore",
    "token_entropy",
    "negative_log_likelihood",
    "GRAD_NSR_EPS",
    "gradient_noise_stats",
    "gradient_nsr",
]

# --------------------------------------------------------------------------------------------
# Registry
# --------------------------------------------------------------------------------------------

#: What a signal may consume; the scorer (:class:`gcpo.scoring.GroupScorer`) builds each input a
#: configured signal needs once per batch and passes it by this name, plus ``mask[B, G]``.
NEEDS: dict[str, str] = {
    "embeddings": "[B, G, D] float: one sentence embedding per completion (zero rows where masked)",
    "clouds": "B lists of point clouds [m_i, D]: segment embeddings of each *valid* completion",
    "clusters": "[B, G] long: semantic cluster id per completion (answer or embedding clusterer)",
    "rewards": "[B, G] float: the rewards",
    "logprobs": "[B, G] float: length-normalised sequence log-likelihood l_i",
    "token_entropy": "[B, G] float: mean next-token entropy of each completion",
    "gradients": "[B, G, P] float: per-completion policy gradients g_i = A_i * grad l_i on a "
    "parameter subset (P its size, or a CountSketch dimension); zero rows where masked or A_i = 0",
}

Bound = float | Callable[[Any, float], Any] | None


@dataclass(frozen=True)
class SignalSpec:
    """A registered signal.

    Attributes:
        name: unique registered name (``cosine_dispersion``); also accepted: ``alias`` (``cd``).
        fn: called as ``fn(**{need: input for need in needs}, mask=mask, **configure(config))``
            and returns ``[B]`` (higher = more uncertain).
        needs: inputs from :data:`NEEDS` the signal always consumes.
        bound: the signal's maximum for ``bound`` normalisation: a number, a function
            ``(group_size, rd_max) -> float | [B]`` (``group_size`` an int or ``[B]`` tensor of
            valid group sizes), or None (unbounded: only ``rank`` normalisation applies).
        description: one line for tables and ``--help``.
        alias: short name used in metrics, CSV columns and plots (default: ``name``).
        configure: ``config -> dict`` of extra keyword arguments for ``fn`` taken from a
            :class:`gcpo.weighting.WeightingConfig` (the built-ins' knobs), or None.
        config_needs: ``config -> tuple`` of inputs needed only under some settings (the
            built-ins' likelihood weighting needs ``logprobs``), or None.
        label: ``config -> str``, the unique name of this signal under a configuration (as
            LM-Polygraph names each estimator configuration: ``se`` vs ``se_lik``), or None
            for the alias.
    """

    name: str
    fn: Callable[..., torch.Tensor]
    needs: tuple[str, ...]
    bound: Bound
    description: str
    alias: str = ""
    configure: Callable[[Any], dict[str, Any]] | None = None
    config_needs: Callable[[Any], tuple[str, ...]] | None = None
    label: Callable[[Any], str] | None = None

    def __call__(self, *args: Any, **kwargs: Any) -> torch.Tensor:
        return self.fn(*args, **kwargs)

    @property
    def bounded(self) -> bool:
        return self.bound is not None

    def bound_value(self, group_size: Any, rd_max: float) -> Any:
        """The bound for ``group_size`` valid completions (None when unbounded)."""
        if self.bound is None or isinstance(self.bound, (int, float)):
            return self.bound
        return self.bound(group_size, rd_max)

    def needs_for(self, config: Any = None) -> tuple[str, ...]:
        """Every input this signal consumes under ``config`` (``needs`` + ``config_needs``)."""
        extra = self.config_needs(config) if (self.config_needs and config is not None) else ()
        return self.needs + tuple(n for n in extra if n not in self.needs)

    def kwargs_for(self, config: Any = None) -> dict[str, Any]:
        return self.configure(config) if (self.configure and config is not None) else {}

    def label_for(self, config: Any = None) -> str:
        """Unique name of this signal under ``config`` (metrics, CSV columns, plots)."""
        if self.label is not None and config is not None:
            return self.label(config)
        return self.alias or self.name


SIGNALS: dict[str, SignalSpec] = {}


def register_signal(
    name: str,
    *,
    needs: Sequence[str],
    bound: Bound,
    description: str,
    alias: str | None = None,
    configure: Callable[[Any], dict[str, Any]] | None = None,
    config_needs: Callable[[Any], tuple[str, ...]] | None = None,
    label: Callable[[Any], str] | None = None,
) -> Callable[[Callable[..., torch.Tensor]], Callable[..., torch.Tensor]]:
    """Decorator registering a signal function under ``name`` in :data:`SIGNALS`.

    A signal is one function of named inputs from :data:`NEEDS` plus ``mask[B, G]`` returning
    ``[B]``, higher = more uncertain. Once registered (from any module, no edit of gcpo
    needed) it works by name everywhere: ``WeightingConfig(signal=name)``, presets' overrides,
    ``GCPOTrainer(extra_signals=[name])``, ``gcpo signals --signals name`` and ``gcpo
    analyze`` (load the module with ``--plugin``). Example::

        @register_signal("answer_spread", needs=("clusters",), bound=1.0,
                         description="fraction of distinct answers")
        def answer_spread(clusters, mask):
            ...

    See :class:`SignalSpec` for the optional arguments. Raises ValueError for a taken name or
    alias, an unknown need, or a bad bound.
    """
    if not isinstance(name, str) or not name.isidentifier():
        raise ValueError(f"name: expected an identifier-like string, got {name!r}")
    needs_t = (needs,) if isinstance(needs, str) else tuple(needs)
    unknown = [n for n in needs_t if n not in NEEDS]
    if unknown:
        raise ValueError(f"needs: unknown input(s) {unknown}; allowed: {', '.join(NEEDS)}")
    if (bound is not None and not callable(bound)) and (
        isinstance(bound, bool) or not isinstance(bound, (int, float)) or not bound > 0
    ):
        raise ValueError(f"bound: expected a number > 0, a function or None, got {bound!r}")
    short = alias or name
    taken = {n for spec in SIGNALS.values() for n in (spec.name, spec.alias)}
    for n in {name, short}:
        if n in taken:
            raise ValueError(f"signal name {n!r} is already registered")

    def deco(fn: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        SIGNALS[name] = SignalSpec(
            name, fn, needs_t, bound, description, short, configure, config_needs, label
        )
        return fn

    return deco


def get_signal(name: str) -> SignalSpec:
    """The registered :class:`SignalSpec` called ``name`` or with that alias."""
    if name in SIGNALS:
        return SIGNALS[name]
    for spec in SIGNALS.values():
        if spec.alias == name:
            return spec
    raise ValueError(f"signal: unknown name {name!r}; registered: {', '.join(signal_names())}")


def signal_names() -> list[str]:
    """The registered signals as ``alias (name)`` (or ``name``), plugins included."""
    return [f"{s.alias} ({s.name})" if s.alias != s.name else s.name for s in SIGNALS.values()]


def _log_group_size(group_size: Any, rd_max: float) -> Any:
    if isinstance(group_size, torch.Tensor):
        return torch.log(group_size.to(torch.float64).clamp_min(1.0))
    return math.log(max(int(group_size), 1))


def _embeddings(embeddings: Any, mask: Any) -> tuple[torch.Tensor, torch.Tensor]:
    e = float_tensor(embeddings, "embeddings", 3)
    if e.shape[-1] == 0:
        raise ValueError(f"embeddings: embedding dimension D must be >= 1, got shape {shape_of(e)}")
    m = check_mask(mask, (e.shape[0], e.shape[1]), e.device)
    return e, m


# --------------------------------------------------------------------------------------------
# Semantic entropy and clusterers
# --------------------------------------------------------------------------------------------


def semantic_entropy(
    cluster_ids: Any, logprobs: Any | None = None, mask: Any | None = None
) -> torch.Tensor:
    """Semantic entropy of each group.

    Args:
        cluster_ids: ``[B, G]`` integer cluster id per completion. Ids are arbitrary ints compared
            only within a group (``-1`` is not special; give unparseable answers distinct ids,
            as :func:`answer_clusters` does).
        logprobs: ``[B, G]`` length-normalised sequence log-likelihoods ``l_i``. When given,
            completion weights are ``w = softmax(l)`` over the valid members ("likelihood"
            weighting); when None, ``w`` is uniform (discrete SE).
        mask: ``[B, G]`` bool, True = valid completion.

    Returns:
        ``[B]`` float: ``SE = -sum_k p_k log p_k`` with ``p_k = sum_{i in C_k} w_i`` (nats),
        in ``[0, log G_valid]``. Groups with at most one valid member, or a single cluster, give 0.
    """
    ids = as_tensor(cluster_ids, "cluster_ids")
    if ids.dim() != 2:
        raise ValueError(f"cluster_ids: expected 2 dims [B, G], got shape {shape_of(ids)}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"cluster_ids: expected an integer tensor, got dtype {ids.dtype}")
    m = check_mask(mask, (ids.shape[0], ids.shape[1]), ids.device)
    if logprobs is None:
        dtype = torch.float32
        w = completion_weights(None, m, dtype)
    else:
        lp = float_tensor(logprobs, "logprobs", 2).to(ids.device)
        if tuple(lp.shape) != tuple(ids.shape):
            raise ValueError(f"logprobs: expected shape {tuple(ids.shape)}, got {shape_of(lp)}")
        dtype = lp.dtype
        logits = lp.masked_fill(~m, float("-inf"))
        w = torch.softmax(logits, dim=1)
        w = torch.nan_to_num(w, nan=0.0)  # all-masked rows: softmax of all -inf
    same = (ids.unsqueeze(2) == ids.unsqueeze(1)) & m.unsqueeze(1) & m.unsqueeze(2)  # [B,G,G]
    # mass of the cluster each completion belongs to; sum_k p_k log p_k = sum_i w_i log p_{c(i)}
    p_own = (same.to(dtype) * w.unsqueeze(1)).sum(dim=2)
    terms = torch.where(w > 0, w * torch.log(p_own.clamp_min(torch.finfo(dtype).tiny)), 0.0)
    return (-terms.sum(dim=1)).clamp_min(0.0) + 0.0  # + 0.0 turns -0.0 into 0.0


def answer_clusters(
    answer_keys: Sequence[Sequence[str | None]],
) -> tuple[torch.Tensor, torch.Tensor]:
    """Cluster completions by exact match of canonical answer keys.

    Args:
        answer_keys: ``B`` lists of per-completion canonical answers (e.g. from
            ``gcpo.tasks.extract_answer``); ``None`` marks an unparseable answer.

    Returns:
        ``(ids[B, Gmax] long, mask[B, Gmax] bool)``: ids are consecutive ints ``0..K-1`` per group
        in order of first appearance; every ``None`` gets its own fresh id (the released SEED-GRPO
        rule: an unparseable answer is its own cluster). Padding entries have id ``-1`` and mask
        False.
    """
    if isinstance(answer_keys, (str, bytes)) or not isinstance(answer_keys, Sequence):
        raise ValueError(
            f"answer_keys: expected a list of lists of str/None, got {type(answer_keys).__name__}"
        )
    rows: list[list[int]] = []
    for b, group in enumerate(answer_keys):
        if isinstance(group, (str, bytes)) or not isinstance(group, Sequence):
            raise ValueError(
                f"answer_keys[{b}]: expected a list of str/None, got {type(group).__name__}"
            )
        seen: dict[str, int] = {}
        row: list[int] = []
        next_id = 0
        for i, key in enumerate(group):
            if key is None:
                row.append(next_id)
                next_id += 1
                continue
            if not isinstance(key, str):
                raise ValueError(
                    f"answer_keys[{b}][{i}]: expected str or None, got {type(key).__name__}"
                )
            if key not in seen:
                seen[key] = next_id
                next_id += 1
            row.append(seen[key])
        rows.append(row)
    g_max = max((len(r) for r in rows), default=0)
    ids = torch.full((len(rows), g_max), -1, dtype=torch.long)
    mask = torch.zeros((len(rows), g_max), dtype=torch.bool)
    for b, row in enumerate(rows):
        ids[b, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[b, : len(row)] = True
    return ids, mask


def embedding_clusters(
    embeddings: Any, threshold: float = 0.9, mask: Any | None = None
) -> torch.Tensor:
    """Greedy-anchor clustering of completions by cosine similarity (for free-form answers).

    Completions are visited in order; each joins the cluster of the *first* anchor whose cosine
    similarity to it is ``>= threshold``, otherwise it becomes a new anchor. Embeddings are
    unit-normalised inside, so the result is invariant to their scale. A zero embedding (empty
    completion) has cosine 0 to everything.

    Args:
        embeddings: ``[B, G, D]`` float.
        threshold: cosine similarity needed to join an anchor, in ``[-1, 1]``.
        mask: ``[B, G]`` bool, True = valid.

    Returns:
        ``ids[B, G]`` long: the index of the completion's anchor (so ids are ints in ``[0, G)``);
        masked entries get ``-1`` and must be used together with ``mask``.
    """
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)):
        raise ValueError(f"threshold: expected a number, got {threshold!r}")
    if not -1.0 <= float(threshold) <= 1.0:
        raise ValueError(f"threshold: must be in [-1, 1], got {threshold!r}")
    e, m = _embeddings(embeddings, mask)
    u = unit_rows(e)
    sim = u @ u.transpose(1, 2)  # [B,G,G]
    bsz, g = m.shape
    ids = torch.full((bsz, g), -1, dtype=torch.long, device=e.device)
    is_anchor = torch.zeros((bsz, g), dtype=torch.bool, device=e.device)
    for i in range(g):
        cand = is_anchor[:, :i] & (sim[:, i, :i] >= threshold)
        has = cand.any(dim=1)
        # first True along dim 1 (argmax of a bool->int tensor returns the first maximum)
        first = (
            cand.to(torch.int8).argmax(dim=1) if i > 0 else torch.zeros_like(has, dtype=torch.long)
        )
        joined = ids[:, :i].gather(1, first.view(-1, 1)).squeeze(1) if i > 0 else first
        new_id = torch.full_like(joined, i)
        ids[:, i] = torch.where(
            m[:, i], torch.where(has, joined, new_id), torch.full_like(joined, -1)
        )
        is_anchor[:, i] = m[:, i] & ~has
    return ids


# --------------------------------------------------------------------------------------------
# Geometry-aware disagreement
# --------------------------------------------------------------------------------------------


def cosine_dispersion(
    embeddings: Any, weights: Any | None = None, mask: Any | None = None
) -> torch.Tensor:
    """Cosine Dispersion ``CD = 1 - ||sum_i w_i e_i||`` of each group.

    Args:
        embeddings: ``[B, G, D]`` float, any scale (rows are unit-normalised inside, so CD is
            scale-invariant; an all-zero row -- an empty completion -- stays zero and so pulls the
            resultant towards 0, i.e. counts as disagreement).
        weights: ``[B, G]`` non-negative completion weights, renormalised over valid members;
            uniform when None.
        mask: ``[B, G]`` bool, True = valid.

    Returns:
        ``[B]`` float in ``[0, 1]``. Identical completions and single-member groups give 0; an
        all-masked group gives 0. With uniform ``w``,
        ``1 - ||e_bar||^2`` = mean cosine distance over all ordered pairs (i = j included).
    """
    e, m = _embeddings(embeddings, mask)
    w = completion_weights(weights, m, e.dtype)
    resultant = (w.unsqueeze(-1) * unit_rows(e)).sum(dim=1)  # [B,D]
    cd = 1.0 - torch.linalg.vector_norm(resultant, dim=-1)
    cd = torch.where(m.any(dim=1), cd, torch.zeros_like(cd))
    return cd.clamp(0.0, 1.0)


def _cloud_weights(weights: Any, sizes: list[int]) -> list[np.ndarray]:
    """Per-group normalised completion weights for :func:`barycentric_transport`."""
    out: list[np.ndarray] = []
    if weights is None:
        return [np.full(g, 1.0 / g) if g else np.zeros(0) for g in sizes]
    if isinstance(weights, (torch.Tensor, np.ndarray)):
        t = float_tensor(weights, "weights", 2)
        if t.shape[0] != len(sizes) or any(g > t.shape[1] for g in sizes):
            raise ValueError(
                f"weights: expected shape [B={len(sizes)}, G>={max(sizes, default=0)}], "
                f"got {shape_of(t)}"
            )
        rows = [t[b, :g] for b, g in enumerate(sizes)]
    else:
        if len(weights) != len(sizes):
            raise ValueError(f"weights: expected {len(sizes)} groups, got {len(weights)}")
        rows = []
        for b, (row, g) in enumerate(zip(weights, sizes, strict=True)):
            r = float_tensor(row, f"weights[{b}]", 1)
            if r.shape[0] != g:
                raise ValueError(f"weights[{b}]: expected {g} values, got shape {shape_of(r)}")
            rows.append(r)
    for b, r in enumerate(rows):
        arr = r.to(torch.float64).cpu().numpy()
        if (arr < 0).any():
            raise ValueError(f"weights[{b}]: must be >= 0, got minimum {arr.min()}")
        if len(arr) and arr.sum() <= 0:
            raise ValueError(f"weights[{b}]: zero total weight")
        out.append(arr / arr.sum() if len(arr) else arr)
    return out


def barycentric_transport(
    clouds: Sequence[Sequence[Any]],
    weights: Any | None = None,
    *,
    support_size: int | None = None,
    max_iter: int = 5,
    tol: float = 1e-7,
) -> torch.Tensor:
    """Barycentric Transport ``BoT = sum_i w_i W_2^2(nu_i, nu*)`` of each group.

    Each completion ``i`` is the uniform measure ``nu_i`` on its point cloud ``X_i`` (rows
    unit-normalised inside, so BoT is scale-invariant; a zero row stays zero). ``nu*`` is the
    free-support Wasserstein barycenter with ``k`` uniformly weighted support points, computed by
    POT's fixed-point solver ``ot.lp.free_support_barycenter`` (squared-Euclidean cost); the
    costs ``W_2^2`` are then ``ot.emd2`` against that barycenter.

    Defaults: ``k = support_size`` or, when None, the largest cloud size in the group;
    ``max_iter = 5`` fixed-point iterations, stopping early when the squared support displacement
    is ``<= tol``; initial support = among the largest clouds, the one whose mean is closest to the
    weighted mean of all cloud means (its points tiled cyclically if ``k`` is larger).

    Properties: one point per completion gives exactly ``1 - ||e_bar||^2`` (the barycenter of
    Diracs is the Dirac at the weighted mean, reached in one iteration); identical steps shared by
    two traces cost nothing. Bound: 1 -- the fixed-point update never costs more than putting the
    whole barycenter at the origin, which costs exactly 1 for unit rows, so after >= 1 iteration
    BoT is in ``[0, 1]`` (clipped to absorb round-off).

    Args:
        clouds: ``B`` groups, each a list of ``G_b`` point clouds ``[m_i, D]`` (tensor or array);
            an empty cloud (``m_i = 0``) is treated as one zero point (an empty completion).
        weights: completion weights, ``[B, G]`` tensor or ``B`` lists of ``G_b`` values
            (renormalised per group); uniform when None.
        support_size: barycenter support size ``k`` (``>= 1``) or None (see above).
        max_iter: fixed-point iterations (``>= 1``).
        tol: early-stopping threshold on the squared support displacement.

    Returns:
        ``[B]`` float64 in ``[0, 1]``. Groups with fewer than two completions give 0.
    """
    if isinstance(clouds, (torch.Tensor, np.ndarray)) or not isinstance(clouds, Sequence):
        raise ValueError(
            f"clouds: expected B lists of [m_i, D] point clouds, got {type(clouds).__name__}"
        )
    if support_size is not None and (
        isinstance(support_size, bool) or not isinstance(support_size, int) or support_size < 1
    ):
        raise ValueError(f"support_size: expected an int >= 1 or None, got {support_size!r}")
    if isinstance(max_iter, bool) or not isinstance(max_iter, int) or max_iter < 1:
        raise ValueError(f"max_iter: expected an int >= 1, got {max_iter!r}")
    groups: list[list[np.ndarray]] = []
    dim: int | None = None
    for b, group in enumerate(clouds):
        if isinstance(group, (torch.Tensor, np.ndarray)) or not isinstance(group, Sequence):
            raise ValueError(
                f"clouds[{b}]: expected a list of [m_i, D] point clouds, got {type(group).__name__}"
            )
        arrs = []
        for i, cloud in enumerate(group):
            name = f"clouds[{b}][{i}]"
            t = as_tensor(cloud, name)
            if t.dim() != 2:
                raise ValueError(f"{name}: expected 2 dims [m_i, D], got shape {shape_of(t)}")
            t = float_tensor(t, name, 2).to(torch.float64)
            if dim is None:
                dim = t.shape[1]
            if t.shape[1] != dim or dim == 0:
                raise ValueError(f"{name}: expected D={dim} >= 1 columns, got shape {shape_of(t)}")
            if t.shape[0] == 0:
                t = torch.zeros((1, dim), dtype=torch.float64)
            arrs.append(unit_rows(t).cpu().numpy())
        groups.append(arrs)
    ws = _cloud_weights(weights, [len(g) for g in groups])
    out = [
        barycenter_cost(g, w, support_size, max_iter, tol) if len(g) > 1 else 0.0
        for g, w in zip(groups, ws, strict=True)
    ]
    return torch.tensor(out, dtype=torch.float64).clamp(0.0, 1.0)


# --------------------------------------------------------------------------------------------
# Reward dispersion and baselines
# --------------------------------------------------------------------------------------------


def reward_dispersion(rewards: Any, mask: Any | None = None) -> torch.Tensor:
    """Reward Dispersion: population standard deviation of each group's rewards.

    Args:
        rewards: ``[B, G]`` float.
        mask: ``[B, G]`` bool, True = valid (a scored completion; unscorable ones are masked).

    Returns:
        ``[B]`` float, ``sqrt(mean_i (r_i - r_bar)^2)`` over valid members (no Bessel correction,
        unlike TRL's advantage std). Exactly 0 when the valid rewards are all equal (constant,
        single-member and all-masked groups), and > 0 otherwise: ``RD > 0`` is the one test of
        "this group carries learning signal" (:func:`gcpo.weighting.active_groups`).
    """
    r = float_tensor(rewards, "rewards", 2)
    m = check_mask(mask, (r.shape[0], r.shape[1]), r.device)
    x = r.to(torch.float64)
    # Deviations from the first valid member: a constant group is all zeros, so its mean and
    # dispersion are exactly 0 whatever G (a mean of the raw values, sum(r / G), is not).
    first = m.to(torch.int8).argmax(dim=1, keepdim=True)
    d = torch.where(m, x - x.gather(1, first), torch.zeros_like(x))
    n = m.sum(dim=1).clamp_min(1).to(torch.float64)
    mean = d.sum(dim=1, keepdim=True) / n.unsqueeze(1)
    var = torch.where(m, (d - mean) ** 2, torch.zeros_like(d)).sum(dim=1) / n
    constant = (d == 0).all(dim=1)
    # float64 squares of float32 differences cannot underflow, but keep "> 0 iff not constant"
    # exact for any input by flooring at the output dtype's smallest normal number
    rd = var.sqrt().clamp_min(torch.finfo(r.dtype).tiny)
    return torch.where(constant, torch.zeros_like(rd), rd).to(r.dtype)


def eigenscore(embeddings: Any, mask: Any | None = None, alpha: float = 1e-3) -> torch.Tensor:
    """EigenScore (INSIDE, Chen et al. 2024) in its ``G x G`` Gram form.

    Embeddings are unit-normalised, centred over the valid members of the group (``Z``, ``n x D``),
    and ``K = Z Z^T / n`` (``n x n``). The score is ``(1/n) log det(K + alpha I_n)``. ``K`` has the
    same non-zero eigenvalues as the covariance ``Z^T Z / n`` (``D x D``), so this equals
    ``(1/n) log det(Cov + alpha I_D)`` minus the constant ``(D - n)/n * log(alpha)`` -- the same
    ordering of groups of equal size, at ``O(n^2 D)`` instead of ``O(D^3)``.

    Args:
        embeddings: ``[B, G, D]`` float.
        mask: ``[B, G]`` bool, True = valid.
        alpha: ridge ``> 0``.

    Returns:
        ``[B]`` in the embeddings' float dtype (computed in float64); unbounded, usually
        negative. Identical completions or a single member give ``log(alpha)``; an all-masked
        group gives 0.
    """
    if isinstance(alpha, bool) or not isinstance(alpha, (int, float)) or not alpha > 0:
        raise ValueError(f"alpha: expected a number > 0, got {alpha!r}")
    e, m = _embeddings(embeddings, mask)
    out_dtype = e.dtype
    e = e.to(torch.float64)
    u = unit_rows(e)
    n = m.sum(dim=1)  # [B]
    valid = m.to(e.dtype).unsqueeze(-1)
    mean = (u * valid).sum(dim=1) / n.clamp_min(1).to(e.dtype).unsqueeze(-1)
    z = (u - mean.unsqueeze(1)) * valid
    gram = z @ z.transpose(1, 2) / n.clamp_min(1).to(e.dtype).view(-1, 1, 1)
    eye = torch.eye(m.shape[1], dtype=e.dtype, device=e.device)
    logdet = torch.linalg.slogdet(gram + alpha * eye).logabsdet
    # masked rows/cols of `gram` are zero, each adds log(alpha) to logdet: remove them
    logdet = logdet - (m.shape[1] - n).to(e.dtype) * math.log(alpha)
    score = logdet / n.clamp_min(1).to(e.dtype)
    return torch.where(n > 0, score, torch.zeros_like(score)).to(out_dtype)


def _masked_mean(x: torch.Tensor, m: torch.Tensor) -> torch.Tensor:
    w = completion_weights(None, m, x.dtype)
    return (w * x).sum(dim=1)


def token_entropy(entropies: Any, mask: Any | None = None) -> torch.Tensor:
    """Mean over each group of the per-completion mean token entropy.

    Args:
        entropies: ``[B, G]`` float, each completion's mean token entropy (nats).
        mask: ``[B, G]`` bool, True = valid.

    Returns:
        ``[B]`` float; 0 for an all-masked group.
    """
    x = float_tensor(entropies, "entropies", 2)
    return _masked_mean(x, check_mask(mask, (x.shape[0], x.shape[1]), x.device))


def negative_log_likelihood(logprobs: Any, mask: Any | None = None) -> torch.Tensor:
    """Mean over each group of ``-l_i`` (length-normalised negative log-likelihood).

    Args:
        logprobs: ``[B, G]`` float, mean token log-prob of each completion.
        mask: ``[B, G]`` bool, True = valid.

    Returns:
        ``[B]`` float; 0 for an all-masked group.
    """
    x = float_tensor(logprobs, "logprobs", 2)
    return _masked_mean(-x, check_mask(mask, (x.shape[0], x.shape[1]), x.device))


# --------------------------------------------------------------------------------------------
# The built-in signals in the registry's calling convention
# --------------------------------------------------------------------------------------------


def _non_default(config: Any, field: str) -> bool:
    """Whether ``config.<field>`` differs from its dataclass default (for unique labels)."""
    import dataclasses

    for f in dataclasses.fields(config):
        if f.name == field:
            default = f.default if f.default is not dataclasses.MISSING else None
            return getattr(config, field) != default
    return False


def _likelihood(config: Any) -> tuple[str, ...]:
    return ("logprobs",) if config.completion_weighting == "likelihood" else ()


def _softmax_weights(logprobs: Any, mask: torch.Tensor) -> torch.Tensor:
    """Likelihood completion weights ``softmax(l)`` over each group's valid members."""
    lp = float_tensor(logprobs, "logprobs", 2).to(torch.float64)
    return torch.softmax(lp.masked_fill(~mask, float("-inf")), dim=1).nan_to_num(0.0)


def _se_label(c: Any) -> str:
    out = "se"
    if c.se_clusterer == "embedding":
        out += "_emb" + (f"{c.cluster_threshold:g}" if _non_default(c, "cluster_threshold") else "")
    return out + ("_lik" if c.se_likelihood_weighting else "")


@register_signal(
    "semantic_entropy",
    needs=("clusters",),
    bound=_log_group_size,
    description="entropy (nats) of the completion mass over meaning clusters (SEED-GRPO)",
    alias="se",
    config_needs=lambda c: ("logprobs",) if c.se_likelihood_weighting else (),
    label=_se_label,
)
def _semantic_entropy_signal(
    clusters: Any, mask: Any | None = None, logprobs: Any | None = None
) -> torch.Tensor:
    return semantic_entropy(clusters, logprobs, mask)


@register_signal(
    "cosine_dispersion",
    needs=("embeddings",),
    bound=1.0,
    description="1 - ||weighted mean of unit embeddings||, in [0,1]",
    alias="cd",
    config_needs=_likelihood,
    label=lambda c: "cd" + ("_lik" if _likelihood(c) else ""),
)
def _cosine_dispersion_signal(
    embeddings: Any, mask: Any | None = None, logprobs: Any | None = None
) -> torch.Tensor:
    e, m = _embeddings(embeddings, mask)
    weights = None if logprobs is None else _softmax_weights(logprobs, m)
    return cosine_dispersion(e, weights, m)


def _bot_label(c: Any) -> str:
    out = "bot" + ("_lik" if _likelihood(c) else "")
    for field, tag in (("bot_max_segments", "seg"), ("bot_support_size", "k"), ("bot_max_iter", "it")):
        if _non_default(c, field):
            out += f"_{tag}{getattr(c, field)}"
    return out


@register_signal(
    "barycentric_transport",
    needs=("clouds",),
    bound=1.0,
    description="transport cost from a group's point clouds to their Wasserstein barycenter",
    alias="bot",
    configure=lambda c: {"support_size": c.bot_support_size, "max_iter": c.bot_max_iter},
    config_needs=_likelihood,
    label=_bot_label,
)
def _barycentric_transport_signal(
    clouds: Sequence[Sequence[Any]],
    mask: Any | None = None,
    logprobs: Any | None = None,
    *,
    support_size: int = 0,
    max_iter: int = 5,
) -> torch.Tensor:
    weights = None
    if logprobs is not None:  # clouds hold the valid completions only
        if mask is None:
            raise ValueError("mask: likelihood-weighted BoT needs the mask the clouds were cut by")
        lp = float_tensor(logprobs, "logprobs", 2)
        m = check_mask(mask, (lp.shape[0], lp.shape[1]), lp.device)
        w = _softmax_weights(lp, m)
        weights = [w[b][m[b]] for b in range(len(clouds))]
    return barycentric_transport(
        clouds, weights, support_size=support_size or None, max_iter=max_iter
    )


@register_signal(
    "reward_dispersion",
    needs=("rewards",),
    bound=lambda group_size, rd_max: rd_max,
    description="population std of the group's rewards (no Bessel correction)",
    alias="rd",
)
def _reward_dispersion_signal(rewards: Any, mask: Any | None = None) -> torch.Tensor:
    return reward_dispersion(rewards, mask)


@register_signal(
    "eigenscore",
    needs=("embeddings",),
    bound=None,
    description="INSIDE EigenScore: (1/G) log det(Gram of centred embeddings + alpha I)",
    alias="eig",
    configure=lambda c: {"alpha": c.eigenscore_alpha},
    label=lambda c: "eig" + (f"_a{c.eigenscore_alpha:g}" if _non_default(c, "eigenscore_alpha") else ""),
)
def _eigenscore_signal(embeddings: Any, mask: Any | None = None, alpha: float = 1e-3) -> torch.Tensor:
    return eigenscore(embeddings, mask, alpha)


_mean_token_entropy = token_entropy  # the adapter's argument is called token_entropy too


@register_signal(
    "token_entropy",
    needs=("token_entropy",),
    bound=None,
    description="group mean of per-completion mean token entropy",
    alias="te",
)
def _token_entropy_signal(token_entropy: Any, mask: Any | None = None) -> torch.Tensor:
    return _mean_token_entropy(token_entropy, mask)


@register_signal(
    "negative_log_likelihood",
    needs=("logprobs",),
    bound=None,
    description="group mean of -l_i (length-normalised negative log-likelihood)",
    alias="nll",
)
def _negative_log_likelihood_signal(logprobs: Any, mask: Any | None = None) -> torch.Tensor:
    return negative_log_likelihood(logprobs, mask)


# --------------------------------------------------------------------------------------------
# The oracle: gradient noise-to-signal ratio (docs/design.md section 8)
# --------------------------------------------------------------------------------------------

#: ``eps`` in ``NSR = V / (||g_bar||^2 + eps)``, the value ``gcpo analyze`` uses (per-completion
#: gradients of a transformer block are O(1e-3..1) in norm, so it only guards ``0 / 0``).
GRAD_NSR_EPS = 1e-12


def gradient_noise_stats(
    gradients: Any, mask: Any | None = None, eps: float = GRAD_NSR_EPS
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-group gradient variance, squared norm of the mean gradient, and NSR.

    Over the valid members of each group, ``g_bar = (1/n) sum_i g_i``,
    ``V = (1/n) sum_i ||g_i - g_bar||^2`` (population variance, no Bessel correction) and
    ``NSR = V / (||g_bar||^2 + eps)``; computed in float64.

    Args:
        gradients: ``[B, G, P]`` float, per-completion gradients ``g_i = A_i * grad l_i``.
        mask: ``[B, G]`` bool, True = valid; masked rows are ignored whatever they hold.
        eps: ``> 0``.

    Returns:
        ``(V, ||g_bar||^2, NSR)``, each ``[B]`` float64. A group with no valid member, one valid
        member, or all-zero gradients (an inactive group: every ``A_i = 0``) gives 0 for all three.
    """
    if isinstance(eps, bool) or not isinstance(eps, (int, float)) or not eps > 0:
        raise ValueError(f"eps: expected a number > 0, got {eps!r}")
    g = float_tensor(gradients, "gradients", 3).to(torch.float64)
    m = check_mask(mask, (g.shape[0], g.shape[1]), g.device).to(torch.float64)
    count = m.sum(1).clamp_min(1.0)
    mean = (g * m[..., None]).sum(1) / count[:, None]
    sq_dev = ((g - mean[:, None]) ** 2).sum(-1)
    variance = (sq_dev * m).sum(1) / count
    mean_sq = (mean**2).sum(-1)
    return variance, mean_sq, variance / (mean_sq + eps)


def gradient_nsr(gradients: Any, mask: Any | None = None, eps: float = GRAD_NSR_EPS) -> torch.Tensor:
    """Gradient noise-to-signal ratio of each group (the oracle signal ``grad_nsr``).

    ``NSR = V / (||g_bar||^2 + eps)`` of the group's per-completion policy gradients (see
    :func:`gradient_noise_stats`): high when the completions pull the policy in directions that
    mostly cancel, i.e. the group's contribution to the update is mostly noise. Invariant to the
    order of the completions and to a common scale of the gradients (up to ``eps``), and -- by
    linearity -- approximately preserved by a CountSketch projection of the gradients (each
    squared norm within a relative ``sqrt(2/k)`` standard deviation, ``gcpo.gradients``).

    Args:
        gradients: ``[B, G, P]`` float.
        mask: ``[B, G]`` bool, True = valid.
        eps: ``> 0``.

    Returns:
        ``[B]`` float32, ``>= 0`` and finite; 0 for an inactive group (all ``A_i = 0``, so every
        ``g_i = 0``), a single valid member, or an all-masked group.
    """
    return gradient_noise_stats(gradients, mask, eps)[2].to(torch.float32)


@register_signal(
    "grad_nsr",
    needs=("gradients",),
    bound=None,
    description="oracle: gradient noise-to-signal ratio V / ||g_bar||^2 of the group's "
    "per-completion policy gradients (needs the model; training only)",
    alias="nsr",
)
def _grad_nsr_signal(gradients: Any, mask: Any | None = None) -> torch.Tensor:
    return gradient_nsr(gradients, mask)
