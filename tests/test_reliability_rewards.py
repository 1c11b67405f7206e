"""Issue 6, rewards: safe_reward repairs and counts every kind of bad reward output; built-in
rewards survive random and adversarial text within their time limits; NaN never reaches GCPO
weights, advantages or the loss."""

from __future__ import annotations

import math
import time
from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gcpo.rewards import RewardError, RewardStats, safe_reward, sanitize_rewards

COMPLETIONS = [[{"role": "assistant", "content": f"answer {i}"}] for i in range(4)]
PROMPTS = [[{"role": "user", "content": "q"}]] * 4


def call(fn: Any, **kwargs: Any) -> list[float | None]:
    return fn(prompts=PROMPTS, completions=COMPLETIONS, **kwargs)


# -- safe_reward: each kind of failure -----------------------------------------------------------


def test_good_rewards_pass_through_unchanged() -> None:
    def good(prompts, completions, **kw):
        return [0.0, 1.0, 0.5, -2.0]

    wrapped = safe_reward(good)
    assert call(wrapped) == [0.0, 1.0, 0.5, -2.0]
    assert wrapped.__name__ == "good"  # TRL's rewards/<name>/mean metric keeps its name
    assert wrapped.stats.unscorable == 0 and wrapped.stats.calls == 1


@pytest.mark.parametrize(
    "values, expected, counter",
    [
        ([1.0, None, 0.0, None], [1.0, None, 0.0, None], "none"),
        ([1.0, math.nan, 0.0, 1.0], [1.0, None, 0.0, 1.0], "non_finite"),
        ([math.inf, 1.0, -math.inf, 0.0], [None, 1.0, None, 0.0], "non_finite"),
        ([1.0, "1", [0.5], {"r": 1}], [1.0, None, None, None], "non_numeric"),
        (np.array([1.0, np.nan, 0.0, 1.0]), [1.0, None, 0.0, 1.0], "non_finite"),
        (torch.tensor([1.0, 0.0, float("inf"), 1.0]), [1.0, 0.0, None, 1.0], "non_finite"),
        ([np.float32(0.5), torch.tensor(1.0), True, 3], [0.5, 1.0, 1.0, 3.0], None),
    ],
)
def test_bad_items_become_none_and_are_counted(values, expected, counter) -> None:
    logged: dict[str, list[float]] = {}
    wrapped = safe_reward(lambda prompts, completions, **kw: values, name="user")
    out = call(wrapped, log_metric=lambda k, v: logged.setdefault(k, []).append(v))
    assert out == expected
    n_bad = sum(v is None for v in expected)
    assert wrapped.stats.unscorable == n_bad
    if counter is not None:
        assert getattr(wrapped.stats, counter) == n_bad
    assert logged["gcpo/unscorable_frac/user"] == [n_bad / 4]
    assert logged["gcpo/reward_errors/user"] == [0.0]


@pytest.mark.parametrize(
    "fn, counter, reason",
    [
        (lambda prompts, completions, **kw: 1 / 0, "errors", "ZeroDivisionError"),
        (lambda prompts, completions, **kw: [1.0, 0.0], "bad_length", "2 values for 4"),
        (lambda prompts, completions, **kw: None, "bad_length", "NoneType"),
        (lambda prompts, completions, **kw: 1.0, "bad_length", "float"),
        (lambda prompts, completions, **kw: "1111", "bad_length", "str"),
    ],
)
def test_whole_batch_unscorable_on_raise_or_wrong_shape(fn, counter, reason) -> None:
    logged: dict[str, list[float]] = {}
    stats = RewardStats()
    wrapped = safe_reward(fn, name="user", stats=stats)
    out = call(wrapped, log_metric=lambda k, v: logged.setdefault(k, []).append(v))
    assert out == [None] * 4
    assert getattr(stats, counter) == 1 and stats.unscorable == 4
    assert reason in stats.last_error
    assert logged["gcpo/unscorable_frac/user"] == [1.0]
    assert logged["gcpo/reward_errors/user"] == [1.0]
    # the next call works again and the totals accumulate
    call(wrapped)
    assert stats.calls == 2 and stats.completions == 8


@pytest.mark.parametrize(
    "values, match",
    [
        (None, "returned a NoneType"),
        ([1.0, math.nan, 0.0, 0.0], "nan for completion 1"),
        ([1.0, 0.0, 0.0, "x"], "non-numeric str 'x' for completion 3"),
    ],
)
def test_fail_fast_raises_naming_the_function(values, match) -> None:
    wrapped = safe_reward(
        lambda prompts, completions, **kw: values, name="my_reward", fail_fast=True
    )
    with pytest.raises(RewardError, match=f"'my_reward'.*{match}"):
        call(wrapped)


def test_fail_fast_on_exception_names_function_and_cause() -> None:
    def broken(prompts, completions, **kw):
        raise KeyError("answer")

    with pytest.raises(RewardError, match="'broken': raised KeyError"):
        call(safe_reward(broken, fail_fast=True))


def test_none_is_not_an_error_even_with_fail_fast() -> None:
    # None is TRL's documented "not applicable" answer, not a failure
    wrapped = safe_reward(lambda prompts, completions, **kw: [None, 1.0, 1.0, 1.0], fail_fast=True)
    assert call(wrapped) == [None, 1.0, 1.0, 1.0]


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="fn: expected a callable"):
        safe_reward("math")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="without 'completions'"):
        safe_reward(lambda **kw: [])(prompts=[])


def test_sanitize_rewards_turns_inf_into_nan_only() -> None:
    r = torch.tensor([[1.0, float("inf")], [float("-inf"), float("nan")], [0.0, 2.0]])
    out = sanitize_rewards(r)
    assert torch.isnan(out[0, 1]) and torch.isnan(out[1, 0]) and torch.isnan(out[1, 1])
    assert out[0, 0] == 1.0 and out[2].tolist() == [0.0, 2.0]
    assert not torch.isinf(out).any()
    with pytest.raises(ValueError, match="rewards: expected a torch.Tensor"):
        sanitize_rewards([1.0])


# -- built-in rewards under random and adversarial text --------------------------------------------

ADVERSARIAL = [
    "",
    " ",
    "\\boxed{" * 2000,
    "{" * 5000 + "}" * 10,
    "}" * 5000,
    "\\boxed{\\frac{1}{" + "\\sqrt{" * 300 + "2",
    "$" * 10001,
    "\\left(" * 500,
    "9" * 100_000,
    "x" * 100_000,
    "The answer is " + "1," * 20000,
    "\x00\x01\x02\x1b[31m\x7f\ufeff\u200b",
    "\\boxed{" + "1" * 5000 + "}",
    "2^{2^{2^{2^{2^{2^{2^{2^{99}}}}}}}}",
    "\\boxed{10^{10^{10^{10}}}}",
    "\\boxed{\\begin{pmatrix}" + "1&" * 3000 + "\\end{pmatrix}}",
    "🙂" * 1000 + "\\boxed{٣}",
    "Final answer: \\(\\infty\\)",
    "answer: nan",
    "\n" * 50_000,
]

# any unicode text except surrogates (which cannot be encoded and never come out of a tokenizer)
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=300)
MATHY = st.lists(
    st.sampled_from(["\\boxed{", "}", "{", "\\frac", "1", "-", "/", "^", "\\sqrt", "$", "x", " "]),
    max_size=80,
).map("".join)
SETTINGS = settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow], derandomize=True
)


def _timed(limit_s: float, fn: Any, *args: Any) -> Any:
    t0 = time.monotonic()
    out = fn(*args)
    elapsed = time.monotonic() - t0
    assert elapsed < limit_s, f"{getattr(fn, '__name__', fn)} took {elapsed:.2f}s > {limit_s}s"
    return out


MATH_LIMIT_S = 6.0  # the verifier's 3 s hard deadline + process replacement slack


@SETTINGS
@given(completion=st.one_of(TEXT, MATHY), answer=st.one_of(TEXT, MATHY))
def test_math_reward_never_raises(completion: str, answer: str) -> None:
    from gcpo.tasks import math_reward

    assert _timed(MATH_LIMIT_S, math_reward, completion, answer) in (0.0, 1.0)


@pytest.fixture(scope="module")
def warm_verifier() -> None:
    from gcpo.tasks import math_reward

    math_reward("\\boxed{1/2}", "0.5")  # start the worker pool outside the timed calls


@pytest.mark.parametrize(
    "text",
    ADVERSARIAL,
    ids=range(len(ADVERSARIAL)),
)
def test_builtin_rewards_on_adversarial_text(text: str, warm_verifier: None) -> None:
    from gcpo.tasks import extract_answer, math_reward, qa_scores
    from gcpo.tasks.synthetic import arithmetic_reward, passage_qa_reward

    # a 1 s verifier budget here (the default is 3 s) keeps the test short; the deadline is the
    # same mechanism whatever its length
    def math_1s(c: str, a: str) -> float:
        return math_reward(c, a, timeout=1.0)

    assert _timed(1.0 + 2.0, math_1s, text, "42") in (0.0, 1.0)
    assert _timed(1.0 + 2.0, math_1s, "\\boxed{42}", text) in (0.0, 1.0)
    _timed(1.0, extract_answer, text)
    scores = _timed(1.0, qa_scores, text, ["Paris", text[:100] or "x"])
    assert all(0.0 <= v <= 1.0 for v in scores.values())
    assert _timed(1.0, arithmetic_reward, text, "42") in (0.0, 1.0)
    assert _timed(1.0, passage_qa_reward, text, "Paris") in (0.0, 1.0)


@SETTINGS
@given(prediction=TEXT, answers=st.lists(TEXT, min_size=1, max_size=3))
def test_qa_scores_never_raise(prediction: str, answers: list[str]) -> None:
    from gcpo.tasks import qa_scores

    scores = _timed(1.0, qa_scores, prediction, answers)
    assert set(scores) == {"em", "f1", "cover_em"}
    assert all(0.0 <= v <= 1.0 and not math.isnan(v) for v in scores.values())


@SETTINGS
@given(completion=TEXT, answer=st.one_of(TEXT, st.integers(-(10**30), 10**30).map(str)))
def test_synthetic_rewards_never_raise(completion: str, answer: str) -> None:
    from gcpo.tasks.synthetic import arithmetic_reward, passage_qa_reward

    # a non-integer gold makes arithmetic_reward 0.0, not an exception
    assert _timed(1.0, arithmetic_reward, completion, answer) in (0.0, 1.0)
    assert _timed(1.0, passage_qa_reward, completion, answer) in (0.0, 1.0)


def _trl_rewards() -> list[tuple[str, Any]]:
    from gcpo.tasks.registry import reward_names
    from gcpo.train.config import TrainConfig
    from gcpo.train.data import load_reward

    return [(n, load_reward(TrainConfig(reward=n))) for n in reward_names()]


@pytest.mark.parametrize("name", ["math", "qa-f1", "qa-em", "arithmetic", "passage-qa"])
@settings(max_examples=10, deadline=None, derandomize=True)
@given(texts=st.lists(st.one_of(TEXT, st.sampled_from(ADVERSARIAL)), min_size=1, max_size=4))
def test_trl_signature_builtins_never_raise(name: str, texts: list[str]) -> None:
    """Every built-in TRL reward (as `gcpo train` loads it, wrapped in safe_reward with
    fail_fast) returns one finite float per completion: the wrapper never had to repair it."""
    fn = dict(_trl_rewards())[name]
    wrapped = safe_reward(fn, fail_fast=True)
    completions = [[{"role": "assistant", "content": t}] for t in texts]
    t0 = time.monotonic()
    out = wrapped(
        prompts=[[{"role": "user", "content": "q"}]] * len(texts),
        completions=completions,
        answer=["42"] * len(texts),
    )
    assert time.monotonic() - t0 < MATH_LIMIT_S * len(texts)
    assert len(out) == len(texts) and all(isinstance(v, float) for v in out)


# -- NaN never reaches weights, advantages or the loss ------------------------------------------


def _flaky_reward(prompts, completions, answer, **kwargs):
    """Per batch of 8 (4 groups of 2): group 0 all unscorable (None, NaN), group 1 half
    unscorable (inf), the rest scored by the digit fraction of the completion."""
    out: list[Any] = []
    for i, c in enumerate(completions):
        text = c[-1]["content"] if isinstance(c, list) else c
        if i % 8 == 0:
            out.append(None)
        elif i % 8 == 1:
            out.append(math.nan)
        elif i % 8 == 2:
            out.append(math.inf)
        else:
            out.append(sum(ch.isdigit() for ch in text) / max(len(text), 1) + (i % 2))
    return out


def _raising_reward(prompts, completions, **kwargs):
    raise RuntimeError("judge server down")


@pytest.mark.parametrize(
    "preset_name, wrap", [("gcpo", True), ("seed-grpo", True), ("gcpo", False)]
)
def test_unscorable_completions_keep_training_finite(
    tmp_path, preset_name: str, wrap: bool
) -> None:
    """With safe_reward, and also with a raw reward handed straight to GCPOTrainer (library use:
    TRL turns None into NaN, GCPOTrainer turns +-inf into NaN), nothing non-finite gets through."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from tiny_trl import tiny_grpo_args

    from gcpo.models import load_policy
    from gcpo.tasks.synthetic import make_task
    from gcpo.trl import GCPOTrainer

    records: list[dict[str, torch.Tensor]] = []

    class Recording(GCPOTrainer):
        def _generate_and_score_completions(self, inputs):
            out = super()._generate_and_score_completions(inputs)
            if self.model.training:
                records.append(
                    {
                        "advantages": out["advantages"].detach().clone(),
                        "weights": self.last_scores[1].weights.clone(),
                        "rewards": self.last_groups.rewards.clone(),
                    }
                )
            return out

    stats, stats2 = RewardStats(), RewardStats()
    flaky = safe_reward(_flaky_reward, stats=stats) if wrap else _flaky_reward
    raising = safe_reward(_raising_reward, stats=stats2) if wrap else _flaky_reward
    model, tok = load_policy("tiny-random")
    trainer = Recording(
        model=model,
        processing_class=tok,
        reward_funcs=[flaky, raising],
        args=tiny_grpo_args(tmp_path / "out", per_device_train_batch_size=8),
        train_dataset=Dataset.from_list(make_task("arithmetic", 16, seed=0)),
        weighting=preset_name,
        embedder="hashing",
    )
    trainer.train()
    assert len(records) == 2
    for rec in records:
        assert torch.isfinite(rec["advantages"]).all()
        assert torch.isfinite(rec["weights"]).all()
        assert torch.isfinite(rec["rewards"]).all()
        # completions 0 and 1 (group 0) and 2 are unscorable: advantage exactly 0
        assert rec["advantages"][:3].abs().max() == 0
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    assert losses and all(math.isfinite(v) for v in losses)
    if not wrap:
        return
    # 2 steps x 8 completions: 3 unscorable per step by the flaky reward, all 8 by the raising one
    assert stats.calls == 2 and stats.unscorable == 6 and stats.none == 2 and stats.non_finite == 4
    assert stats2.errors == 2 and stats2.unscorable == 16
    logged = [h for h in trainer.state.log_history if "gcpo/unscorable_frac/_flaky_reward" in h]
    assert logged and logged[0]["gcpo/unscorable_frac/_flaky_reward"] == pytest.approx(3 / 8)
    assert logged[0]["gcpo/reward_errors/_raising_reward"] == pytest.approx(1.0)
