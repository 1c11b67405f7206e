"""Text groups -> signals -> weights: the one glue between completions and the pure core.

Used by the ``gcpo signals`` CLI, the TRL trainer and the diagnostics. No training framework in
here: inputs are strings and numbers (:class:`Groups`), outputs are ``[B]`` tensors.

::

    groups = Groups.from_lists(prompts, completions, rewards, logprobs=None, answers=None)
    scorer = GroupScorer(preset("gcpo"))                 # default embedder: offline MiniLM
    state = initial_state(scorer.config)                 # rank window; the caller owns/saves it
    result = scorer.score(groups, state)                 # result.weights: [B]
    extra = scorer.signals(groups, ["se", "cd", "bot"])  # any registered signal, by name or alias

What each signal consumes (only what the requested signals need is computed; every unique text
is embedded once per call, completions and segments together):

========================== ======= ========================================================
signal (alias)             needs   from
========================== ======= ========================================================
semantic_entropy (se)      answers ``groups.answers`` (canonicalised) or ``answer_fn``
                                   (``se_clusterer: answer``); embeddings (``embedding``)
cosine_dispersion (cd)     embed   one embedding per completion
barycentric_transport (bot) embed  one embedding per segment (``bot_max_segments``)
reward_dispersion (rd)     rewards
eigenscore (eig)           embed   one embedding per completion
token_entropy (te)         ``groups.token_entropy``
negative_log_likelihood    ``groups.logprobs``
(nll)
grad_nsr (nsr)             grads   ``groups.gradients`` (the oracle; a trainer computes them)
========================== ======= ========================================================

Likelihood weighting (``se_likelihood_weighting`` / ``completion_weighting: likelihood``) uses
``softmax(logprobs)`` within each group; when ``groups.logprobs`` is None it falls back to
uniform weights with a warning (and a note in :attr:`ScoreResult.notes`).
"""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gcpo.embedders import Embedder, EmbedderConfig, get_embedder
from gcpo.signals import SIGNALS, answer_clusters, embedding_clusters, get_signal
from gcpo.validation import as_tensor, float_tensor
from gcpo.weighting import (
    WeightingConfig,
    WeightingState,
    active_groups,
    group_weights_detailed,
    initial_state,
    is_weighted,
)

__all__ = [
    "FunctionScorer",
    "WeightFunction",
    "Groups",
    "GroupScorer",
    "ScoreResult",
    "resolve_signal_names",
    "short_name",
    "weighting_acts",
    "TRAINER_INPUTS",
]

logger = logging.getLogger("gcpo")

#: Per-completion inputs a trainer computes on demand (:meth:`GroupScorer.needs`).
TRAINER_INPUTS = frozenset({"logprobs", "token_entropy", "gradients"})


def weighting_acts(active: torch.Tensor, weighted: bool, renormalized: bool) -> bool:
    """Whether a batch's weights can change the update: some group is active, and with
    renormalisation at least two are (a lone active group is renormalised to weight 1)."""
    n = int(active.sum())
    return weighted and n >= (2 if renormalized else 1)


def short_name(signal: str) -> str:
    """Short alias of a registered signal (``cosine_dispersion`` -> ``cd``), for table headers."""
    return get_signal(signal).alias


def resolve_signal_names(names: Sequence[str] | str) -> list[str]:
    """Registered signal names from names or aliases (a comma-separated string is accepted).

    Order is kept, duplicates dropped; an unknown name raises ValueError listing what exists.
    """
    if isinstance(names, str):
        names = [n.strip() for n in names.split(",") if n.strip()]
    out: list[str] = []
    for name in names:
        try:
            full = get_signal(name).name
        except ValueError:
            allowed = ", ".join(f"{s.alias} ({s.name})" for s in SIGNALS.values())
            raise ValueError(f"signals: unknown signal {name!r}; allowed: {allowed}") from None
        if full not in out:
            out.append(full)
    return out


# ---------------------------------------------------------------------------------------------
# Input
# ---------------------------------------------------------------------------------------------


def _is_seq(x: Any) -> bool:
    return isinstance(x, (list, tuple)) or (isinstance(x, torch.Tensor) and x.dim() >= 1)


def _padded(
    values: Any, sizes: list[int], name: str, *, required: bool = False, boolean: bool = False
) -> torch.Tensor | None:
    """Ragged per-completion numbers -> ``[B, Gmax]`` float32 (0 in padding), checked finite
    (``boolean``: bools -> 1.0 / 0.0, anything else is an error).

    Lists must have exactly ``G_b`` values per group; a ``[B, G]`` tensor / array may be wider
    than a group (its padding columns are ignored).
    """
    if values is None:
        if required:
            raise ValueError(f"{name}: required, got None")
        return None
    padded_input = hasattr(values, "tolist") and not isinstance(values, (list, tuple))
    if padded_input:
        if getattr(values, "ndim", 2) != 2:
            raise ValueError(f"{name}: expected shape [B, G], got {tuple(values.shape)}")
        values = values.tolist()
    if not isinstance(values, (list, tuple)) or len(values) != len(sizes):
        n = len(values) if isinstance(values, (list, tuple)) else type(values).__name__
        raise ValueError(f"{name}: expected {len(sizes)} groups (one per prompt), got {n}")
    g_max = max(sizes, default=0)
    out = torch.zeros(len(sizes), g_max, dtype=torch.float32)
    for b, (row, g) in enumerate(zip(values, sizes, strict=True)):
        if hasattr(row, "tolist") and not isinstance(row, (list, tuple)):
            row = row.tolist()
        if not isinstance(row, (list, tuple)):
            raise ValueError(f"{name}[{b}]: expected a list of {g} numbers, got {row!r:.80}")
        if len(row) < g or (len(row) > g and not padded_input):
            raise ValueError(
                f"{name}[{b}]: expected {g} values (one per completion), got {len(row)}"
            )
        for i, v in enumerate(row[:g]):
            if boolean:
                if not isinstance(v, bool):
                    raise ValueError(f"{name}[{b}][{i}]: expected true/false, got {v!r:.80}")
                out[b, i] = float(v)
                continue
            if isinstance(v, bool) or not isinstance(v, (int, float)):
                raise ValueError(f"{name}[{b}][{i}]: expected a number, got {v!r:.80}")
            if not math.isfinite(v):
                raise ValueError(f"{name}[{b}][{i}]: expected a finite number, got {v!r}")
            out[b, i] = float(v)
    return out


def _gradients(values: Any, sizes: list[int]) -> torch.Tensor | None:
    """``[B, Gmax, P]`` float32 per-completion gradients, checked (see :class:`Groups`)."""
    if values is None:
        return None
    g = float_tensor(values, "gradients", 3)
    g_max = max(sizes, default=0)
    if g.shape[0] != len(sizes) or g.shape[1] < g_max:
        raise ValueError(
            f"gradients: expected shape [{len(sizes)}, >= {g_max}, P] (groups, completions, "
            f"parameters), got {tuple(g.shape)}"
        )
    g = g[:, :g_max].to(torch.float32)
    padding = torch.ones(g.shape[:2], dtype=torch.bool)
    for b, n in enumerate(sizes):
        padding[b, :n] = False
    return g.masked_fill(padding[..., None], 0.0) if bool(padding.any()) else g


@dataclass
class Groups:
    """A batch of ``B`` prompt groups of up to ``Gmax`` completions (ragged, with a mask).

    Attributes:
        prompts: ``B`` prompt strings.
        completions: ``B`` lists of ``G_b >= 1`` completion strings.
        rewards: ``[B, Gmax]`` float32 (0 in padding).
        mask: ``[B, Gmax]`` bool, True = a valid completion: a real one (not padding) that could be
            scored. Every signal, the reward dispersion and the likelihood weights use only valid
            completions.
        logprobs: ``[B, Gmax]`` length-normalised sequence log-likelihoods (mean token log-prob),
            or None.
        token_entropy: ``[B, Gmax]`` mean token entropy per completion (nats), or None.
        answers: ``B`` lists of per-completion final-answer keys (``None`` = unparseable), or
            None to extract them from the completions.
        gradients: ``[B, Gmax, P]`` float32 per-completion policy gradients
            ``g_i = A_i * grad l_i`` (GRPO advantages before weighting; zero rows for masked
            completions and inactive groups), or None. ``P`` is the size of the parameter subset
            or, with a CountSketch projection, its dimension (``gcpo.gradients``); consumed by
            the ``grad_nsr`` oracle.
    """

    prompts: list[str]
    completions: list[list[str]]
    rewards: torch.Tensor
    mask: torch.Tensor
    logprobs: torch.Tensor | None = None
    token_entropy: torch.Tensor | None = None
    answers: list[list[str | None]] | None = None
    gradients: torch.Tensor | None = None

    @property
    def num_groups(self) -> int:
        return len(self.prompts)

    @property
    def group_sizes(self) -> torch.Tensor:
        """``[B]`` long: valid completions per group."""
        return self.mask.sum(dim=1)

    @classmethod
    def from_lists(
        cls,
        prompts: Sequence[str],
        completions: Sequence[Sequence[str]],
        rewards: Any,
        logprobs: Any = None,
        answers: Sequence[Sequence[str | None]] | None = None,
        token_entropy: Any = None,
        valid: Any = None,
        gradients: Any = None,
    ) -> Groups:
        """Validate and pad ragged lists (tensors ``[B, G]`` are accepted for the numbers).

        ``valid`` (optional; ``B`` lists of ``G_b`` bools or a ``[B, G]`` bool tensor) marks the
        completions that could be scored; ``False`` (e.g. a reward function returned None) leaves
        a completion out of the mask, so it enters no signal and no reward dispersion (its
        ``rewards`` entry must still be a number; it is ignored).

        ``gradients`` (optional) is a ``[B, Gmax', P]`` float tensor / array of per-completion
        gradients with ``Gmax' >= Gmax`` (extra columns are dropped), finite.

        Raises ValueError naming the field and ``[group][completion]`` index for a length
        mismatch, a non-string completion, or a NaN / infinite number.
        """
        if isinstance(prompts, str) or not isinstance(prompts, Sequence):
            raise ValueError(f"prompts: expected a list of strings, got {type(prompts).__name__}")
        if isinstance(completions, str) or not isinstance(completions, Sequence):
            raise ValueError(
                f"completions: expected a list of lists of strings, got {type(completions).__name__}"
            )
        if len(completions) != len(prompts):
            raise ValueError(
                f"completions: expected {len(prompts)} groups (one per prompt), got {len(completions)}"
            )
        for b, p in enumerate(prompts):
            if not isinstance(p, str):
                raise ValueError(f"prompts[{b}]: expected a string, got {type(p).__name__}")
        comps: list[list[str]] = []
        for b, group in enumerate(completions):
            if isinstance(group, str) or not isinstance(group, Sequence):
                raise ValueError(
                    f"completions[{b}]: expected a list of strings, got {type(group).__name__}"
                )
            if len(group) == 0:
                raise ValueError(f"completions[{b}]: a group needs at least one completion, got 0")
            for i, c in enumerate(group):
                if not isinstance(c, str):
                    raise ValueError(
                        f"completions[{b}][{i}]: expected a string, got {type(c).__name__}"
                    )
            comps.append(list(group))
        sizes = [len(g) for g in comps]
        r = _padded(rewards, sizes, "rewards", required=True)
        assert r is not None
        mask = torch.zeros(r.shape, dtype=torch.bool)
        for b, g in enumerate(sizes):
            mask[b, :g] = True
        if valid is not None:
            ok = _padded(valid, sizes, "valid", boolean=True)
            assert ok is not None
            mask &= ok.to(torch.bool)
        keys: list[list[str | None]] | None = None
        if answers is not None:
            if isinstance(answers, str) or len(answers) != len(sizes):
                raise ValueError(
                    f"answers: expected {len(sizes)} lists of per-completion answers, "
                    f"got {answers!r:.80}"
                )
            keys = []
            for b, (row, g) in enumerate(zip(answers, sizes, strict=True)):
                if isinstance(row, str) or not _is_seq(row) or len(row) != g:
                    raise ValueError(
                        f"answers[{b}]: expected a list of {g} per-completion answers "
                        f"(str or null), got {row!r:.80}"
                    )
                for i, a in enumerate(row):
                    if a is not None and not isinstance(a, str):
                        raise ValueError(
                            f"answers[{b}][{i}]: expected a string or null, got {type(a).__name__}"
                        )
                keys.append(list(row))
        return cls(
            prompts=list(prompts),
            completions=comps,
            rewards=r,
            mask=mask,
            logprobs=_padded(logprobs, sizes, "logprobs"),
            token_entropy=_padded(token_entropy, sizes, "token_entropy"),
            answers=keys,
            gradients=_gradients(gradients, sizes),
        )

    @classmethod
    def from_rows(cls, rows: Sequence[dict[str, Any]], source: str = "rows") -> Groups:
        """Build from dicts with keys ``prompt``, ``completions``, ``rewards`` and optional
        ``logprobs``, ``answers``, ``token_entropy`` (the ``gcpo signals`` JSONL format).

        Errors name ``source`` and the 1-based row number.
        """
        if not rows:
            raise ValueError(f"{source}: no groups")
        for n, row in enumerate(rows, start=1):
            if not isinstance(row, dict):
                raise ValueError(f"{source}: row {n}: expected an object, got {type(row).__name__}")
        optional = ("logprobs", "answers", "token_entropy")
        present = {k: [k in row and row[k] is not None for row in rows] for k in optional}
        for k, flags in present.items():
            if any(flags) and not all(flags):
                raise ValueError(
                    f"{source}: row {flags.index(False) + 1} has no {k!r} but row "
                    f"{flags.index(True) + 1} has; give {k!r} for every group or for none"
                )
        for n, row in enumerate(rows, start=1):
            prompt: Any = row.get("prompt")
            comps: Any = row.get("completions")
            try:
                cls.from_lists(
                    [prompt],
                    [comps],
                    [row.get("rewards")],
                    logprobs=[row["logprobs"]] if present["logprobs"][0] else None,
                    answers=[row["answers"]] if present["answers"][0] else None,
                    token_entropy=[row["token_entropy"]] if present["token_entropy"][0] else None,
                )
            except ValueError as exc:
                msg = str(exc).replace("[0]", "", 1)
                raise ValueError(f"{source}: row {n}: {msg}") from None

        def col(key: str) -> list[Any] | None:
            return [row[key] for row in rows] if all(present.get(key, [True])) else None

        return cls.from_lists(
            [row["prompt"] for row in rows],
            [row["completions"] for row in rows],
            [row["rewards"] for row in rows],
            logprobs=col("logprobs"),
            answers=col("answers"),
            token_entropy=col("token_entropy"),
        )


# ---------------------------------------------------------------------------------------------
# Output
# ---------------------------------------------------------------------------------------------


@dataclass
class ScoreResult:
    """Per-group outputs of :meth:`GroupScorer.score` (every tensor ``[B]``, float).

    Attributes:
        signal: name of the uncertainty signal (``"none"`` for plain GRPO).
        uncertainty: the raw signal ``U`` (zeros for ``none``).
        reward_dispersion: ``RD``, population std of the rewards.
        normalized: ``Un`` in [0, 1].
        calibrated: ``U~`` in [0, 1].
        weights: the advantage weight of each group.
        signals: every signal computed, by registered name (the uncertainty signal, RD and any
            ``extra_signals``).
        timings: seconds: ``embed_s`` (embedder), ``signals_s`` (all signal functions) and one
            ``<signal>_s`` per signal.
        active: ``[B]`` bool, the groups that carry learning signal (``RD > 0``); the weights
            are renormalised over these, and only these are scaled in effect.
        fallback: True when every active group got weight 0 and the weights fell back to 1.
        rd_clipped: groups whose RD exceeded a configured ``rd_max`` (clipped; the scorer warns
            once, the trainers count it as ``gcpo/rd_clipped``).
        weighted: False for plain GRPO (no signal, no rule): weight 1 by definition.
        acts: whether the weights can change the update at all: False when no group is active,
            or when renormalisation leaves a lone active group at weight 1 (the trainers warn
            once and count such steps as ``gcpo/inert_step``).
        labels: registered name -> unique label of each computed signal under the scorer's config
            (``semantic_entropy`` -> ``se_lik`` for SEED-GRPO's likelihood-weighted SE).
        state: the state used and updated: a :class:`~gcpo.weighting.WeightingState` (rank
            window, residual fit, reward range), a weight function's dict, or None.
        notes: human-readable warnings (e.g. a likelihood weighting that fell back to uniform).
    """

    signal: str
    uncertainty: torch.Tensor
    reward_dispersion: torch.Tensor
    normalized: torch.Tensor
    calibrated: torch.Tensor
    weights: torch.Tensor
    signals: dict[str, torch.Tensor]
    timings: dict[str, float]
    active: torch.Tensor
    fallback: bool = False
    state: WeightingState | dict[str, Any] | None = None  # a weight function's state: dict
    rd_clipped: int = 0
    acts: bool = True
    weighted: bool = True
    labels: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def rows(self) -> list[dict[str, float]]:
        """One plain dict per group: every signal (by its unique label), ``rd``,
        ``u_normalized``, ``u_calibrated``, ``weight``."""
        out = []
        for b in range(self.weights.shape[0]):
            row = {
                self.labels.get(k, short_name(k)): float(v[b])
                for k, v in self.signals.items()
                if k != "reward_dispersion"
            }
            row["rd"] = float(self.reward_dispersion[b])
            row["u_normalized"] = float(self.normalized[b])
            row["u_calibrated"] = float(self.calibrated[b])
            row["weight"] = float(self.weights[b])
            out.append(row)
        return out


# ---------------------------------------------------------------------------------------------
# Scorer
# ---------------------------------------------------------------------------------------------


def _default_answer_fn() -> Callable[[str], str | None]:
    """The ``math`` task kind's answer key (the default when no task says otherwise)."""
    from gcpo.tasks.registry import get_task

    return get_task("math").answer_key


def _canonical(key: str | None) -> str | None:
    if key is None:
        return None
    from gcpo.tasks import canonical_answer

    return canonical_answer(key) or None


def _embeds(inputs: set[str], config: WeightingConfig) -> bool:
    """Whether signals consuming ``inputs`` need the embedder: completion embeddings, segment
    clouds, or semantic-entropy clusters by embedding."""
    return bool({"embeddings", "clouds"} & inputs) or (
        "clusters" in inputs and config.se_clusterer == "embedding"
    )


class GroupScorer:
    """Turns :class:`Groups` into signals and per-group weights for one :class:`WeightingConfig`.

    Args:
        config: the weighting (e.g. ``gcpo.presets.preset("gcpo")``).
        embedder: an :class:`~gcpo.embedders.Embedder`, a name / :class:`EmbedderConfig` for
            :func:`~gcpo.embedders.get_embedder`, or None for the default offline MiniLM. Built
            lazily: signals that need no embeddings never load it.
        answer_fn: completion -> canonical final answer (or None), for ``semantic_entropy`` with
            the ``answer`` clusterer when ``groups.answers`` is None. Default
            ``gcpo.tasks.extract_answer``.
    """

    def __init__(
        self,
        config: WeightingConfig,
        embedder: Embedder | str | EmbedderConfig | None = None,
        answer_fn: Callable[[str], str | None] | None = None,
    ) -> None:
        if not isinstance(config, WeightingConfig):
            raise ValueError(f"config: expected a WeightingConfig, got {type(config).__name__}")
        self.config = config
        self._embedder_spec = embedder
        self._embedder: Embedder | None = None
        self.answer_fn = answer_fn
        self._warned_clip = False

    def initial_state(self) -> Any:
        """A fresh state for :meth:`score` (the rank window, or None); checkpoint it."""
        return initial_state(self.config)

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            self._embedder = get_embedder(self._embedder_spec)
        return self._embedder

    # -- what to compute ------------------------------------------------------------------------

    def needs(self, extra_signals: Sequence[str] | str = ()) -> set[str]:
        """Per-completion inputs :meth:`score` needs beyond texts and rewards, for the config's
        signal plus ``extra_signals``: a subset of :data:`TRAINER_INPUTS`
        (``{"logprobs", "token_entropy", "gradients"}``).

        A trainer computes exactly these (e.g. one no-grad forward pass for log-probs; per-
        completion policy gradients of the active groups only for ``gradients``, which the
        ``grad_nsr`` oracle needs), so every configured signal runs, and a likelihood weighting
        never silently falls back to uniform. An adapter that cannot compute one refuses the
        configuration (verl cannot compute ``gradients``).
        """
        return self.inputs(extra_signals) & TRAINER_INPUTS

    def inputs(self, extra_signals: Sequence[str] | str = ()) -> set[str]:
        """Every input the config's signal plus ``extra_signals`` consume: their registered
        needs under this config (``embeddings``, ``clouds``, ``clusters``, ``logprobs``, ...)."""
        out: set[str] = set()
        for name in self._names(extra_signals):
            out.update(get_signal(name).needs_for(self.config))
        return out

    def uses_embedder(self, extra_signals: Sequence[str] | str = ()) -> bool:
        """Whether scoring embeds anything (completions, segments, or embedding clusters)."""
        return _embeds(self.inputs(extra_signals), self.config)

    def _names(self, extra_signals: Sequence[str] | str = ()) -> list[str]:
        own = [] if self.config.signal == "none" else [self.config.signal]
        return resolve_signal_names([*own, *resolve_signal_names(extra_signals)])

    def label(self, name: str) -> str:
        """The unique name of signal ``name`` under this scorer's config (``se_lik``, ``cd``,
        ``bot_seg16``): the key of metrics, CSV columns and plots."""
        return get_signal(name).label_for(self.config)

    def _embed(
        self, groups: Groups, completions: bool, clouds: bool
    ) -> tuple[torch.Tensor | None, list[list[torch.Tensor]] | None]:
        """Embeddings ``[B, Gmax, D]`` and/or point clouds, from one ``embed`` call."""
        texts: list[str] = []
        seg_spans: list[list[tuple[int, int]]] = []
        valid = groups.mask.tolist()
        if completions:  # invalid completions keep a zero row (masked out of every signal)
            for group, ok in zip(groups.completions, valid, strict=True):
                texts.extend(t for t, v in zip(group, ok, strict=False) if v)
        if clouds:  # the point clouds of the valid completions only
            m = self.config.bot_max_segments
            for group, ok in zip(groups.completions, valid, strict=True):
                spans = []
                for text, v in zip(group, ok, strict=False):
                    if not v:
                        continue
                    segs = self.embedder.segments(text, m)
                    spans.append((len(texts), len(texts) + len(segs)))
                    texts.extend(segs)
                seg_spans.append(spans)
        vecs = self.embedder.embed(texts) if texts else torch.zeros(0, 1)
        if vecs.dim() != 2 or vecs.shape[0] != len(texts):
            raise ValueError(
                f"embedder: embed() of {len(texts)} texts returned shape {tuple(vecs.shape)}, "
                "expected [N, D]"
            )
        vecs = vecs.to("cpu", torch.float32)
        emb = None
        if completions:
            b, g = groups.mask.shape
            emb = torch.zeros(b, g, vecs.shape[1], dtype=torch.float32)
            idx = groups.mask.nonzero()  # row-major: the order the valid texts were added in
            emb[idx[:, 0], idx[:, 1]] = vecs[: idx.shape[0]]
        cl = None
        if clouds:
            cl = [[vecs[a:z] for a, z in spans] for spans in seg_spans]
        return emb, cl

    def _clusters(self, groups: Groups, embeddings: torch.Tensor | None) -> torch.Tensor:
        """``[B, Gmax]`` cluster ids by the config's clusterer (answer keys or embeddings)."""
        cfg = self.config
        if cfg.se_clusterer == "embedding":
            assert embeddings is not None
            return embedding_clusters(embeddings, cfg.cluster_threshold, groups.mask)
        if groups.answers is not None:
            keys = [[_canonical(a) for a in row] for row in groups.answers]
        else:
            fn = self.answer_fn or _default_answer_fn()
            keys = [[fn(c) for c in group] for group in groups.completions]
        ids, _ = answer_clusters(keys)
        return ids

    # -- public -------------------------------------------------------------------------------

    def signals(
        self,
        groups: Groups,
        names: Sequence[str] | str | None = None,
        *,
        timings: dict[str, float] | None = None,
        notes: list[str] | None = None,
    ) -> dict[str, torch.Tensor]:
        """Compute signals by name or alias (default: the config's signal) -> ``{name: [B]}``.

        ``timings`` (optional) receives ``embed_s``, ``signals_s`` and ``<name>_s`` seconds;
        ``notes`` (optional) receives fallbacks (e.g. likelihood weighting without logprobs).
        """
        if not isinstance(groups, Groups):
            raise ValueError(f"groups: expected a Groups, got {type(groups).__name__}")
        if names is None:
            names = [] if self.config.signal == "none" else [self.config.signal]
        wanted = resolve_signal_names(names)
        timings = {} if timings is None else timings
        notes = [] if notes is None else notes
        cfg = self.config
        specs = [get_signal(n) for n in wanted]
        needed = {n: spec.needs_for(cfg) for n, spec in zip(wanted, specs, strict=True)}
        given = {
            "logprobs": groups.logprobs,
            "token_entropy": groups.token_entropy,
            "gradients": groups.gradients,
        }
        for spec in specs:
            for need in spec.needs:  # always consumed: missing is an error
                if need in given and given[need] is None:
                    why = (
                        " (per-completion policy gradients: only a trainer or gcpo analyze, "
                        "which run the model, compute them)"
                        if need == "gradients"
                        else ""
                    )
                    raise ValueError(f"groups.{need}: signal {spec.name!r} needs it, got None{why}")
        all_needs = {need for ns in needed.values() for need in ns}

        t0 = time.perf_counter()
        emb, clouds = (None, None)
        need_emb = "embeddings" in all_needs or (
            "clusters" in all_needs and cfg.se_clusterer == "embedding"
        )
        if _embeds(all_needs, cfg):
            emb, clouds = self._embed(groups, need_emb, "clouds" in all_needs)
        timings["embed_s"] = timings.get("embed_s", 0.0) + time.perf_counter() - t0

        inputs: dict[str, Any] = {
            "embeddings": emb,
            "clouds": clouds,
            "rewards": groups.rewards,
            **given,
        }
        out: dict[str, torch.Tensor] = {}
        total = 0.0
        for name, spec in zip(wanted, specs, strict=True):
            t = time.perf_counter()
            if "clusters" in needed[name] and "clusters" not in inputs:
                inputs["clusters"] = self._clusters(groups, emb)  # timed with its first user
            kwargs = {}
            for need in needed[name]:
                if inputs[need] is None:  # only a config-dependent need can be missing here
                    note = (
                        f"{spec.name}: likelihood weighting needs per-completion {need}, none "
                        "given; using uniform weights"
                    )
                    if note not in notes:
                        notes.append(note)
                        warnings.warn(note, stacklevel=2)
                    continue
                kwargs[need] = inputs[need]
            value = spec.fn(**kwargs, mask=groups.mask, **spec.kwargs_for(cfg))
            value = as_tensor(value, f"signal {name!r}").reshape(-1)
            if value.shape[0] != groups.num_groups:
                raise ValueError(
                    f"signal {name!r}: returned {value.shape[0]} values for "
                    f"{groups.num_groups} groups"
                )
            dt = time.perf_counter() - t
            total += dt
            timings[f"{name}_s"] = timings.get(f"{name}_s", 0.0) + dt
            out[name] = value.to(torch.float32)
        timings["signals_s"] = timings.get("signals_s", 0.0) + total
        return out

    def score(
        self,
        groups: Groups,
        state: WeightingState | None = None,
        *,
        extra_signals: Sequence[str] | str = (),
    ) -> ScoreResult:
        """Signals, calibrated uncertainty and the weight of every group.

        Args:
            groups: the batch.
            state: rank-normalisation window (read and updated). With ``rank`` normalisation and
                ``state=None`` a fresh window is used, so ranks are within this batch only; the
                returned ``result.state`` holds it.
            extra_signals: more signals to compute and report (they do not change the weights).
        """
        cfg = self.config
        timings: dict[str, float] = {}
        notes: list[str] = []
        names = [] if cfg.signal == "none" else [cfg.signal]
        names = resolve_signal_names(
            [*names, "reward_dispersion", *resolve_signal_names(extra_signals)]
        )
        sig = self.signals(groups, names, timings=timings, notes=notes)
        rd = sig["reward_dispersion"]
        u = torch.zeros_like(rd) if cfg.signal == "none" else sig[cfg.signal]
        if state is None:
            state = initial_state(cfg)
        t = time.perf_counter()
        res = group_weights_detailed(
            u, rd, cfg, state, group_size=groups.group_sizes, rewards=groups.rewards, mask=groups.mask
        )
        timings["weights_s"] = time.perf_counter() - t
        if res.rd_clipped and not self._warned_clip:
            self._warned_clip = True
            note = (
                f"rd_max: {res.rd_clipped} group(s) had reward dispersion above rd_max="
                f"{cfg.rd_max:g} (largest {float(rd.max()):.4g}) and were clipped, so the "
                "weighting cannot tell them apart; set rd_max to half your reward range, or "
                "rd_max: null to take it from the rewards seen (counted in gcpo/rd_clipped)"
            )
            logger.warning("gcpo: %s", note)
            notes.append(note)
        return ScoreResult(
            signal=cfg.signal,
            uncertainty=u,
            reward_dispersion=rd,
            normalized=res.normalized,
            calibrated=res.calibrated,
            weights=res.weights,
            signals=sig,
            timings=timings,
            active=res.active,
            fallback=res.fallback,
            state=state,
            notes=notes,
            labels={name: self.label(name) for name in sig},
            rd_clipped=res.rd_clipped,
            acts=weighting_acts(res.active, is_weighted(cfg), cfg.renormalize),
            weighted=is_weighted(cfg),
        )


# ---------------------------------------------------------------------------------------------
# A user-defined weight function in place of a preset
# ---------------------------------------------------------------------------------------------

#: ``(groups, state) -> weights[B]``: ``state`` is a dict the function may read and update
#: (plain JSON data: the trainer saves it in every checkpoint and restores it on resume).
WeightFunction = Callable[[Groups, dict[str, Any]], Any]


class FunctionScorer(GroupScorer):
    """A :class:`GroupScorer` whose weights come from a user function instead of a preset.

    ``fn(groups, state) -> weights[B]`` receives the gathered batch (texts, rewards, validity
    mask, and ``logprobs`` / ``token_entropy`` / ``gradients`` when ``fn.needs`` names them) and a dict it owns.
    The weights are checked (``[B]``, finite, ``>= 0``) and reported like a preset's: over the
    active groups (``RD > 0``), with RD and any ``extra_signals`` computed by gcpo.

    Args:
        fn: the weight function; an optional attribute ``needs`` (e.g. ``{"logprobs"}``) asks the
            trainer for per-completion inputs.
        config: settings for the ``extra_signals`` (clusterer, BoT, ...); default
            ``WeightingConfig(signal="none")``.
        embedder, answer_fn: as in :class:`GroupScorer`.
    """

    def __init__(
        self,
        fn: WeightFunction,
        config: WeightingConfig | None = None,
        embedder: Embedder | str | EmbedderConfig | None = None,
        answer_fn: Callable[[str], str | None] | None = None,
    ) -> None:
        if not callable(fn):
            raise ValueError(f"fn: expected a callable (groups, state) -> weights, got {fn!r}")
        super().__init__(config or WeightingConfig(signal="none"), embedder, answer_fn)
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)
        extra = set(getattr(fn, "needs", ()))
        if not extra <= TRAINER_INPUTS:
            raise ValueError(
                f"fn.needs: expected a subset of {sorted(TRAINER_INPUTS)}, got {sorted(extra)}"
            )
        self._fn_needs = extra

    def initial_state(self) -> dict[str, Any]:
        return {}

    def needs(self, extra_signals: Sequence[str] | str = ()) -> set[str]:
        return super().needs(extra_signals) | self._fn_needs

    def score(
        self,
        groups: Groups,
        state: Any = None,
        *,
        extra_signals: Sequence[str] | str = (),
    ) -> ScoreResult:
        timings: dict[str, float] = {}
        notes: list[str] = []
        names = resolve_signal_names(["reward_dispersion", *resolve_signal_names(extra_signals)])
        sig = self.signals(groups, names, timings=timings, notes=notes)
        rd = sig["reward_dispersion"]
        state = {} if state is None else state
        if not isinstance(state, dict):
            raise ValueError(f"state: a weight function's state is a dict, got {type(state).__name__}")
        t = time.perf_counter()
        w = float_tensor(self.fn(groups, state), f"{self.name}(groups, state)", 1)
        timings["weights_s"] = time.perf_counter() - t
        if w.shape[0] != groups.num_groups:
            raise ValueError(
                f"{self.name}(groups, state): returned {w.shape[0]} weights for "
                f"{groups.num_groups} groups"
            )
        if bool((w < 0).any()):
            raise ValueError(f"{self.name}(groups, state): weights must be >= 0, got {w.min().item()}")
        zeros = torch.zeros_like(rd)
        return ScoreResult(
            signal=self.name,
            uncertainty=zeros,
            reward_dispersion=rd,
            normalized=zeros,
            calibrated=zeros,
            weights=w.to(torch.float32).cpu(),
            signals=sig,
            timings=timings,
            active=active_groups(rd),
            acts=weighting_acts(active_groups(rd), True, renormalized=False),
            state=state,
            notes=notes,
            labels={name: self.label(name) for name in sig},
        )
