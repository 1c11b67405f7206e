"""scoring: Groups validation, GroupScorer signals (agreement with the core, invariances,
no duplicate embedding work) and weights."""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence

import numpy as np
import pytest
import torch

from gcpo.embedders import HashingEmbedder
from gcpo.presets import preset
from gcpo.scoring import Groups, GroupScorer, ScoreResult, resolve_signal_names, short_name
from gcpo.signals import (
    answer_clusters,
    barycentric_transport,
    cosine_dispersion,
    eigenscore,
    reward_dispersion,
    semantic_entropy,
)
from gcpo.tasks import extract_answer
from gcpo.weighting import WeightingConfig, WeightingState


class SpyEmbedder(HashingEmbedder):
    """Hashing embedder that records every embed() call."""

    def __init__(self) -> None:
        super().__init__(dim=64)
        self.batches: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        self.batches.append(list(texts))
        return super().embed(texts)


class ForbiddenEmbedder(HashingEmbedder):
    def embed(self, texts: Sequence[str]) -> torch.Tensor:
        raise AssertionError("the embedder must not be used for these signals")


MATH = [
    "First 3 + 4 = 7.\nThen 7 * 2 = 14.\nThe answer is \\boxed{14}.",
    "3 + 4 is 7. Doubling gives 14.\nSo \\boxed{14}",
    "Adding gives 8.\nDoubling gives 16.\nThe answer is \\boxed{16}.",
    "I am not sure how to do this.",
]
QA = ["Canberra is the capital.", "The capital is Canberra.", "It is Sydney, the largest city."]


def make_groups(**kw) -> Groups:  # type: ignore[no-untyped-def]
    return Groups.from_lists(
        ["What is (3+4)*2?", "What is the capital of Australia?"],
        [MATH, QA],
        [[1, 1, 0, 0], [1, 1, 0]],
        **kw,
    )


# ---------------------------------------------------------------------------------------------
# Groups
# ---------------------------------------------------------------------------------------------


def test_groups_pad_ragged_lists_with_a_mask() -> None:
    g = make_groups(logprobs=[[-0.1, -0.2, -0.3, -0.4], [-1.0, -2.0, -3.0]])
    assert g.num_groups == 2
    assert g.rewards.shape == (2, 4) and g.mask.tolist() == [[True] * 4, [True] * 3 + [False]]
    assert g.group_sizes.tolist() == [4, 3]
    assert g.rewards[1, 3] == 0 and g.logprobs is not None and g.logprobs[1, 2] == -3.0
    # a padded tensor is accepted; its padding columns are ignored
    t = Groups.from_lists(["a", "b"], [["x"], ["y", "z"]], torch.tensor([[1.0, 99.0], [0.0, 1.0]]))
    assert t.rewards.tolist() == [[1.0, 0.0], [0.0, 1.0]]


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"rewards": [[1, 1, 0, float("nan")], [1, 1, 0]]}, r"rewards\[0\]\[3\].*finite"),
        ({"rewards": [[1, 1, 0], [1, 1, 0]]}, r"rewards\[0\]: expected 4 values.*got 3"),
        ({"rewards": [[1, 1, 0, 0]]}, r"rewards: expected 2 groups"),
        ({"rewards": [[1, 1, 0, "x"], [1, 1, 0]]}, r"rewards\[0\]\[3\]: expected a number"),
        ({"logprobs": [[0, 0, 0, math.inf], [0, 0, 0]]}, r"logprobs\[0\]\[3\]"),
        ({"answers": [["14"] * 4, ["a", "b"]]}, r"answers\[1\]: expected a list of 3"),
        ({"answers": "14"}, r"answers: expected 2 lists"),
        ({"answers": [["14"] * 4, ["a", "b", 3]]}, r"answers\[1\]\[2\]"),
        ({"token_entropy": [[0.1] * 4, [0.1] * 4]}, r"token_entropy\[1\]: expected 3"),
    ],
)
def test_groups_bad_input_names_the_field(kwargs: dict, match: str) -> None:
    base = {"rewards": [[1, 1, 0, 0], [1, 1, 0]]}
    base.update(kwargs)
    rewards = base.pop("rewards")
    with pytest.raises(ValueError, match=match):
        Groups.from_lists(["p", "q"], [MATH, QA], rewards, **base)


def test_groups_bad_completions() -> None:
    with pytest.raises(ValueError, match=r"completions\[1\]: a group needs at least one"):
        Groups.from_lists(["p", "q"], [["a"], []], [[1], []])
    with pytest.raises(ValueError, match=r"completions\[0\]\[1\]: expected a string"):
        Groups.from_lists(["p"], [["a", None]], [[1, 0]])
    with pytest.raises(ValueError, match=r"completions: expected 2 groups"):
        Groups.from_lists(["p", "q"], [["a"]], [[1]])
    with pytest.raises(ValueError, match=r"prompts\[0\]"):
        Groups.from_lists([3], [["a"]], [[1]])


def test_groups_from_rows_name_the_row() -> None:
    rows = [
        {"prompt": "p", "completions": ["a", "b"], "rewards": [1, 0]},
        {"prompt": "q", "completions": ["c", "d"], "rewards": [1]},
    ]
    with pytest.raises(ValueError, match=r"in.jsonl: row 2: rewards: expected 2 values"):
        Groups.from_rows(rows, source="in.jsonl")
    rows[1]["rewards"] = [1, float("nan")]
    with pytest.raises(ValueError, match=r"row 2: rewards\[1\].*finite"):
        Groups.from_rows(rows, source="in.jsonl")
    rows[1]["rewards"] = [1, 1]
    rows[0]["logprobs"] = [-1.0, -2.0]
    with pytest.raises(ValueError, match=r"row 2 has no 'logprobs'"):
        Groups.from_rows(rows, source="in.jsonl")
    rows[1]["logprobs"] = [-1.0, -1.5]
    g = Groups.from_rows(rows)
    assert g.prompts == ["p", "q"] and g.logprobs is not None and g.answers is None
    with pytest.raises(ValueError, match="no groups"):
        Groups.from_rows([])
    with pytest.raises(ValueError, match="row 2: expected an object, got list"):
        Groups.from_rows([rows[0], ["x"]])  # type: ignore[list-item]


# ---------------------------------------------------------------------------------------------
# signals agree with the core functions
# ---------------------------------------------------------------------------------------------


def test_signal_names_and_aliases() -> None:
    assert resolve_signal_names("cd, bot,se,cd") == [
        "cosine_dispersion",
        "barycentric_transport",
        "semantic_entropy",
    ]
    assert short_name("negative_log_likelihood") == "nll"
    with pytest.raises(ValueError, match=r"unknown signal 'xyz'.*cd \(cosine_dispersion\)"):
        resolve_signal_names(["xyz"])


def test_signals_match_core_functions_on_the_same_embeddings() -> None:
    g = make_groups()
    emb = HashingEmbedder(dim=64)
    scorer = GroupScorer(preset("gcpo"), embedder=emb)
    got = scorer.signals(g, ["cd", "bot", "se", "rd", "eig"])
    ref = HashingEmbedder(dim=64)
    e = torch.zeros(2, 4, 64)
    e[0] = ref.embed(MATH)
    e[1, :3] = ref.embed(QA)
    mask = g.mask
    torch.testing.assert_close(got["cosine_dispersion"], cosine_dispersion(e, mask=mask))
    torch.testing.assert_close(got["eigenscore"], eigenscore(e, mask=mask).float())
    torch.testing.assert_close(got["reward_dispersion"], reward_dispersion(g.rewards, mask).float())
    ids, _ = answer_clusters([[extract_answer(c) for c in grp] for grp in (MATH, QA)])
    torch.testing.assert_close(got["semantic_entropy"], semantic_entropy(ids, mask=mask))
    clouds = [[ref.embed(ref.segments(c, 8)) for c in grp] for grp in (MATH, QA)]
    torch.testing.assert_close(got["barycentric_transport"], barycentric_transport(clouds).float())
    # the math group: answers 14, 14, 16, None -> three clusters with masses 1/2, 1/4, 1/4
    assert got["semantic_entropy"][0].item() == pytest.approx(
        -(0.5 * math.log(0.5) + 0.5 * math.log(0.25))
    )


def test_each_unique_text_is_embedded_once_in_one_call() -> None:
    spy = SpyEmbedder()
    group = ["same answer", "same answer", "Line one.\nLine two.", "same answer"]
    g = Groups.from_lists(["p", "q"], [group, ["same answer"]], [[1, 0, 1, 0], [1]])
    GroupScorer(preset("gcpo"), embedder=spy).signals(g, ["cd", "bot", "eig"])
    assert len(spy.batches) == 1
    assert spy.calls == len(set(spy.batches[0])) == 4  # "same answer", the 2-line text, 2 lines


def test_signals_that_need_no_embeddings_never_touch_the_embedder() -> None:
    g = make_groups(logprobs=[[-0.1] * 4, [-0.2] * 3], token_entropy=[[1.0] * 4, [2.0] * 3])
    scorer = GroupScorer(preset("seed-grpo"), embedder=ForbiddenEmbedder())
    out = scorer.signals(g, ["se", "rd", "nll", "te"])
    assert out["token_entropy"].tolist() == pytest.approx([1.0, 2.0])
    assert out["negative_log_likelihood"].tolist() == pytest.approx([0.1, 0.2])
    res = GroupScorer(preset("grpo"), embedder=ForbiddenEmbedder()).score(g)
    assert res.weights.tolist() == [1.0, 1.0]


def test_missing_inputs_name_the_field() -> None:
    scorer = GroupScorer(preset("gcpo"), embedder="hashing")
    with pytest.raises(ValueError, match=r"groups.token_entropy"):
        scorer.signals(make_groups(), ["te"])
    with pytest.raises(ValueError, match=r"groups.logprobs"):
        scorer.signals(make_groups(), ["nll"])
    with pytest.raises(ValueError, match="groups: expected a Groups"):
        scorer.signals([["a"]])  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="config"):
        GroupScorer({"signal": "cd"})  # type: ignore[arg-type]


def _permuted(g: Groups, b: int, perm: list[int]) -> Groups:
    comps = [list(c) for c in g.completions]
    rewards = [g.rewards[i, : len(c)].tolist() for i, c in enumerate(comps)]
    comps[b] = [comps[b][i] for i in perm]
    rewards[b] = [rewards[b][i] for i in perm]
    return Groups.from_lists(g.prompts, comps, rewards)


def test_signals_are_invariant_to_completion_order_and_padding() -> None:
    g = make_groups()
    scorer = GroupScorer(preset("gcpo"), embedder="hashing")
    names = ["cd", "bot", "se", "rd", "eig"]
    base = scorer.signals(g, names)
    perm = scorer.signals(_permuted(g, 0, [3, 1, 0, 2]), names)
    for k in base:
        torch.testing.assert_close(perm[k], base[k], atol=1e-5, rtol=1e-5)
    # the short group scored alone equals its row in the padded batch
    alone = scorer.signals(Groups.from_lists([g.prompts[1]], [QA], [[1, 1, 0]]), names)
    for k in base:
        torch.testing.assert_close(alone[k][0], base[k][1], atol=1e-5, rtol=1e-5)


def test_answers_field_is_canonicalised_and_used_for_clusters() -> None:
    g = Groups.from_lists(["p"], [["x", "y", "z"]], [[1, 1, 0]], answers=[["0.50", "0.5", None]])
    out = GroupScorer(preset("gcpo"), embedder=ForbiddenEmbedder()).signals(g, ["se"])
    # "0.50" == "0.5" after canonicalisation; None is its own cluster -> masses 2/3, 1/3
    expected = -(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3))
    assert out["semantic_entropy"].item() == pytest.approx(expected, rel=1e-5)


def test_embedding_clusterer_for_free_form_answers() -> None:
    cfg = WeightingConfig(
        signal="semantic_entropy", se_clusterer="embedding", cluster_threshold=0.99
    )
    g = Groups.from_lists(["p"], [["paris", "paris", "rome", "paris"]], [[1, 1, 0, 1]])
    out = GroupScorer(cfg, embedder="hashing").signals(g)
    expected = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    assert out["semantic_entropy"].item() == pytest.approx(expected, rel=1e-5)


def test_likelihood_weighting_uses_softmax_of_logprobs_or_falls_back_with_a_note() -> None:
    cfg = WeightingConfig(signal="cosine_dispersion", completion_weighting="likelihood")
    lp = [[-0.1, -3.0, -0.2, -5.0], [-1.0, -1.0, -0.5]]
    g = make_groups(logprobs=lp)
    emb = HashingEmbedder(dim=64)
    got = GroupScorer(cfg, embedder=emb).signals(g)["cosine_dispersion"]
    e = torch.zeros(2, 4, 64)
    e[0], e[1, :3] = emb.embed(MATH), emb.embed(QA)
    w = torch.softmax(g.logprobs.masked_fill(~g.mask, -math.inf), dim=1)
    torch.testing.assert_close(got, cosine_dispersion(e, w, g.mask))
    assert not torch.allclose(got, cosine_dispersion(e, mask=g.mask))
    notes: list[str] = []
    with pytest.warns(UserWarning, match="likelihood weighting needs per-completion logprobs"):
        fallback = GroupScorer(cfg, embedder=HashingEmbedder(dim=64)).signals(
            make_groups(), notes=notes
        )
    torch.testing.assert_close(fallback["cosine_dispersion"], cosine_dispersion(e, mask=g.mask))
    assert notes and "uniform" in notes[0]


def test_degenerate_groups_give_finite_values() -> None:
    g = Groups.from_lists(
        ["single", "identical", "empty", "blank"],
        [["only one"], ["same", "same", "same"], ["", "", "x"], ["", " "]],
        [[1.0], [0.0, 0.0, 0.0], [1, 0, 1], [0, 0]],
    )
    scorer = GroupScorer(preset("gcpo"), embedder="hashing")
    res = scorer.score(g, extra_signals=["se", "bot", "eig"])
    for k, v in res.signals.items():
        assert torch.isfinite(v).all(), k
    assert torch.isfinite(res.weights).all()
    assert res.signals["cosine_dispersion"][0] == 0 and res.signals["cosine_dispersion"][
        1
    ] == pytest.approx(0, abs=1e-6)
    assert res.signals["barycentric_transport"][0] == 0


# ---------------------------------------------------------------------------------------------
# score
# ---------------------------------------------------------------------------------------------


def test_score_reports_everything_and_updates_the_callers_rank_state() -> None:
    g = make_groups()
    cfg = preset("gcpo")
    state = WeightingState(window=cfg.rank_window)
    scorer = GroupScorer(cfg, embedder="hashing")
    res = scorer.score(g, state, extra_signals="se,bot")
    assert isinstance(res, ScoreResult) and res.state is state and len(state) == 2
    assert set(res.signals) == {
        "cosine_dispersion",
        "reward_dispersion",
        "semantic_entropy",
        "barycentric_transport",
    }
    torch.testing.assert_close(res.uncertainty, res.signals["cosine_dispersion"])
    for key in ("embed_s", "signals_s", "weights_s", "cosine_dispersion_s"):
        assert res.timings[key] >= 0
    rows = res.rows()
    assert len(rows) == 2 and set(rows[0]) == {
        "cd",
        "se",
        "bot",
        "rd",
        "u_normalized",
        "u_calibrated",
        "weight",
    }
    # a second batch is ranked against the first one kept in the caller's state
    scorer.score(g, state)
    assert len(state) == 4
    # without a state, a fresh window is used (ranks within the batch)
    assert scorer.score(g).state is not state


def test_calibration_favours_groups_whose_rewards_separate_the_completions() -> None:
    # identical texts in both groups -> identical CD; only the rewards differ
    comps = [["alpha beta", "gamma delta", "alpha gamma"]] * 2
    g = Groups.from_lists(["p", "q"], comps, [[1, 0, 1], [0, 0, 0.5]])
    product = WeightingConfig(calibration="product", modulation="linear", rd_max=None)
    res = GroupScorer(product, embedder="hashing").score(g)
    assert res.signals["cosine_dispersion"][0] == res.signals["cosine_dispersion"][1]
    assert res.reward_dispersion[0] > res.reward_dispersion[1] > 0
    assert res.calibrated[0] < res.calibrated[1]
    assert res.weights[0] > res.weights[1]
    # renormalisation: mean weight over groups with RD > 0 is 1
    assert res.weights.mean().item() == pytest.approx(1.0, rel=1e-5)
    # gcpo's residual calibration takes out what RD predicts: equal disagreement, equal weight
    res = GroupScorer(preset("gcpo"), embedder="hashing").score(g)
    assert res.weights[0] == res.weights[1] == pytest.approx(1.0)


def test_geometry_separates_groups_that_semantic_entropy_ties() -> None:
    # two answer clusters in each group (SE = log 2); paraphrases vs contradictions
    para = ["the answer is one half", "the answer is one half indeed", "the answer is 0.5 one half"]
    contra = [
        "the answer is one half",
        "completely different zebra text",
        "another unrelated xylophone",
    ]
    answers = [["1/2", "1/2", "0.5"], ["1/2", "1/2", "7"]]
    g = Groups.from_lists(["p", "q"], [para, contra], [[1, 1, 0], [1, 1, 0]], answers=answers)
    out = GroupScorer(preset("gcpo"), embedder="hashing").signals(g, ["se", "cd", "bot"])
    assert out["semantic_entropy"][0] == pytest.approx(out["semantic_entropy"][1])
    assert out["cosine_dispersion"][0] < out["cosine_dispersion"][1]
    assert out["barycentric_transport"][0] < out["barycentric_transport"][1]


def test_bot_preset_weights_and_numpy_rewards() -> None:
    g = Groups.from_lists(
        ["p", "q", "r"],
        [MATH, QA, ["a b c", "a b d"]],
        np.array([[1, 1, 0, 0], [1, 1, 0, 0], [1, 0, 0, 0]], dtype=np.float64),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        res = GroupScorer(preset("gcpo-bot"), embedder="hashing").score(g)
    assert res.signal == "barycentric_transport"
    assert res.weights.shape == (3,) and torch.isfinite(res.weights).all()
    assert (res.weights > 0).all()


def test_invalid_completions_enter_no_signal() -> None:
    """An unscorable completion (valid=False) counts in nothing: not in RD, not in CD / BoT /
    SE / EigenScore; the result equals scoring the group without it."""
    comps = [["2 + 2 = 4", "it is 5", "four, so 4", "I think 7"], ["a cat", "a dog", "x", "a cow"]]
    full = Groups.from_lists(
        ["p0", "p1"],
        comps,
        [[1.0, 0.0, 0.0, 0.0], [0.5, 0.5, 0.0, 1.0]],
        logprobs=[[-1.0, -2.0, -0.5, -3.0], [-1.0, -1.5, -0.1, -2.0]],
        valid=[[True, True, False, False], [True, True, False, True]],
    )
    kept = Groups.from_lists(
        ["p0", "p1"],
        [[c[0], c[1]] for c in comps[:1]] + [[comps[1][0], comps[1][1], comps[1][3]]],
        [[1.0, 0.0], [0.5, 0.5, 1.0]],
        logprobs=[[-1.0, -2.0], [-1.0, -1.5, -2.0]],
    )
    names = ["se", "cd", "bot", "rd", "eig", "nll"]
    for config in (preset("gcpo"), WeightingConfig(completion_weighting="likelihood")):
        scorer = GroupScorer(config, HashingEmbedder())
        got, want = scorer.signals(full, names), scorer.signals(kept, names)
        for name in want:
            torch.testing.assert_close(got[name], want[name], msg=name)
    assert got["reward_dispersion"][0].item() == pytest.approx(0.5)  # [1, 0]: not 0.354
    assert full.group_sizes.tolist() == [2, 3]
    with pytest.raises(ValueError, match=r"valid\[0\]\[1\]: expected true/false"):
        Groups.from_lists(["p"], [["a", "b"]], [[0, 1]], valid=[[True, 1]])


def test_needs_lists_every_per_completion_input_the_config_uses() -> None:
    assert GroupScorer(preset("gcpo")).needs() == set()
    assert GroupScorer(preset("seed-grpo")).needs() == {"logprobs"}
    assert GroupScorer(preset("grpo")).needs(["nll", "te"]) == {"logprobs", "token_entropy"}
    liked = WeightingConfig(completion_weighting="likelihood")
    assert GroupScorer(liked).needs() == {"logprobs"}
    assert GroupScorer(WeightingConfig(signal="eigenscore", completion_weighting="likelihood")).needs() == set()
    with pytest.raises(ValueError, match="unknown signal"):
        GroupScorer(preset("gcpo")).needs(["nope"])
