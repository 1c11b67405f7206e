"""Evaluation sets (benchmark loaders), prompt templates and truncation."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gcpo.io import DataError
from gcpo.tasks.evalsets import (
    BENCHMARKS,
    build_prompt,
    hotpot_context,
    items_from_rows,
    load_benchmark,
    olympiad_gold,
)
from gcpo.tasks.prompts import MATH_INSTRUCTION, qa_prediction, truncate_middle

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark data not found at {DATA}")

EXPECTED = {
    "math500": 500,
    "aime24": 30,
    "olympiadbench": 675,
    "hotpotqa": 500,
    "qasper": 184,
    "narrativeqa": 50,
}


@needs_data
@pytest.mark.parametrize("name", list(EXPECTED))
def test_local_counts_and_item_shape(name: str) -> None:
    items = load_benchmark(name, data_dir=DATA)
    assert len(items) == EXPECTED[name] == BENCHMARKS[name].expected_items
    assert len({it.id for it in items}) == len(items)
    for it in items:
        assert it.benchmark == name and it.kind == BENCHMARKS[name].kind
        assert it.question.strip() and it.answers and all(isinstance(a, str) for a in it.answers)
        assert all(a.strip() for a in it.answers)
        assert bool(it.context and it.context.strip()) == (it.kind == "qa")
    assert [it.id for it in load_benchmark(name, data_dir=DATA, limit=3)] == [
        it.id for it in items[:3]
    ]
    sample = load_benchmark(name, data_dir=DATA, limit=5, seed=1)
    assert len(sample) == 5 and sample == load_benchmark(name, data_dir=DATA, limit=5, seed=1)
    assert [it.id for it in sample] != [it.id for it in items[:5]]
    assert items[0].answer == items[0].answers[0]
    assert items[0].messages[0]["role"] == "user"
    assert items[0].question in items[0].messages[0]["content"]


@needs_data
def test_specific_items() -> None:
    m = load_benchmark("math500", data_dir=DATA, limit=1)[0]
    assert m.id == "test/precalculus/807.json"
    assert m.answers == ["\\left( 3, \\frac{\\pi}{2} \\right)"]
    a = load_benchmark("aime24", data_dir=DATA)
    assert a[0].id == "60" and a[0].answers == ["204"]
    q = load_benchmark("qasper", data_dir=DATA)
    assert {it.id.split("-")[0] for it in q} == {str(i) for i in range(23)}
    assert q[0].question == "How did they obtain the dataset?"
    h = load_benchmark("hotpotqa", data_dir=DATA, limit=1)[0]
    assert h.answers == ["Denise Levertov"] and h.context.startswith("Title: ")
    assert h.context.count("Title: ") == 10
    n = load_benchmark("narrativeqa", data_dir=DATA, limit=1)[0]
    assert n.answers == ["They set up a school.", "They are schoolmistresses."]
    o = {it.id: it for it in load_benchmark("olympiadbench", data_dir=DATA)}
    assert all("$" not in it.answers[0] for it in o.values())


def test_olympiad_gold() -> None:
    assert olympiad_gold(["$69$,$84$"]) == "69, 84"
    assert olympiad_gold(["$(1,1), (3,2)$"]) == "(1,1), (3,2)"
    assert olympiad_gold(["2"]) == "2"


def test_hub_layouts_map_to_items() -> None:
    # HuggingFaceH4/MATH-500
    (m,) = items_from_rows("math500", [{"problem": "1+1?", "answer": "2", "unique_id": "t/1"}])
    assert (m.id, m.answers, m.kind) == ("t/1", ["2"], "math")
    # Maxwell-Jia/AIME_2024 capitalises its keys
    (a,) = items_from_rows("aime24", [{"ID": "2024-I-1", "Problem": "p", "Answer": 25}])
    assert a.answers == ["25"] and a.question == "p"
    # HF hotpot_qa: context is {"title": [...], "sentences": [[...]]}
    row = {
        "id": "h1",
        "question": "q?",
        "answer": "yes",
        "context": {"title": ["A", "B"], "sentences": [["a1. ", "a2."], ["b1."]]},
    }
    (h,) = items_from_rows("hotpotqa", [row])
    assert h.context == "Title: A\na1. a2.\n\nTitle: B\nb1."
    # the original HotpotQA JSON layout gives the same text
    assert hotpot_context([["A", ["a1. ", "a2."]], ["B", ["b1."]]]) == h.context
    # deepmind/narrativeqa
    nrow = {
        "document": {"summary": {"text": "S"}, "text": "full story"},
        "question": {"text": "who?"},
        "answers": [{"text": "me"}, {"text": "you"}],
    }
    (n,) = items_from_rows("narrativeqa", [nrow])
    assert (n.question, n.answers, n.context) == ("who?", ["me", "you"], "S")
    # LongBench layout (input / context / answers)
    lb = {"input": "q", "context": "c", "answers": ["x"], "_id": "z"}
    for name in ("hotpotqa", "qasper", "narrativeqa"):
        (it,) = items_from_rows(name, [lb])
        assert (it.id, it.question, it.context, it.answers) == ("z", "q", "c", ["x"])
    # L-Eval Qasper: one row per paper -> one item per question
    paper = {"instructions": ["q1", "q2"], "outputs": ["o1", "o2"], "input": "paper"}
    items = items_from_rows("qasper", [paper, paper])
    assert [it.id for it in items] == ["0-0", "0-1", "1-0", "1-1"]


def test_hub_source_is_used_without_local_data(monkeypatch: pytest.MonkeyPatch) -> None:
    import datasets

    import gcpo.tasks.evalsets as evalsets

    monkeypatch.delenv("GCPO_DATA_DIR", raising=False)
    monkeypatch.setattr(evalsets, "hub_problem", lambda: None)  # the hub answers
    calls = []

    def fake_load_dataset(hub_id, config, split):
        calls.append((hub_id, config, split))
        return [{"problem": f"p{i}", "answer": str(i), "unique_id": f"u{i}"} for i in range(5)]

    monkeypatch.setattr(datasets, "load_dataset", fake_load_dataset)
    items = load_benchmark("math500", limit=2)
    assert calls == [("HuggingFaceH4/MATH-500", None, "test")]
    assert [it.id for it in items] == ["u0", "u1"]

    def offline(hub_id, config, split):
        raise ConnectionError("no network")

    monkeypatch.setattr(datasets, "load_dataset", offline)
    with pytest.raises(DataError, match="HuggingFaceH4/MATH-500.*no network.*--data-dir"):
        load_benchmark("math500")


def test_bad_input_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="unknown"):
        load_benchmark("gsm9k", data_dir=tmp_path)
    with pytest.raises(DataError, match="no local file"):
        load_benchmark("math500", data_dir=tmp_path)
    with pytest.raises(ValueError, match="limit"):
        load_benchmark("math500", data_dir=tmp_path, limit=0)
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"problem": "p"}) + "\n")
    with pytest.raises(DataError, match="answer"):
        load_benchmark("math500", path=bad)
    bad.write_text('{"problem": \n')
    with pytest.raises(DataError, match="bad.jsonl:1"):
        load_benchmark("math500", path=bad)
    with pytest.raises(DataError, match="instructions"):
        items_from_rows("qasper", [{"instructions": ["a", "b"], "outputs": ["x"], "input": "p"}])
    with pytest.raises(DataError, match="narrativeqa row 0"):
        items_from_rows("narrativeqa", [{"foo": 1}])


# ------------------------------------------------------------------------------ prompts


@pytest.fixture(scope="module")
def tokenizer():
    from gcpo.models import load_tokenizer

    return load_tokenizer("tiny-random")


def test_truncate_middle(tokenizer) -> None:
    text = "HEAD " + " ".join(f"w{i}" for i in range(2000)) + " TAIL"
    n_tokens = len(tokenizer(text, add_special_tokens=False)["input_ids"])
    out = truncate_middle(text, tokenizer, 100)
    assert out.startswith("HEAD") and out.endswith("TAIL") and "\n...\n" in out
    head, tail = out.split("\n...\n")
    n_head = len(tokenizer(head, add_special_tokens=False)["input_ids"])
    n_tail = len(tokenizer(tail, add_special_tokens=False)["input_ids"])
    assert abs(n_head - 50) <= 2 and abs(n_tail - 50) <= 2 and n_tokens > 1000
    assert truncate_middle("short text", tokenizer, 100) == "short text"
    with pytest.raises(ValueError, match="max_tokens"):
        truncate_middle(text, tokenizer, 1)


def test_build_prompt(tokenizer) -> None:
    (m,) = items_from_rows("math500", [{"problem": "What is 1+1?", "answer": "2"}])
    chat = build_prompt(m, tokenizer)
    assert "What is 1+1?" in chat and MATH_INSTRUCTION in chat
    assert chat.rstrip().endswith("assistant")  # generation prompt of the chat template
    plain = build_prompt(m, tokenizer, use_chat_template=False)
    assert plain == f"What is 1+1?\n{MATH_INSTRUCTION}\n"
    row = {"input": "Who?", "context": "alpha " * 3000 + "omega", "answers": ["x"]}
    (q,) = items_from_rows("qasper", [row])
    p = build_prompt(q, tokenizer, max_context_tokens=64, use_chat_template=False)
    assert "Question: Who?" in p and p.endswith("Answer:") and "omega" in p
    assert len(tokenizer(p)["input_ids"]) < 400


@pytest.mark.parametrize(
    "generation, expected",
    [("\n\nParis\nbecause ...", "Paris"), ("Answer: Denise Levertov", "Denise Levertov"), ("", "")],
)
def test_qa_prediction(generation: str, expected: str) -> None:
    assert qa_prediction(generation) == expected
