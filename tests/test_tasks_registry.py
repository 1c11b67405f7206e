"""One task registry: `gcpo train`, `gcpo analyze` and `gcpo eval` give the same task the same
reward, the same semantic-entropy answer keys and the same prompts."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gcpo.diagnostics.columns import group_signals, make_scorers, signal_plan
from gcpo.diagnostics.items import load_items
from gcpo.evaluation import score_generation
from gcpo.presets import preset
from gcpo.scoring import Groups, GroupScorer
from gcpo.tasks.evalsets import BenchmarkSpec, load_benchmark, register_benchmark
from gcpo.tasks.registry import TaskKind, get_task, register_task, reward_names, trl_reward
from gcpo.train.config import TrainConfig
from gcpo.train.data import answer_fn_for, build_data, load_reward

# completions that read differently under different answer rules
COMPLETIONS = {
    "arithmetic": [
        "The answer is 12.\nCheck: 12 + 1 = 13",  # last integer 13; "the answer is" 12
        "\\boxed{7} or maybe 8",
        "It is 1,234.",
        "no idea",
        "13",
        "",
    ],
    "passage-qa": ["Red.\nblue", "red", "  RED!  ", "It is red", "blue\nred", ""],
    "math": ["so \\boxed{\\frac{1}{2}}", "The answer is 0.5.", "x = 1/2", "2", "", "\\boxed{3}"],
    "qa": [
        "Answer: Mia Stone\nmore",
        "mia stone.",
        "The Mia Stone",
        "Nobody\nMia Stone",
        "",
        "Mia",
    ],
}


def _train_side(config: TrainConfig, completions: list[str], answer: str | list[str]):
    reward = load_reward(config)
    chats = [[{"role": "assistant", "content": c}] for c in completions]
    rewards = reward(prompts=[None] * len(chats), completions=chats, answer=[answer] * len(chats))
    keys = [answer_fn_for(config)(c) for c in completions]
    return rewards, keys


def _se_both_ways(config: TrainConfig, item_task: TaskKind, completions: list[str]):
    """SE of one group as GCPOTrainer scores it and as gcpo analyze scores it."""
    logprobs = [-0.1 * (i + 1) for i in range(len(completions))]
    groups = Groups.from_lists(
        ["p"], [completions], [[0.0] * len(completions)], logprobs=[logprobs]
    )
    trained = GroupScorer(preset("seed-grpo"), "hashing", answer_fn_for(config))
    se_train = float(trained.signals(groups, ["se"])["semantic_entropy"][0])
    columns, _ = signal_plan(["seed-grpo"])
    scorers = make_scorers({"se_lik": columns["se_lik"]}, "hashing", item_task.answer_key)
    se_analyze = group_signals(groups, scorers)["se_lik"]
    return se_train, se_analyze


@pytest.mark.parametrize("task", ["arithmetic", "passage-qa"])
def test_synthetic_task_same_reward_and_answer_keys_in_train_analyze_and_eval(task: str) -> None:
    config = TrainConfig(task=task, num_train_prompts=4, num_eval_prompts=2)
    (item,) = load_items(task=task, benchmark=None, prompts=1)
    (bench_item,) = load_benchmark(task, limit=1)
    completions = COMPLETIONS[task] + [item.answer, f"so {item.answer}"]
    rewards, keys = _train_side(config, completions, item.answer)
    assert [item.reward(c) for c in completions] == rewards
    assert [score_generation(bench_item, c, math_timeout=3.0)["score"] for c in completions] == (
        rewards
    )
    assert [item.answer_key(c) for c in completions] == keys
    assert len(set(keys)) >= 3  # the completions really do read differently
    se_train, se_analyze = _se_both_ways(config, item.task, completions)
    assert se_train == se_analyze
    # the analysed and evaluated prompts are the training task's held-out prompts
    _, heldout = build_data(config)
    assert item.messages == heldout[0]["prompt"] == bench_item.messages


def test_arithmetic_answer_key_reads_the_integer_the_reward_reads() -> None:
    """The regression: analyze used to cluster on "the answer is 12", training on 13."""
    (item,) = load_items(task="arithmetic", benchmark=None, prompts=1)
    text = "The answer is 12.\nCheck: 12 + 1 = 13"
    assert item.answer_key(text) == answer_fn_for(TrainConfig(task="arithmetic"))(text) == "13"


@pytest.mark.parametrize(
    "benchmark, row, reward, answer",
    [
        ("math500", {"problem": "What is 1/2?", "answer": "\\frac{1}{2}", "unique_id": "a"},
         "math", "\\frac{1}{2}"),
        ("narrativeqa", {"question": "Who?", "answer": ["Mia Stone", "Mia"], "passage": "Mia."},
         "qa-f1", ["Mia Stone", "Mia"]),
    ],
)  # fmt: skip
def test_benchmark_and_dataset_same_reward_and_answer_keys(
    tmp_path: Path, benchmark: str, row: dict, reward: str, answer: str | list[str]
) -> None:
    (tmp_path / benchmark).mkdir()
    (tmp_path / benchmark / "test.jsonl").write_text(json.dumps(row) + "\n")
    (item,) = load_items(task=None, benchmark=benchmark, prompts=1, data_dir=str(tmp_path))
    (bench_item,) = load_benchmark(benchmark, data_dir=tmp_path)
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"prompt": "q", "answer": answer}) + "\n")
    config = TrainConfig(dataset=str(data), reward=reward)
    completions = COMPLETIONS[item.task.name]
    rewards, keys = _train_side(config, completions, answer)
    assert [item.reward(c) for c in completions] == rewards
    assert [score_generation(bench_item, c, math_timeout=3.0)["score"] for c in completions] == (
        rewards
    )
    assert [item.answer_key(c) for c in completions] == keys
    assert len(set(keys)) >= 3
    se_train, se_analyze = _se_both_ways(config, item.task, completions)
    assert se_train == se_analyze


def test_qa_answer_key_follows_the_scored_answer_line() -> None:
    key = get_task("qa").answer_key
    assert key("Answer: The Mia Stone.\nmore") == key("mia stone") == "mia stone"
    assert key("Nobody\nMia Stone") == "nobody"
    assert key("   ") is None
    # qa-em reads the em column of the same scores
    em = trl_reward("qa-em")(prompts=[None], completions=["mia stone!"], answer=[["Mia Stone"]])
    assert em == [1.0]
    assert {"math", "qa", "qa-f1", "qa-em", "arithmetic", "passage-qa"} <= set(reward_names())


def test_a_registered_task_kind_works_in_train_and_eval(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gcpo.tasks.evalsets as evalsets
    import gcpo.tasks.registry as registry

    monkeypatch.setattr(registry, "_TASKS", dict(registry._TASKS))
    monkeypatch.setattr(evalsets, "BENCHMARKS", dict(evalsets.BENCHMARKS))

    def score(completion: str, references: list[str], timeout: float | None = None) -> dict:
        first = completion.split()[:1]
        return {"score": float(first == references[0].split()[:1])}

    kind = register_task(
        TaskKind(
            name="first-word",
            description="1.0 when the first word matches",
            score=score,
            answer_key=lambda c: (c.split() or [None])[0],
            prompt=lambda q, ctx: f"{q} (one word)",
        )
    )
    with pytest.raises(ValueError, match="already registered"):
        register_task(kind)
    data = tmp_path / "train.jsonl"
    data.write_text(json.dumps({"prompt": "q", "answer": "yes"}) + "\n")
    config = TrainConfig(dataset=str(data), reward="first-word")
    rewards, keys = _train_side(config, ["yes sir", "no"], "yes")
    assert rewards == [1.0, 0.0] and keys == ["yes", "no"]
    assert load_reward(config).__name__ == "first_word_reward"

    (tmp_path / "words").mkdir()
    (tmp_path / "words" / "test.jsonl").write_text(json.dumps({"q": "Agree?", "a": "yes"}) + "\n")
    register_benchmark(
        BenchmarkSpec(
            "words", "first-word", "pass@1", "", None, "test", 1,
            lambda row, i: [evalsets.BenchmarkItem(str(i), row["q"], [row["a"]], "first-word",
                                                     "words")],
            "one-word answers", 4,
        )
    )  # fmt: skip
    (item,) = load_benchmark("words", data_dir=tmp_path)
    assert item.messages == [{"role": "user", "content": "Agree? (one word)"}]
    assert score_generation(item, "yes.", math_timeout=1.0)["score"] == 0.0  # "yes." != "yes"
    assert score_generation(item, "yes indeed", math_timeout=1.0)["score"] == 1.0
    with pytest.raises(ValueError, match="task: got 'nope'"):
        register_benchmark(BenchmarkSpec("x", "nope", "pass@1", "", None, "t", 1, None, "", 4))


def test_bad_names_are_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match="task: got 'chess', allowed: math, qa, arithmetic"):
        get_task("chess")
    with pytest.raises(ValueError, match="reward: got 'qa-bleu'.*qa-f1"):
        trl_reward("qa-bleu")
    with pytest.raises(ValueError, match="without spaces"):
        register_task(TaskKind("a b", "", score=lambda c, r, **_: {"score": 0.0},
                               answer_key=lambda c: None))  # fmt: skip
