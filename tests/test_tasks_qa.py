"""QA scores against hand-computed values of the official HotpotQA / SQuAD formulas."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from gcpo.tasks import qa_scores
from gcpo.tasks.qa import normalize_answer

# (prediction, references, em, f1, cover_em) — f1 computed by hand from
# hotpot_evaluate_v1.f1_score: P = same/len(pred), R = same/len(ref), F1 = 2PR/(P+R).
TABLE = [
    ("The Eiffel Tower", ["eiffel tower"], 1.0, 1.0, 1.0),
    ("Paris, France", ["Paris"], 0.0, 2 * 0.5 * 1.0 / 1.5, 1.0),
    ("Paris", ["Paris, France"], 0.0, 2 * 1.0 * 0.5 / 1.5, 0.0),
    ("an apple a day!", ["Apple day"], 1.0, 1.0, 1.0),
    ("in the year 1990", ["1990s"], 0.0, 0.0, 0.0),
    ("blue red green", ["green blue"], 0.0, 2 * (2 / 3) * 1.0 / (2 / 3 + 1.0), 0.0),
    ("the cat sat on the mat", ["cat sat"], 0.0, 2 * 0.5 * 1.0 / 1.5, 1.0),
    # yes / no / noanswer: F1 is 0 unless both sides normalise to the same special token
    ("yes", ["yes"], 1.0, 1.0, 1.0),
    ("Yes.", ["no"], 0.0, 0.0, 0.0),
    ("no", ["no answer"], 0.0, 0.0, 0.0),
    ("yes it is", ["yes"], 0.0, 0.0, 1.0),
    ("noanswer", ["no answer given"], 0.0, 0.0, 0.0),
    ("not sure", ["no"], 0.0, 0.0, 0.0),  # cover-EM needs whole tokens: "no" is not in "not"
    # max over references (each metric separately)
    ("Denise Levertov", ["Harvey Pekar", "Denise Levertov"], 1.0, 1.0, 1.0),
    (
        "born in Denise",
        ["Harvey Pekar", "Denise Levertov"],
        0.0,
        2 * (1 / 3) * 0.5 / (1 / 3 + 0.5),
        0.0,
    ),
    (
        "They set up a school",
        ["They set up a school.", "They are schoolmistresses."],
        1.0,
        1.0,
        1.0,
    ),
    ("", ["anything"], 0.0, 0.0, 0.0),
    ("the", ["a"], 1.0, 0.0, 0.0),  # both normalise to "": EM 1 as in SQuAD, no tokens -> F1 0
]


@pytest.mark.parametrize("prediction, refs, em, f1, cover", TABLE)
def test_official_formulas(
    prediction: str, refs: list[str], em: float, f1: float, cover: float
) -> None:
    got = qa_scores(prediction, refs)
    assert got == pytest.approx({"em": em, "f1": f1, "cover_em": cover})


def test_normalize_answer() -> None:
    assert normalize_answer("  The  Quick, brown FOX! ") == "quick brown fox"
    assert normalize_answer("An 'a' the") == ""
    assert normalize_answer("theatre") == "theatre"  # articles only as whole words


def test_single_string_reference_and_errors() -> None:
    assert qa_scores("Paris", "paris")["em"] == 1.0
    with pytest.raises(ValueError, match="answers"):
        qa_scores("x", [])
    with pytest.raises(ValueError, match="answers"):
        qa_scores("x", ["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="prediction"):
        qa_scores(None, ["x"])  # type: ignore[arg-type]


words = st.lists(
    st.sampled_from(["the", "a", "paris", "france", "yes", "no", "city", "1990", "x!"]), max_size=6
)


@given(words, st.lists(words, min_size=1, max_size=3))
def test_invariants(pred_words: list[str], ref_lists: list[list[str]]) -> None:
    pred = " ".join(pred_words)
    refs = [" ".join(r) for r in ref_lists]
    s = qa_scores(pred, refs)
    assert all(0.0 <= v <= 1.0 for v in s.values())
    if s["em"] == 1.0 and normalize_answer(pred):
        assert s["f1"] == 1.0 and s["cover_em"] == 1.0
    # max over references: adding a reference never lowers a score
    s2 = qa_scores(pred, refs + ["unrelated words"])
    assert all(s2[k] >= s[k] for k in s)
    # order of references does not matter
    assert qa_scores(pred, list(reversed(refs))) == s
