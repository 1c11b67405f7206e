"""GCPOTrainer on TRL 1.16: pinned TRL internals, weight application, loss types, 2 processes."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

trl = pytest.importorskip("trl")

from gcpo.scoring import Groups, GroupScorer  # noqa: E402
from gcpo.tasks.synthetic import make_task  # noqa: E402
from gcpo.trl import GCPO_STATE_FILE, GCPOTrainer  # noqa: E402
from gcpo.weighting import initial_state, preset  # noqa: E402

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
        w = super()._group_weights(output)
        self.records.append({"base": base, "weights": w.clone()})
        return w

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
        for key in (
            "gcpo/weight_mean",
            "gcpo/weight_min",
            "gcpo/weight_max",
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


@pytest.mark.parametrize(
    "loss_type, extra",
    [
        ("grpo", {}),
        ("dr_grpo", {}),
        ("dapo", {"num_iterations": 2}),
        ("bnpo", {}),
        ("cispo", {}),
        ("sapo", {}),
        ("luspo", {"importance_sampling_level": "sequence"}),
        ("vespo", {}),
    ],
)
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
    assert "gcpo/signal/se" in trainer.state.log_history[0]


def test_checkpoint_holds_and_restores_rank_state(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, save_strategy="steps", save_steps=1, max_steps=2)
    trainer.train()
    saved = json.loads((tmp_path / "out" / "checkpoint-1" / GCPO_STATE_FILE).read_text())
    saved2 = json.loads((tmp_path / "out" / "checkpoint-2" / GCPO_STATE_FILE).read_text())
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
