"""The GCPO addition to one verl step, without verl: token ids + rewards -> one weight per group.

:class:`GCPOAdvantageStep` is what :class:`gcpo.verl.trainer.GCPOVerlTrainer` runs after verl has
computed its GRPO advantages. It is kept free of verl (and of Ray / TransferQueue) so that it can
be tested and benchmarked in gcpo's own environment. Per batch it:

1. groups the completions by uid (order of first appearance; a uid seen once is a
   *single-response* prompt: verl gives it its raw score as advantage, there is no group to
   weigh, so its weight is exactly 1 and it is not scored -- it neither enters the rank window
   nor the renormalisation);
2. decodes the completions with the policy's tokenizer (``skip_special_tokens=True``, as verl's
   reward managers do; byte-level BPE tokenizers through :class:`gcpo.verl.decode.ByteLevelDecoder`,
   which gives the same texts much faster) into :class:`gcpo.scoring.Groups`;
3. scores them with :class:`gcpo.scoring.GroupScorer` -- the one place where text becomes
   signals and weights, so the weights are the ones ``gcpo.scoring`` gives for the same texts,
   rewards and embedder. With a :class:`~gcpo.embedders.StaticEmbedder` (the default,
   ``static-minilm``) the embedder is re-indexed to the policy's vocabulary and the completions
   are embedded from the token ids the policy generated (no re-tokenization): this equals
   embedding the decoded text with that same re-indexed embedder whenever tokenizing the text
   gives back the generated ids;
4. returns one weight per uid and the ``gcpo/*`` metrics.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from gcpo import fields  # the typed fields (field, validate)
from gcpo.embedders import Embedder, EmbedderConfig, StaticEmbedder, get_embedder
from gcpo.fields import ConfigError
from gcpo.metrics import score_metrics
from gcpo.presets import available_presets, check_preset, preset
from gcpo.scoring import Groups, GroupScorer, resolve_signal_names
from gcpo.verl.decode import ByteLevelDecoder
from gcpo.weighting import WeightingConfig

__all__ = ["VerlGCPOConfig", "GCPOAdvantageStep", "PackedIds", "StepResult", "weighting_for"]

STATE_VERSION = 1


@dataclass
class VerlGCPOConfig:
    """GCPO settings of the verl plugin (``trainer.v1.gcpo`` in verl's config)."""

    preset: str = fields.field(
        "gcpo",
        help="weighting preset; the 'weighting' fields override it",
        names=available_presets,
    )
    weighting: dict[str, Any] = fields.field(
        default_factory=dict,
        help="overrides of gcpo.weighting.WeightingConfig fields, e.g. {alpha: 0.5}",
    )
    embedder: str = fields.field(
        "static-minilm",
        help="sentence embedder: 'static-minilm' (default: fast, runs in verl's TaskRunner on CPU), "
        "'all-MiniLM-L6-v2', 'hashing', or a local model directory",
    )
    embed_token_ids: bool = fields.field(
        True,
        help="with a static embedder: re-index it to the policy's vocabulary and embed the "
        "generated token ids directly (no re-tokenization of the decoded text)",
    )
    embedder_batch_size: int = fields.field(
        64, help="texts per forward pass of a sentence-transformers embedder", min=1
    )
    device: str = fields.field(
        "cpu",
        help="embedder device: only 'cpu' (the gcpo step runs in verl's TaskRunner actor, "
        "which Ray starts without GPUs)",
    )
    extra_signals: list[str] = fields.field(
        default_factory=list,
        help="more signals to log each step without changing the weights, e.g. [se, cd, bot]",
    )


def weighting_for(settings: VerlGCPOConfig) -> WeightingConfig:
    """The :class:`WeightingConfig` of ``settings``: its preset with the field overrides."""
    check_preset(settings.preset, "trainer.v1.gcpo.preset")
    return preset(settings.preset, settings.weighting, where="trainer.v1.gcpo.weighting.")


@dataclass
class StepResult:
    """Output of :meth:`GCPOAdvantageStep.score`.

    Attributes:
        weights: one weight per uid seen (1.0 for single-response uids).
        metrics: ``gcpo/*`` numbers for verl's logger: :func:`gcpo.metrics.score_metrics` (the
            names the TRL trainer logs) plus ``gcpo/groups`` and ``gcpo/single_response_groups``.
        texts: the decoded completions of the scored groups, group by group (groups in order of
            first appearance, completions in input order within a group); empty when no signal
            reads the text (then nothing is decoded).
        timings: seconds of the parts (``decode_s``, ``embed_ids_s``, ``embed_s``,
            ``signals_s``, ``weights_s``, ``step_s``), for benchmarks.
    """

    weights: dict[str, float]
    metrics: dict[str, float]
    texts: list[str]
    timings: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PackedIds:
    """Token ids of N completions as one flat ``[sum(lengths)]`` tensor and ``[N]`` lengths:
    verl's jagged layout (``values()`` / ``offsets().diff()`` of a nested tensor), no copy."""

    flat: torch.Tensor
    lengths: torch.Tensor

    @classmethod
    def from_jagged(cls, nested: Any) -> PackedIds:
        return cls(nested.values().to(torch.long), nested.offsets().diff().to(torch.long))

    @classmethod
    def from_sequences(cls, seqs: Sequence[Sequence[int] | torch.Tensor]) -> PackedIds:
        ts = [torch.as_tensor(x, dtype=torch.long).reshape(-1) for x in seqs]
        flat = torch.cat(ts) if ts else torch.zeros(0, dtype=torch.long)
        return cls(flat, torch.tensor([t.numel() for t in ts], dtype=torch.long))

    def __len__(self) -> int:
        return int(self.lengths.numel())

    def select(self, rows: Sequence[int]) -> PackedIds:
        """The completions ``rows``, in that order (one vectorised gather)."""
        idx = torch.as_tensor(list(rows), dtype=torch.long)
        starts = torch.cumsum(self.lengths, 0) - self.lengths
        lens = self.lengths[idx]
        first = torch.repeat_interleave(starts[idx], lens)
        within = torch.arange(int(lens.sum())) - torch.repeat_interleave(
            torch.cumsum(lens, 0) - lens, lens
        )
        return PackedIds(self.flat[first + within], lens)


class _PolicyEmbedder:
    """The scorer's embedder in verl: one object for the whole run, built on first use.

    Per batch, :meth:`set_batch` hands it the keys the batch's completions go by in
    :class:`gcpo.scoring.Groups` (their decoded texts, or row placeholders when no signal reads
    the text) and their generated token ids. With a static embedder on the token-id path the
    completions are embedded from those ids (once per batch, on the first request); any other
    text (e.g. BoT segments) goes to the embedder itself.
    """

    def __init__(self, step: GCPOAdvantageStep) -> None:
        self.step = step
        self._rows: dict[str, int] = {}
        self._ids: tuple[torch.Tensor, torch.Tensor] | None = None
        self._vectors: torch.Tensor | None = None
        self.embed_ids_s = 0.0

    def set_batch(self, keys: Sequence[str], ids: tuple[torch.Tensor, torch.Tensor] | None) -> None:
        self._rows = {}
        for i, k in enumerate(keys):
            self._rows.setdefault(k, i)
        self._ids, self._vectors, self.embed_ids_s = ids, None, 0.0

    def _batch_vectors(self) -> torch.Tensor | None:
        inner = self.step.embedder
        if self._ids is None or not self.step.token_id_path:
            return None
        if self._vectors is None:
            assert isinstance(inner, StaticEmbedder)
            t = time.perf_counter()
            self._vectors = inner.embed_token_ids(*self._ids)
            self.embed_ids_s = time.perf_counter() - t
        return self._vectors

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        vectors = self._batch_vectors()
        inner = self.step.embedder
        if vectors is None:
            return inner.embed(texts)
        index = [self._rows.get(t, -1) for t in texts]
        missing = [t for t, i in zip(texts, index, strict=True) if i < 0]
        if not missing:
            return vectors[torch.as_tensor(index, dtype=torch.long)]
        out = torch.empty(len(texts), vectors.shape[1], dtype=torch.float32)
        have = [k for k, i in enumerate(index) if i >= 0]
        if have:
            out[have] = vectors[[index[k] for k in have]]
        out[[k for k, i in enumerate(index) if i < 0]] = inner.embed(missing)
        return out

    def segments(self, text: str, max_segments: int | None = None) -> list[str]:
        return self.step.embedder.segments(text, max_segments)


def _groups_by_uid(uids: Sequence[Any]) -> tuple[list[str], list[list[int]]]:
    order: dict[str, list[int]] = {}
    for i, u in enumerate(uids):
        order.setdefault(str(u), []).append(i)
    names = list(order)
    return names, [order[n] for n in names]


#: What verl's advantage step can supply per completion beyond texts and rewards.
VERL_SUPPLIES = frozenset({"logprobs"})
_WHY_NOT = {
    "token_entropy": "verl keeps no per-token entropies for the advantage step "
    "(negative_log_likelihood works)",
    "gradients": "verl computes no per-completion policy gradients before the advantage step",
}


class GCPOAdvantageStep:
    """Per-group GCPO weights for verl batches (see the module docstring).

    One :class:`~gcpo.scoring.GroupScorer` for the whole run; what a batch computes (log-probs,
    decoded texts, embeddings) comes from its signals' registered needs, so a plugin signal
    (``gcpo.signals.register_signal``) works here exactly as in the TRL trainer.

    Args:
        settings: :class:`VerlGCPOConfig`.
        tokenizer: the policy's tokenizer (what verl's trainer holds as ``self.tokenizer``); may
            be None at construction and set before the first :meth:`score`.
        embedder: an embedder object to use instead of ``settings.embedder`` (tests).
    """

    def __init__(
        self, settings: VerlGCPOConfig, tokenizer: Any, embedder: Embedder | None = None
    ) -> None:
        fields.validate(settings, prefix="trainer.v1.gcpo.")
        if settings.device != "cpu":
            raise ConfigError(
                f"trainer.v1.gcpo.device: got {settings.device!r}; the gcpo step runs in verl's "
                "TaskRunner actor, which Ray starts without GPUs (no accelerator is visible "
                "there), so only 'cpu' works"
            )
        self.settings = settings
        self.weighting = weighting_for(settings)
        try:
            extra = resolve_signal_names(settings.extra_signals)
        except ValueError as exc:
            raise ConfigError(f"trainer.v1.gcpo.extra_signals: {exc}") from None
        own = [] if self.weighting.signal == "none" else [self.weighting.signal]
        self.signal_names = resolve_signal_names([*own, "reward_dispersion", *extra])
        self.extra_signals = extra
        self.tokenizer = tokenizer
        self._embedder = embedder
        self._view = _PolicyEmbedder(self)
        self.scorer = GroupScorer(self.weighting, embedder=self._view)
        self.needs = self.scorer.needs(extra)
        unsupported = sorted(self.needs - VERL_SUPPLIES)
        if unsupported:
            why = "; ".join(_WHY_NOT.get(n, f"verl cannot supply {n}") for n in unsupported)
            raise ConfigError(
                f"trainer.v1.gcpo: preset {settings.preset!r} with signals "
                f"{', '.join(self.signal_names)} needs per-completion {', '.join(unsupported)}: "
                f"{why}"
            )
        # every input the signals consume (the registry's needs, config-dependent ones too)
        self._inputs = self.scorer.inputs(extra)
        self.state: Any = self.scorer.initial_state()
        self._byte_decoder: ByteLevelDecoder | None = None
        self._byte_decoder_for: Any = None

    # -- what the batch must carry ----------------------------------------------------------------

    @property
    def needs_logprobs(self) -> bool:
        """Whether :meth:`score` needs per-completion length-normalised log-likelihoods."""
        return "logprobs" in self.needs

    @property
    def needs_embeddings(self) -> bool:
        """Whether a signal consumes sentence embeddings (completions, segments, or embedding
        clusters), by the signals' registered needs."""
        return self.scorer.uses_embedder(self.extra_signals)

    @property
    def token_id_path(self) -> bool:
        """Completions are embedded from the generated token ids (static embedder)."""
        return self.settings.embed_token_ids and isinstance(self.embedder, StaticEmbedder)

    @property
    def needs_texts(self) -> bool:
        """Whether a signal reads the completions' text (segments, answer clusters, or a
        text embedder); otherwise the step does not decode them."""
        i = self._inputs
        if "clouds" in i or ("clusters" in i and self.weighting.se_clusterer != "embedding"):
            return True
        return self.needs_embeddings and not self.token_id_path

    @property
    def needs_token_ids(self) -> bool:
        """Whether :meth:`score` reads the responses' token ids at all."""
        return self.needs_texts or self.needs_embeddings

    @property
    def embedder(self) -> Embedder:
        """The embedder (built on first use; a static one is re-indexed to the tokenizer)."""
        if self._embedder is None:
            s = self.settings
            base = get_embedder(
                EmbedderConfig(name=s.embedder, batch_size=s.embedder_batch_size, device=s.device)
            )
            if isinstance(base, StaticEmbedder) and s.embed_token_ids:
                if self.tokenizer is None:
                    raise ValueError(
                        "gcpo step: no tokenizer set (needed to re-index the embedder)"
                    )
                base = base.for_tokenizer(self.tokenizer, name=f"{s.embedder}@policy")
            self._embedder = base
        return self._embedder

    def prepare(self) -> None:
        """Do the one-time work now rather than in the first batch: build the fast decoder and
        the embedder (loading, building or re-indexing the static model)."""
        if self.tokenizer is None:
            raise ValueError("gcpo step: no tokenizer set")
        if self.needs_embeddings:
            self.embedder  # noqa: B018
        if self.needs_texts:
            self._decoder()

    def _decoder(self) -> ByteLevelDecoder | None:
        if self._byte_decoder_for is not self.tokenizer:
            self._byte_decoder = ByteLevelDecoder.for_tokenizer(self.tokenizer)
            self._byte_decoder_for = self.tokenizer
        return self._byte_decoder

    # -- checkpoint state ---------------------------------------------------------------------------

    def state_dict(self) -> dict[str, Any]:
        """Plain data to save with a checkpoint (the scorer's state, e.g. the rank window)."""
        return {
            "version": STATE_VERSION,
            "signal": self.weighting.signal,
            "rank_state": None if self.state is None else self.state.state_dict(),
        }

    def load_state_dict(self, data: Mapping[str, Any]) -> None:
        if not isinstance(data, Mapping) or data.get("version") != STATE_VERSION:
            raise ValueError(
                f"gcpo state: expected a mapping with version {STATE_VERSION}, got {data!r:.120}"
            )
        saved = data.get("rank_state")
        if self.state is None or saved is None:
            return
        if data.get("signal") != self.weighting.signal:
            raise ValueError(
                f"gcpo state: the checkpoint's state is of signal {data.get('signal')!r}, "
                f"this run weighs by {self.weighting.signal!r}"
            )
        self.state.load_state_dict(dict(saved))

    # -- one batch ----------------------------------------------------------------------------------

    def _decode(self, flat: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        if self.tokenizer is None:
            raise ValueError("gcpo step: no tokenizer set (needed to decode the completions)")
        decoder = self._decoder()
        if decoder is not None:
            return decoder.decode(flat, lengths)
        seqs = [s.tolist() for s in flat.split(lengths.tolist())]
        return list(self.tokenizer.batch_decode(seqs, skip_special_tokens=True))

    def score(
        self,
        uids: Sequence[Any],
        token_ids: Sequence[Sequence[int] | torch.Tensor] | PackedIds | None,
        scores: Sequence[float] | torch.Tensor,
        logprobs: Sequence[float] | torch.Tensor | None = None,
    ) -> StepResult:
        """Weights of the groups in one batch.

        Args:
            uids: one uid per completion; completions with the same uid form a group.
            token_ids: the response token ids of each completion (lists, 1-D tensors, or one
                :class:`PackedIds`); may be None when :attr:`needs_token_ids` is False.
            scores: the outcome reward of each completion (what verl's GRPO used).
            logprobs: length-normalised log-likelihood of each completion (needed when
                :attr:`needs_logprobs`).
        """
        t_start = time.perf_counter()
        n = len(uids)
        scores_t = torch.as_tensor(scores, dtype=torch.float64).reshape(-1)
        if token_ids is None and self.needs_token_ids:
            raise ValueError("gcpo step: this weighting reads the responses, got token_ids=None")
        if (token_ids is not None and len(token_ids) != n) or scores_t.numel() != n:
            got = "no" if token_ids is None else len(token_ids)
            raise ValueError(
                f"gcpo step: got {n} uids, {got} token-id sequences and "
                f"{scores_t.numel()} scores; expected one of each per completion"
            )
        if not bool(torch.isfinite(scores_t).all()):
            raise ValueError("gcpo step: scores contain NaN or inf")
        lp_t = None
        if self.needs_logprobs:
            if logprobs is None:
                raise ValueError("gcpo step: this weighting needs logprobs, got None")
            lp_t = torch.as_tensor(logprobs, dtype=torch.float64).reshape(-1)
        names, members = _groups_by_uid(uids)
        weights = {name: 1.0 for name in names}
        scored = [k for k, m in enumerate(members) if len(m) > 1]
        metrics: dict[str, float] = {
            "gcpo/groups": float(len(scored)),
            "gcpo/single_response_groups": float(len(names) - len(scored)),
        }
        timings: dict[str, float] = {}
        if not scored:
            metrics["gcpo/active_groups"] = 0.0
            timings["step_s"] = time.perf_counter() - t_start
            return StepResult(weights, metrics, [], timings)

        t = time.perf_counter()
        ids = None
        if token_ids is not None and self.needs_token_ids:
            packed = (
                token_ids
                if isinstance(token_ids, PackedIds)
                else PackedIds.from_sequences(token_ids)
            )
            ids = (packed.flat, packed.lengths)
        texts: list[str] = []
        if self.needs_texts:  # every row is decoded / embedded, in input order
            assert ids is not None
            keys = self._decode(*ids)
            texts = [keys[i] for k in scored for i in members[k]]
        else:  # no signal reads the text: the completions go by their row
            keys = [f"\x00row{i}" for i in range(n)]
        timings["decode_s"] = time.perf_counter() - t
        self._view.set_batch(keys, ids)

        def per_group(values: torch.Tensor) -> list[list[float]]:
            flat = values.tolist()  # one conversion, not one tensor index per completion
            return [[flat[i] for i in members[k]] for k in scored]

        groups = Groups.from_lists(
            [names[k] for k in scored],
            [[keys[i] for i in members[k]] for k in scored],
            per_group(scores_t),
            logprobs=None if lp_t is None else per_group(lp_t),
        )
        result = self.scorer.score(groups, self.state, extra_signals=self.extra_signals)
        if result.state is not None:
            self.state = result.state
        for k, w in zip(scored, result.weights.tolist(), strict=True):
            weights[names[k]] = float(w)
        metrics.update(score_metrics(result))
        timings["embed_ids_s"] = self._view.embed_ids_s
        timings.update(result.timings)
        timings["step_s"] = time.perf_counter() - t_start
        for key, value in metrics.items():
            if not math.isfinite(value):
                raise ValueError(f"gcpo step: metric {key} is {value}")
        return StepResult(weights, metrics, texts, timings)
