import pytest
import torch

from gcpo.diagnostics.analyze import AnalyzeConfig, _sample
from gcpo.diagnostics.columns import preset_columns, signal_plan
from gcpo.diagnostics.items import load_items
from gcpo.fields import ConfigError


def test_signal_plan_maps_presets_onto_baseline_columns():
    columns, preset_column = signal_plan(
        ["grpo", "seed-grpo", "seed-grpo-strong", "gcpo", "gcpo-bot"]
    )
    # columns are the signals' unique labels, as in the trainer's metrics and `gcpo signals`
    assert list(columns) == [
        "se_lik", "se_emb_lik", "cd", "bot", "eig", "te", "nll", "reward_dispersion"
    ]  # fmt: skip
    assert preset_column == {
        "seed-grpo": "se_lik",
        "seed-grpo-strong": "se_lik",
        "gcpo": "cd",
        "gcpo-bot": "bot",
    }
    assert columns["se_emb_lik"].se_clusterer == "embedding"
    assert columns["se_lik"].se_clusterer == "answer"
    # a preset whose signal configuration differs gets its own labelled column
    from gcpo.scoring import GroupScorer

    scorer = GroupScorer(columns["bot"])
    assert scorer.label("barycentric_transport") == "bot"


def test_preset_columns_follow_the_weighting_definitions():
    rows = [
        {"reward_dispersion": rd, "rewards": [0.0] * 8, "cd": cd, "se_lik": se}
        for rd, cd, se in [(0.5, 0.1, 0.0), (0.0, 0.4, 1.0), (0.25, 0.3, 2.0), (0.4, 0.2, 0.5)]
    ]
    out = preset_columns(
        rows, ["grpo", "gcpo", "seed-grpo"], {"gcpo": "cd", "seed-grpo": "se_lik"}
    )
    assert [o["weight_grpo"] for o in out] == [1.0] * 4
    # gcpo: the rank of CD's residual given RD over the active groups; with three active groups
    # a quadratic in RD fits their ranks exactly, so nothing is left: all tie at 0.5
    assert [o["cal_gcpo"] for o in out] == [0.5, 0.0, 0.5, 0.5]
    assert out[1]["weight_gcpo"] == 1.0  # RD = 0: no learning signal, untouched
    # seed-grpo: U~ = SE / log 8 (bound normalisation, no calibration), weight 1 / (1 + 0.0417 U~)
    for o, se, r in zip(out, [0.0, 1.0, 2.0, 0.5], rows, strict=True):
        assert o["cal_seed-grpo"] == pytest.approx(
            min(se / torch.log(torch.tensor(8.0)).item(), 1.0)
        )
        expected = 1 / (1 + 0.0417 * o["cal_seed-grpo"]) if r["reward_dispersion"] > 0 else 1.0
        assert o["weight_seed-grpo"] == pytest.approx(expected)
    # renormalised: mean gcpo weight over groups with RD > 0 is 1
    active = [
        o["weight_gcpo"] for o, r in zip(out, rows, strict=True) if r["reward_dispersion"] > 0
    ]
    assert sum(active) / len(active) == pytest.approx(1.0)


def test_config_rejects_unknown_preset():
    with pytest.raises(ConfigError, match="presets"):
        AnalyzeConfig(task="arithmetic", presets=["nope"])


def test_sampling_logprobs_match_a_full_forward():
    """l_i and token entropy taken from the generation logits equal a fresh forward pass."""
    from gcpo.gradients import completion_gradients, select_parameters
    from gcpo.models import load_policy

    cfg = AnalyzeConfig(
        model="tiny-random",
        task="arithmetic",
        prompts=1,
        group_size=3,
        max_new_tokens=6,
        temperature=0.7,
    )
    model, tok = load_policy("tiny-random")
    item = load_items(task="arithmetic", benchmark=None, prompts=1)[0]
    prompt, comps, logprobs, entropies = _sample(model, tok, item, cfg)
    assert len(comps) == 3 and all(c.numel() <= 6 for c in comps)
    params = [p for _, p in select_parameters(model, "lm_head")]
    seqs = [torch.cat([prompt, c]) for c in comps]
    ref = completion_gradients(
        model, params, seqs, [prompt.numel()] * 3, torch.zeros(3), temperature=0.7
    )
    torch.testing.assert_close(torch.tensor(logprobs), ref.mean_logprob, rtol=1e-4, atol=1e-5)
    torch.testing.assert_close(torch.tensor(entropies), ref.mean_entropy, rtol=1e-4, atol=1e-5)
    again = _sample(model, tok, item, cfg)  # seeded by (seed, prompt id)
    assert [c.tolist() for c in again[1]] == [c.tolist() for c in comps]


def test_math_benchmark_items_use_math_reward(tmp_path):
    import json

    data = tmp_path / "math500"
    data.mkdir()
    rows = [
        {
            "problem": f"What is {i}+{i}?",
            "answer": str(2 * i),
            "unique_id": f"t/{i}.json",
            "level": 1 + i % 5,
        }
        for i in range(10)
    ]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_items(
        task=None, benchmark="math500", data_dir=str(tmp_path), prompts=3, max_level=2
    )
    assert len(items) == 3
    assert all(int(it.answer) // 2 % 5 in (0, 1) for it in items)  # levels 1 and 2 only
    it = items[0]
    assert it.reward(f"so the answer is \\boxed{{{it.answer}}}") == 1.0
    assert it.reward("\\boxed{12345}") == 0.0
    assert it.answer_key("\\boxed{ 4 }") == "4"
    fewer = load_items(
        task=None, benchmark="math500", data_dir=str(tmp_path), prompts=2, max_level=2
    )
    assert [i.prompt_id for i in fewer] == [i.prompt_id for i in items[:2]]  # prefix-stable


def test_qa_benchmark_items_score_the_answer_line_like_eval(tmp_path):
    import json

    data = tmp_path / "narrativeqa"
    data.mkdir()
    rows = [
        {"question": f"Who is person {i}?", "answer": ["Mia Stone", "Mia"], "passage": "Mia is."}
        for i in range(3)
    ]
    (data / "test.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    items = load_items(task=None, benchmark="narrativeqa", data_dir=str(tmp_path), prompts=2)
    it = items[0]
    assert it.reward("Answer: Mia Stone\nShe lives by the sea.") == 1.0
    # the answer must be on the first line, as gcpo eval and gcpo train score QA
    assert it.reward("Nobody knows.\nMia Stone") == 0.0


def test_resume_accepts_a_run_written_before_the_embedder_was_nested(tmp_path):
    import json

    from gcpo.diagnostics.analyze import _check_resume, _fingerprint

    cfg = AnalyzeConfig(task="arithmetic", embedder="hashing", output=str(tmp_path))
    old = _fingerprint(cfg)
    old["embedder"] = "hashing"  # run.json of an earlier version
    (tmp_path / "run.json").write_text(json.dumps({"fingerprint": old}))
    _check_resume(tmp_path, cfg)  # same settings: resumes
    _check_resume(tmp_path, AnalyzeConfig(task="arithmetic", embedder={"name": "hashing",
                                          "batch_size": 2}, output=str(tmp_path)))  # fmt: skip
    (tmp_path / "run.json").write_text(json.dumps({"fingerprint": old}))
    with pytest.raises(ConfigError, match="embedder"):
        _check_resume(tmp_path, AnalyzeConfig(task="arithmetic", embedder="other"))


def test_other_objective_from_rescaled_gradients_equals_a_run_of_it():
    """V and NSR of the other objective (the same gradients rescaled by the completion lengths)
    equal those of a run made with that objective, on the same seeded completions."""
    from gcpo.diagnostics.analyze import _analyse_group
    from gcpo.diagnostics.columns import make_scorers
    from gcpo.diagnostics.items import Item
    from gcpo.embedders import get_embedder
    from gcpo.gradients import select_parameters
    from gcpo.models import load_policy
    from gcpo.tasks.registry import TaskKind

    # a reward that splits the group: 1.0 for an even number of characters
    even = TaskKind(
        name="even-length",
        description="test",
        score=lambda c, refs, **_: {"score": float(len(c) % 2 == 0)},
        answer_key=lambda c: str(len(c) % 2),
    )
    model, tok = load_policy("tiny-random")
    params = [p for _, p in select_parameters(model, "last-block")]
    scorers = make_scorers(signal_plan(["gcpo"])[0], get_embedder("hashing"))
    rows = {}
    for seed in range(5):  # a seed whose group has RD > 0
        item = Item("p0", [{"role": "user", "content": "What is 2 + 2?"}], ["4"], even)
        for objective in ("mean", "sum"):
            cfg = AnalyzeConfig(
                model="tiny-random", task="arithmetic", group_size=6, max_new_tokens=8,
                temperature=1.0, seed=seed, objective=objective,
            )  # fmt: skip
            rows[objective] = _analyse_group(item, model, tok, params, None, scorers, cfg)
        if rows["mean"]["reward_dispersion"] > 0:
            break
    mean, total = rows["mean"], rows["sum"]
    assert mean["reward_dispersion"] > 0 and mean["completions"] == total["completions"]
    assert mean["grad_variance"] > 0
    assert mean["grad_variance_mean"] == mean["grad_variance"]
    assert total["grad_variance_sum"] == total["grad_variance"]
    for key in ("grad_variance_sum", "grad_nsr_sum", "grad_variance_mean", "grad_nsr_mean"):
        assert mean[key] == pytest.approx(total[key], rel=1e-3), key
    assert total["grad_variance"] != pytest.approx(mean["grad_variance"], rel=1e-2)


def test_synthetic_items_from_the_train_split_with_options():
    test = load_items(task="graded-arithmetic", benchmark=None, prompts=8)
    train = load_items(
        task="graded-arithmetic", benchmark=None, prompts=8, split="train",
        options={"levels": ["1d+", "2d+"]},
    )  # fmt: skip
    assert {i.prompt_id for i in test}.isdisjoint(i.prompt_id for i in train)
    assert [i.meta["level"] for i in train] == ["1d+", "2d+"] * 4
    assert [i.meta["level"] for i in test][:4] == ["1d+", "1d*", "1d-", "2d+"]
    with pytest.raises(ConfigError, match="task_options"):
        load_items(task="graded-arithmetic", benchmark=None, prompts=2, options={"colour": 1})
