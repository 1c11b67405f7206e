"""GCPOTrainer on TRL 1.16: pinned TRL internals, weight application, loss types, 2 processes."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl")

from gcpo.presets import preset  # noqa: E402
from gcpo.rundir import STATE_FILE  # noqa: E402
from gcpo.scoring import Groups, GroupScorer  # noqa: E402
from gcpo.tasks.synthetic import make_task  # noqa: E402
from gcpo.trl import GCPOTrainer  # noqa: E402
from gcpo.weighting import initial_state  # noqa: E402

G = 2


def answer_reward(prompts, completions, answer, **kwargs):
    """A reward that is constant within a group (the prompt's answer mod 2) except for one
    completion in odd groups, so group layout and dispersion are both visible."""
    out = []
    for i, a in enumerate(answer):
        base = float(int(a) % 2)
        out.append(1.0 - base if (i % G == 0 and int(a) % 3 == 0) else base)
    return out


def length_reward(prompts, completions, **kwargs):
    """Reward varying within groups: fraction of the completion that is digits."""
    out = []
    for c in completions:
        text = c[-1]["content"] if isinstance(c, list) else c
        out.append(sum(ch.isdigit() for ch in text) / max(len(text), 1))
    return out


class Recording(GCPOTrainer):
    """Keeps, per generation batch, TRL's advantages before scaling and the local weights."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.records: list[dict] = []

    def _group_weights(self, output):
        base = output["advantages"].detach().clone()
        w, w_all = super()._group_weights(output)
        self.records.append({"base": base, "weights": w.clone()})
        return w, w_all

    def _generate_and_score_completions(self, inputs):
        out = super()._generate_and_score_completions(inputs)
        if self.model.training:
            self.records[-1]["final"] = out["advantages"].detach().clone()
            self.records[-1]["groups"] = self.last_groups
            self.records[-1]["prompts"] = [r["prompt"][0]["content"] for r in inputs]
        return out


def make_trainer(tmp_path: Path, cls=Recording, *, weighting="gcpo", reward=length_reward, **args):
    from tiny_trl import tiny_grpo_args

    from gcpo.models import load_policy

    model, tok = load_policy("tiny-random")
    ds = __import__("datasets").Dataset.from_list(make_task("arithmetic", 16, seed=0))
    return cls(
        model=model,
        processing_class=tok,
        reward_funcs=[reward],
        args=tiny_grpo_args(tmp_path / "out", **{"num_generations": G, **args}),
        train_dataset=ds,
        weighting=weighting,
        embedder="hashing",
    )


# -- pinned TRL internals ------------------------------------------------------------------------


def test_trl_version_pinned() -> None:
    major, minor = (int(x) for x in trl.__version__.split(".")[:2])
    assert (major, minor) == (1, 16), (
        f"GCPOTrainer is written against TRL 1.16, found {trl.__version__}"
    )


def test_trl_extension_points_exist_with_expected_signatures() -> None:
    from trl import GRPOTrainer

    sig = inspect.signature(GRPOTrainer._calculate_rewards)
    assert list(sig.parameters) == [
        "self",
        "inputs",
        "prompts",
        "completions",
        "completion_ids_list",
    ]
    sig = inspect.signature(GRPOTrainer._generate_and_score_completions)
    assert list(sig.parameters) == ["self", "inputs"]
    for name in (
        "_save_checkpoint",
        "_load_optimizer_and_scheduler",
        "_get_output_dir",
        "_get_per_token_logps_and_entropies",
    ):
        assert callable(getattr(GRPOTrainer, name)), name
    src = inspect.getsource(GRPOTrainer._calculate_rewards)
    assert "gather(rewards_per_func)" in src  # rewards come back gathered over processes
    src = inspect.getsource(GRPOTrainer._generate_and_score_completions)
    assert "self.accelerator.process_index * len(prompts)" in src  # the process slice we mirror
    assert '"advantages": advantages' in src


def test_group_layout_advantages_and_weights(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, reward=answer_reward)
    trainer.train()
    assert len(trainer.records) == 2
    for rec in trainer.records:
        groups: Groups = rec["groups"]
        # every group holds G consecutive completions of one prompt (RepeatSampler layout)
        assert rec["prompts"][0::G] == rec["prompts"][1::G]
        assert groups.prompts == rec["prompts"][0::G]
        # advantages are local [N_local] and rescaled by exactly the weight of their group
        n = len(rec["prompts"])
        assert rec["base"].shape == rec["final"].shape == (n,)
        torch.testing.assert_close(rec["final"], rec["base"] * rec["weights"])
        _, result = trainer.last_scores
        assert torch.isfinite(rec["weights"]).all()
    # the weights of the last batch are the scorer's group weights, one per group, repeated G times
    torch.testing.assert_close(trainer.records[-1]["weights"], result.weights.repeat_interleave(G))
    # rewards reached the scorer group-contiguous: answer_reward is constant within even groups
    last = trainer.records[-1]["groups"]
    assert last.rewards.shape == (n // G, G)
    for row in trainer.state.log_history[:-1]:
        # weights are reported over the active groups (RD > 0), so only when there is one
        weight_keys = ("gcpo/weight_mean", "gcpo/weight_min", "gcpo/weight_max", "gcpo/weight_std")
        for key in weight_keys:
            assert (key in row) == (row["gcpo/active_groups"] > 0), key
        for key in (
            "gcpo/active_groups",
            "gcpo/uniform_fallback",
            "gcpo/reward_dispersion",
            "gcpo/frac_zero_reward_dispersion",
            "gcpo/signal/cd",
            "gcpo/embed_s",
            "gcpo/signals_s",
        ):
            assert key in row, key


def test_weights_match_a_fresh_scorer_replay(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, max_steps=3)
    trainer.train()
    scorer = GroupScorer(preset("gcpo"), "hashing")
    state = initial_state(scorer.config)
    for rec in trainer.records:
        expected = scorer.score(rec["groups"], state).weights.repeat_interleave(G)
        torch.testing.assert_close(rec["weights"], expected)
    assert trainer.gcpo_state.values == state.values  # rank window advanced identically


def test_grpo_preset_leaves_trl_advantages_unchanged(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, weighting="grpo", max_steps=1)
    trainer.train()
    rec = trainer.records[0]
    torch.testing.assert_close(rec["final"], rec["base"])
    assert trainer.gcpo_state is None


LOSS_CASES = [
    ("grpo", {}),
    ("dr_grpo", {}),
    ("dapo", {"num_iterations": 2}),
    ("bnpo", {}),
    ("cispo", {}),
    ("sapo", {}),
    ("luspo", {"importance_sampling_level": "sequence"}),
    ("vespo", {}),
]


def test_loss_types_are_read_from_trl_and_each_is_tested_here() -> None:
    # gcpo keeps no copy of TRL's loss list (TrainConfig checks against loss_types()); a TRL
    # upgrade that adds or drops one fails here until the weighting is tested under it
    from gcpo.trl.trainer import loss_types

    assert set(loss_types()) == {name for name, _ in LOSS_CASES}


@pytest.mark.parametrize("loss_type, extra", LOSS_CASES)
def test_every_loss_type_and_iterations(tmp_path: Path, loss_type: str, extra: dict) -> None:
    trainer = make_trainer(tmp_path, loss_type=loss_type, max_steps=2, **extra)
    trainer.train()
    iters = extra.get("num_iterations", 1)
    # with num_iterations > 1 TRL reuses a generation batch: weights are applied once per batch
    assert len(trainer.records) == -(-2 // iters)
    for rec in trainer.records:
        torch.testing.assert_close(rec["final"], rec["base"] * rec["weights"])
    losses = [r["loss"] for r in trainer.state.log_history if "loss" in r]
    assert losses and all(torch.isfinite(torch.tensor(losses)))


def test_seed_grpo_gets_logprobs(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, weighting="seed-grpo", max_steps=1)
    trainer.train()
    groups = trainer.records[0]["groups"]
    assert groups.logprobs is not None
    assert (groups.logprobs[groups.mask] <= 0).all()
    assert "gcpo/signal/se_lik" in trainer.state.log_history[0]  # SEED-GRPO's configuration


# -- edge paths: what is applied is exactly what the method says --------------------------------


def test_truncated_completions_keep_their_real_likelihood(tmp_path: Path) -> None:
    """mask_truncated_completions zeroes a truncated completion's mask; its l_i must still be
    its mean token log-prob over its real tokens, not 0 (which would take all softmax mass)."""
    trainer = make_trainer(
        tmp_path, weighting="seed-grpo", max_steps=1, mask_truncated_completions=True
    )
    trainer.train()
    groups = trainer.records[0]["groups"]
    assert groups.logprobs is not None
    lp = groups.logprobs[groups.mask]
    assert bool((lp < 0).all()), lp  # tiny-random truncates at 4 tokens: old code gave 0.0
    # the same values as a plain forward pass over the real tokens (no truncation masking)
    plain = make_trainer(tmp_path / "plain", weighting="seed-grpo", max_steps=1)
    plain.train()
    torch.testing.assert_close(plain.records[0]["groups"].logprobs, groups.logprobs)


@pytest.mark.parametrize(
    "weighting, extra",
    [
        ("grpo", ["nll", "te"]),
        ("gcpo", ["negative_log_likelihood", "token_entropy", "se"]),
    ],
)
def test_every_registered_signal_runs_in_the_trainer(
    tmp_path: Path, weighting: str, extra: list[str]
) -> None:
    trainer = make_trainer(tmp_path, max_steps=1, weighting=weighting)
    trainer.extra_signals = extra
    trainer._gcpo_inputs = trainer.scorer.needs(extra)
    trainer.train()
    row = trainer.state.log_history[0]
    assert {"gcpo/signal/nll", "gcpo/signal/te"} <= set(row)
    groups = trainer.records[0]["groups"]
    assert groups.logprobs is not None and groups.token_entropy is not None
    assert bool((groups.token_entropy[groups.mask] > 0).all())


def test_nll_and_likelihood_weighted_cd_as_the_weighting_signal(tmp_path: Path) -> None:
    from gcpo.weighting import WeightingConfig

    for config in (
        WeightingConfig(signal="negative_log_likelihood"),
        WeightingConfig(signal="token_entropy"),
        WeightingConfig(signal="cosine_dispersion", completion_weighting="likelihood"),
    ):
        trainer = make_trainer(tmp_path / config.signal, max_steps=1, weighting=config)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            trainer.train()
        assert not [w for w in caught if "likelihood weighting" in str(w.message)]
        _, result = trainer.last_scores
        assert not result.notes  # no silent fallback to uniform weights
        groups = trainer.records[0]["groups"]
        needed = groups.token_entropy if config.signal == "token_entropy" else groups.logprobs
        assert needed is not None


def test_normalize_then_sum_is_refused_for_gcpo_weighting(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="multi_objective_aggregation: got 'normalize_then_sum'"):
        make_trainer(tmp_path, multi_objective_aggregation="normalize_then_sum")
    # plain GRPO (weight 1) has nothing to get wrong
    make_trainer(tmp_path, weighting="grpo", multi_objective_aggregation="normalize_then_sum")


def sometimes_none_reward(prompts, completions, **kwargs):
    """1.0 / 0.0 by completion position, and None (unscorable) for the third of each four."""
    return [None if i % 4 == 2 else float(i % 2) for i in range(len(completions))]


def test_unscorable_completions_are_masked_out_of_every_signal(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    trainer = make_trainer(
        tmp_path, reward=sometimes_none_reward, max_steps=1, num_generations=4,
        per_device_train_batch_size=8,
    )
    with caplog.at_level("WARNING"):
        trainer.train()
    # counted (below); the library class leaves TRL's own warning as TRL emits it (gcpo train
    # filters it from its console: test_gcpo_train_alone_filters_trls_unscorable_warning)
    assert [r for r in caplog.records if "All reward functions returned None" in r.getMessage()]
    groups = trainer.records[0]["groups"]
    assert groups.mask.tolist() == [[True, True, False, True]] * 2
    from gcpo.signals import reward_dispersion

    _, result = trainer.last_scores
    # RD over the valid rewards [0, 1, 1] (not with a filled-in group mean)
    expected = reward_dispersion(torch.tensor([[0.0, 1.0, 1.0]] * 2))
    torch.testing.assert_close(result.reward_dispersion, expected.float())
    # CD over the valid completions only
    scorer = GroupScorer(preset("gcpo"), "hashing")
    kept = Groups.from_lists(
        groups.prompts, [[c[0], c[1], c[3]] for c in groups.completions], [[0, 1, 1]] * 2
    )
    torch.testing.assert_close(
        result.signals["cosine_dispersion"], scorer.signals(kept)["cosine_dispersion"]
    )
    assert trainer.gcpo_counts["unscorable"] == 2


def test_logged_weights_and_advantages_are_the_applied_ones(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, reward=answer_reward, max_steps=2)
    trainer.train()
    rec = trainer.records[-1]
    _, result = trainer.last_scores
    active = result.active
    assert active.tolist() == (result.reward_dispersion > 0).tolist()
    row = [r for r in trainer.state.log_history if "gcpo/active_groups" in r][-1]
    assert row["gcpo/active_groups"] == float(active.sum())
    if bool(active.any()):
        w = result.weights.double()[active]
        assert row["gcpo/weight_mean"] == pytest.approx(float(w.mean()))
        assert row["gcpo/weight_min"] == pytest.approx(float(w.min()))
    # TRL's completions log shows the advantages that were applied
    logged = torch.tensor(list(trainer._logs["advantages"]))[-rec["final"].numel() :]
    torch.testing.assert_close(logged.float(), rec["final"].float())


def test_checkpoint_holds_and_restores_rank_state(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, save_strategy="steps", save_steps=1, max_steps=2)
    trainer.train()
    saved = json.loads((tmp_path / "out" / "checkpoint-1" / STATE_FILE).read_text())
    saved2 = json.loads((tmp_path / "out" / "checkpoint-2" / STATE_FILE).read_text())
    n_groups = 4 // G
    assert len(saved["rank_state"]["values"]) == n_groups
    assert saved2["rank_state"]["values"] == trainer.gcpo_state.values
    resumed = make_trainer(tmp_path, save_strategy="steps", save_steps=1, max_steps=3)
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    assert resumed.state.global_step == 3
    assert len(resumed.records) == 1  # only step 3 was generated
    # the window continued from checkpoint-2 instead of starting empty
    assert resumed.gcpo_state.values[: 2 * n_groups] == saved2["rank_state"]["values"]
    assert len(resumed.gcpo_state.values) == 3 * n_groups


def test_bad_weighting_argument(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="preset"):
        make_trainer(tmp_path, weighting="nope")
    with pytest.raises(ValueError, match="weighting"):
        make_trainer(tmp_path, weighting=3)


# -- two processes -------------------------------------------------------------------------------

WORKER = r"""
import json, os, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_trl_trainer import make_trainer
out = Path(sys.argv[1])
# 3 completions per process, G=2: the middle group straddles the two processes
trainer = make_trainer(out, per_device_train_batch_size=3, max_steps=2)
trainer.train()
rank = trainer.accelerator.process_index
rows = []
for rec in trainer.records:
    g = rec["groups"]
    rows.append({{
        "local_prompts": rec["prompts"],
        "local_weights": rec["weights"].tolist(),
        "group_prompts": g.prompts,
        "completions": g.completions,
        "rewards": g.rewards.tolist(),
    }})
(out / f"rank{{rank}}.json").write_text(json.dumps({{"rows": rows, "state": trainer.gcpo_state.values}}))
from tiny_trl import exit_worker
exit_worker()
"""


@pytest.mark.slow
def test_two_processes_apply_the_single_process_weights(tmp_path: Path) -> None:
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29531",
        str(script),
        str(tmp_path),
    ]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    # every process saw the same gathered batch and kept the same rank window
    assert ranks[0]["state"] == ranks[1]["state"]
    scorer = GroupScorer(preset("gcpo"), "hashing")
    state = initial_state(scorer.config)
    for step, (r0, r1) in enumerate(zip(ranks[0]["rows"], ranks[1]["rows"], strict=True)):
        assert r0["group_prompts"] == r1["group_prompts"]
        assert r0["completions"] == r1["completions"]
        # a group straddles the processes
        assert r0["local_prompts"][-1] == r1["local_prompts"][0], step
        groups = Groups.from_lists(r0["group_prompts"], r0["completions"], r0["rewards"])
        single = scorer.score(groups, state).weights.repeat_interleave(G).tolist()
        assert len(single) == 6
        torch.testing.assert_close(
            torch.tensor(r0["local_weights"] + r1["local_weights"]), torch.tensor(single)
        )
    assert ranks[0]["state"] == state.values


def test_model_card_names_base_model_and_weighting(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, weighting="gcpo-bot", max_steps=1)
    trainer.base_model = "HuggingFaceTB/SmolLM2-135M-Instruct"
    trainer.create_model_card(model_name="run")
    card = (tmp_path / "out" / "README.md").read_text()
    assert "fine-tuned version of [HuggingFaceTB/SmolLM2-135M-Instruct]" in card
    assert "[None]" not in card
    # the usage snippet loads the saved model, not model="None" (TRL's, for a model never pushed)
    assert f'model="{tmp_path / "out"}"' in card and "None" not in card
    trainer.create_model_card(model_name="run", model_path="runs/x/final")
    assert 'model="runs/x/final"' in (tmp_path / "out" / "README.md").read_text()
    assert trainer.hub_model_id is None
    assert "preset 'gcpo-bot': barycentric_transport weighting" in card
    assert "- gcpo" in card  # tag
    # the model's own config is left as it was
    assert trainer.model.config._name_or_path != "HuggingFaceTB/SmolLM2-135M-Instruct"


def vowel_reward(prompts, completions, **kwargs):
    """Graded in [0, 1] and varying within groups of the tiny random model: share of vowels."""
    out = []
    for c in completions:
        text = c[-1]["content"] if isinstance(c, list) else c
        out.append(sum(ch in "aeiou" for ch in text) / max(len(text), 1))
    return out


def _scaled(a: float, c: float):
    def reward(prompts, completions, **kwargs):
        return [a * r + c for r in vowel_reward(prompts, completions, **kwargs)]

    reward.__name__ = f"length_x{a:g}_plus{c:g}"
    return reward


def test_gcpo_weights_are_identical_on_any_reward_scale(tmp_path: Path) -> None:
    """[0, 1], two [0, 1] functions summed ([0, 2]), [-1, 1] and [0, 10]: the same weights
    (rd_max: null takes the scale from the rewards seen), and they are not all 1."""
    from tiny_trl import tiny_grpo_args

    from gcpo.models import load_policy

    def run(name: str, funcs: list) -> list[torch.Tensor]:
        model, tok = load_policy("tiny-random")
        ds = __import__("datasets").Dataset.from_list(make_task("arithmetic", 32, seed=0))
        trainer = Recording(
            model=model,
            processing_class=tok,
            reward_funcs=funcs,
            args=tiny_grpo_args(tmp_path / name, num_generations=G, per_device_train_batch_size=16, max_steps=2),
            train_dataset=ds,
            weighting="gcpo",
            embedder="hashing",
        )
        trainer.train()
        assert trainer.gcpo_counts["rd_clipped"] == 0
        return [rec["weights"] for rec in trainer.records]

    ref = run("unit", [vowel_reward])
    assert len(set(ref[0].tolist())) > 2  # the weighting acts
    for name, funcs in (
        ("summed", [vowel_reward, vowel_reward]),
        ("pm1", [_scaled(2.0, -1.0)]),
        ("ten", [_scaled(10.0, 0.0)]),
    ):
        for a, b in zip(ref, run(name, funcs), strict=True):
            torch.testing.assert_close(a, b, atol=1e-5, rtol=0), name


def test_a_step_the_weighting_cannot_change_is_said_once_and_counted(tmp_path: Path, caplog) -> None:
    # per_device_train_batch_size 2 with G = 2: one group per step, so renormalisation gives 1
    with caplog.at_level("WARNING", logger="gcpo.trl.trainer"):
        trainer = make_trainer(tmp_path, per_device_train_batch_size=2, max_steps=3)
        trainer.train()
    inert = [r["gcpo/inert_step"] for r in trainer.state.log_history if "gcpo/inert_step" in r]
    assert inert == [1.0, 1.0, 1.0]
    assert trainer.gcpo_counts["inert_steps"] == 3
    said = [r for r in caplog.records if "cannot change the update" in r.getMessage()]
    assert len(said) == 1


@pytest.mark.parametrize("name", ["learnability", "mgpo", "dgpo"])
def test_peer_presets_train_and_match_an_independent_reimplementation(
    tmp_path: Path, name: str
) -> None:
    """The applied weights of each step are the peer's formula (tests/test_peers.py's plain
    Python references) on the step's gathered rewards, renormalised to mean 1 over the groups
    with reward dispersion, inactive groups untouched."""
    from test_peers import ref_dgpo, ref_learnability, ref_mgpo

    trainer = make_trainer(
        tmp_path, weighting=name, reward=vowel_reward, per_device_train_batch_size=16, max_steps=2
    )
    trainer.train()
    low = high = None
    for rec in trainer.records:
        groups = rec["groups"]
        rows = groups.rewards.double().tolist()
        flat = [x for r in rows for x in r]
        low = min(flat) if low is None else min(low, min(flat))
        high = max(flat) if high is None else max(high, max(flat))
        if name == "learnability":
            raw = ref_learnability(rows, low, high)
        elif name == "mgpo":
            raw = ref_mgpo(rows, low, high, 0.5, 0.5)
        else:
            raw = ref_dgpo(rows, low, high)
        active = [len(set(r)) > 1 for r in rows]
        mean = sum(w for w, a in zip(raw, active, strict=True) if a) / sum(active)
        expected = torch.tensor([w / mean if a else 1.0 for w, a in zip(raw, active, strict=True)])
        assert sum(active) >= 2
        torch.testing.assert_close(
            rec["weights"].double(), expected.repeat_interleave(G).double(), atol=1e-5, rtol=1e-5
        )
        assert len(set(expected.tolist())) > 2  # the weighting acts


# -- what a user of the library class meets --------------------------------------------------------


def test_one_group_per_generation_batch_warns_once_at_construction(tmp_path: Path) -> None:
    """TRL's defaults (per-device batch 8, num_generations 8) give one group per batch: every
    renormalised weight is 1, which would train plain GRPO without a word."""
    from gcpo.trl import OneGroupPerBatchWarning

    with pytest.warns(OneGroupPerBatchWarning, match="holds 1 prompt group") as caught:
        trainer = make_trainer(tmp_path, per_device_train_batch_size=4, num_generations=4)
    ours = [w for w in caught if issubclass(w.category, OneGroupPerBatchWarning)]
    assert len(ours) == 1 and trainer.gcpo_counts["one_group_per_batch"] == 1
    assert "per_device_train_batch_size (x processes x steps_per_generation) >= 8" in str(
        ours[0].message
    )
    # nothing to say: two groups per batch, plain GRPO, or a weighting that is not relative
    for kwargs in (
        {"per_device_train_batch_size": 8, "num_generations": 4},
        {"per_device_train_batch_size": 4, "num_generations": 4, "weighting": "grpo"},
        {"per_device_train_batch_size": 4, "num_generations": 4, "weighting": "seed-grpo"},
        {"per_device_train_batch_size": 4, "num_generations": 4, "steps_per_generation": 2},
    ):
        with warnings.catch_warnings():
            warnings.simplefilter("error", OneGroupPerBatchWarning)
            trainer = make_trainer(tmp_path, **kwargs)
        assert trainer.gcpo_counts["one_group_per_batch"] == 0, kwargs


def test_library_trainer_changes_none_of_trls_warnings(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import logging

    from trl.trainer import grpo_trainer

    make_trainer(tmp_path, weighting="grpo")
    with caplog.at_level("WARNING"):
        logging.getLogger(grpo_trainer.__name__).warning("All reward functions returned None for x")
    assert [r for r in caplog.records if "All reward functions returned None" in r.getMessage()]


def test_gcpo_train_alone_filters_trls_unscorable_warning(caplog: pytest.LogCaptureFixture) -> None:
    import logging

    from trl.trainer import grpo_trainer

    from gcpo.train.run import quiet_unscorable_warning

    log = logging.getLogger(grpo_trainer.__name__)
    with caplog.at_level("WARNING"):
        with quiet_unscorable_warning():
            log.warning("All reward functions returned None for x")
            log.warning("another TRL warning")
        log.warning("All reward functions returned None for y")
    assert [r.getMessage() for r in caplog.records] == [
        "another TRL warning",
        "All reward functions returned None for y",
    ]
