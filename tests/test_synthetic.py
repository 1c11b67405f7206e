"""Built-in synthetic tasks: seeded, disjoint held-out splits, correct answers, strict rewards."""

from __future__ import annotations

import pytest

from gcpo.tasks.registry import get_task, trl_reward
from gcpo.tasks.synthetic import (
    GRADED_LEVELS,
    ArithmeticSpec,
    arithmetic_reward,
    make_arithmetic,
    make_passage_qa,
    make_task,
    passage_qa_reward,
)


def _question(row: dict) -> str:
    return row["prompt"][0]["content"]


@pytest.mark.parametrize("task", ["arithmetic", "passage-qa"])
def test_seeded_and_splits_disjoint(task: str) -> None:
    a = make_task(task, 50, split="train", seed=3)
    b = make_task(task, 50, split="train", seed=3)
    c = make_task(task, 50, split="train", seed=4)
    assert a == b
    assert a != c
    train = {_question(r) for r in make_task(task, 300, split="train", seed=0)}
    for seed in (0, 1, 2):
        test = {_question(r) for r in make_task(task, 60, split="test", seed=seed)}
        assert len(test) == 60  # distinct
        assert not train & test  # the split is a property of the problem, not of the seed


def test_more_train_rows_never_change_heldout() -> None:
    small = make_arithmetic(10, split="test", seed=0)
    assert make_arithmetic(20, split="test", seed=0)[:10] == small


@pytest.mark.parametrize(
    "spec",
    [ArithmeticSpec(), ArithmeticSpec(digits=3, terms=3, ops="+-*"), ArithmeticSpec(1, 2, "-")],
)
def test_arithmetic_answers_are_correct(spec: ArithmeticSpec) -> None:
    for row in make_arithmetic(40, seed=1, spec=spec):
        q = _question(row)
        expr = q.removeprefix("What is ").split("?")[0]
        assert set(expr) <= set("0123456789 +-*")
        assert len([t for t in expr.split() if t.isdigit()]) == spec.terms
        left = expr.split()[0]
        assert len(left) == spec.digits
        assert int(row["answer"]) == eval(expr)  # noqa: S307 - digits and operators only
        assert row["task"] == "arithmetic"
        assert row["prompt"][0]["role"] == "user"


def test_passage_qa_answer_is_in_passage() -> None:
    for row in make_passage_qa(40, seed=2, facts=4):
        q = _question(row)
        passage = q.split("\n")[0]
        assert passage.startswith("Passage: ")
        assert row["answer"] in passage
        assert passage.count(".") == 4


def test_arithmetic_reward_checks_last_integer() -> None:
    assert arithmetic_reward("81", "81") == 1.0
    assert arithmetic_reward("The sum is 1,081.", "1081") == 1.0
    assert arithmetic_reward("23 + 58 = 81", "81") == 1.0
    assert arithmetic_reward("81 ... no wait, 80", "81") == 0.0
    assert arithmetic_reward("eighty-one", "81") == 0.0
    assert arithmetic_reward("", "81") == 0.0
    assert arithmetic_reward("-5", "-5") == 1.0


def test_passage_qa_reward_first_line_only() -> None:
    assert passage_qa_reward("Lima", "Lima") == 1.0
    assert passage_qa_reward("\n  She lives in lima.\nRome", "Lima") == 1.0
    assert passage_qa_reward("Rome\nLima", "Lima") == 0.0
    assert passage_qa_reward("", "red") == 0.0
    # listing every colour does not collect the reward
    many = " ".join(["red", "blue", "green", "yellow", "black", "white", "purple"] * 2)
    assert passage_qa_reward(many, "red") == 0.0


def test_reward_function_trl_signature() -> None:
    fn = trl_reward("arithmetic")
    completions = [
        [{"role": "assistant", "content": "12"}],
        "13",
        [{"role": "assistant", "content": "x"}],
    ]
    assert fn(
        prompts=[None] * 3, completions=completions, answer=["12", "12", "1"], task=["a"] * 3
    ) == [
        1.0,
        0.0,
        0.0,
    ]
    with pytest.raises(ValueError, match="answer"):
        fn(prompts=[None], completions=["1"], answer=["1", "2"])


def test_answer_keys() -> None:
    assert get_task("arithmetic").answer_key("so it is 1,234") == "1234"
    assert get_task("arithmetic").answer_key("no number") is None
    assert get_task("passage-qa").answer_key("\n Red!\nblue") == "red"
    assert get_task("passage-qa").answer_key("  ") is None


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: make_task("sudoku", 3), "task"),
        (lambda: make_task("arithmetic", 3, colour=1), "knobs"),
        (lambda: make_task("arithmetic", -1), "n"),
        (lambda: make_task("arithmetic", 3, split="dev"), "split"),
        (lambda: ArithmeticSpec(digits=0), "digits"),
        (lambda: ArithmeticSpec(ops="/"), "ops"),
        (lambda: make_passage_qa(3, facts=9), "facts"),
        (lambda: make_task("arithmetic", 100, digits=1, terms=2, ops="-"), "cannot draw"),
    ],
)
def test_bad_input_raises(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call()


def test_existing_tasks_unchanged_by_graded_levels() -> None:
    # pinned from the generator before graded-arithmetic existed (same seed, same problems)
    assert _question(make_task("arithmetic", 1, seed=2)[0]) == (
        "What is 87 + 88? Answer with just the final number."
    )
    row = make_task("arithmetic", 1, seed=2, digits=3, terms=3, ops="+-*")[0]
    assert _question(row) == "What is 722 + 920 - 699? Answer with just the final number."
    assert set(row) == {"prompt", "answer", "task"}  # no level column outside graded tasks


def test_graded_levels_take_turns_and_are_recorded() -> None:
    rows = make_task("graded-arithmetic", 40, seed=0)
    names = [lv.name for lv in GRADED_LEVELS]
    assert [r["level"] for r in rows] == [names[i % len(names)] for i in range(40)]
    for r in rows:
        spec = ArithmeticSpec.parse(r["level"])
        expr = _question(r).removeprefix("What is ").split("?")[0]
        assert int(r["answer"]) == eval(expr)  # noqa: S307 - digits and operators only
        assert len(expr.split()[0]) == spec.digits and expr.split()[1] in spec.ops
        assert r["task"] == "graded-arithmetic"
    assert rows == make_task("graded-arithmetic", 40, seed=0)
    assert rows != make_task("graded-arithmetic", 40, seed=1)
    assert make_task("graded-arithmetic", 20, seed=0) == rows[:20]
    test = {_question(r) for r in make_task("graded-arithmetic", 60, split="test", seed=0)}
    assert not test & {_question(r) for r in make_task("graded-arithmetic", 300, seed=0)}


def test_graded_level_that_runs_out_leaves_the_rotation() -> None:
    # 1-digit subtraction has 81 problems, ~16 of them in the held-out split
    rows = make_task("graded-arithmetic", 80, split="test", seed=0, levels=["1d-", "2d+"])
    counts = {lv: sum(r["level"] == lv for r in rows) for lv in ("1d-", "2d+")}
    assert 8 <= counts["1d-"] <= 30 and counts["1d-"] + counts["2d+"] == 80
    assert len({_question(r) for r in rows}) == 80
    with pytest.raises(ValueError, match="cannot draw"):
        make_task("graded-arithmetic", 60, split="test", seed=0, levels=["1d-", "1d+"])


def test_graded_level_labels_and_mappings() -> None:
    assert ArithmeticSpec.parse("2d+-") == ArithmeticSpec(digits=2, terms=2, ops="+-")
    assert ArithmeticSpec.parse("1d*x3") == ArithmeticSpec(digits=1, terms=3, ops="*")
    assert ArithmeticSpec(3, 4, "+*").name == "3d+*x4"
    for spec in GRADED_LEVELS:
        assert ArithmeticSpec.parse(spec.name) == spec
    rows = make_task("graded-arithmetic", 4, levels=[{"digits": 3, "ops": "-"}, "1d*x3"])
    assert [r["level"] for r in rows] == ["3d-", "1d*x3", "3d-", "1d*x3"]


@pytest.mark.parametrize(
    "knobs, match",
    [
        ({"levels": ["1d/"]}, "cannot read"),
        ({"levels": []}, "non-empty"),
        ({"levels": "1d+"}, "non-empty list"),
        ({"levels": [{"digits": 1, "colour": 2}]}, "keys among"),
        ({"levels": ["1d+", "1d+"]}, "differ"),
        ({"digits": 2}, "knobs"),
    ],
)
def test_graded_bad_levels_raise(knobs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        make_task("graded-arithmetic", 4, **knobs)
