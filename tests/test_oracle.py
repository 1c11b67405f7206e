"""The grad_nsr oracle (signal, need, trainer, preset) and the live alignment monitor."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from gcpo.presets import preset
from gcpo.scoring import Groups, GroupScorer
from gcpo.signals import get_signal, gradient_noise_stats, gradient_nsr

G = 2


# -- the pure signal ------------------------------------------------------------------------------


def _reference_nsr(grads: np.ndarray, eps: float = 1e-12) -> tuple[float, float]:
    """V and NSR of one group [n, P] by the textbook formulas, in float64."""
    mean = grads.mean(axis=0)
    v = float(np.mean(np.sum((grads - mean) ** 2, axis=1)))
    return v, v / (float(mean @ mean) + eps)


def test_grad_nsr_is_registered_with_the_gradients_need() -> None:
    spec = get_signal("nsr")
    assert spec.name == "grad_nsr" and spec.needs == ("gradients",) and spec.bound is None
    assert GroupScorer(preset("oracle")).needs() == {"gradients"}
    assert GroupScorer(preset("gcpo")).needs() == set()
    assert GroupScorer(preset("gcpo")).needs(["grad_nsr"]) == {"gradients"}
    oracle, gcpo = preset("oracle"), preset("gcpo")
    assert oracle.signal == "grad_nsr" and oracle.normalization == "rank"
    assert oracle.calibration == "none"
    for f in ("modulation", "alpha", "w_min", "focal_gamma", "renormalize", "rank_window"):
        assert getattr(oracle, f) == getattr(gcpo, f), f


def test_grad_nsr_matches_the_formula_and_the_analyze_statistics() -> None:
    from gcpo.diagnostics.stats import gradient_noise

    gen = torch.Generator().manual_seed(0)
    grads = torch.randn(3, 4, 7, generator=gen)
    got = gradient_nsr(grads)
    for b in range(3):
        v, nsr = _reference_nsr(grads[b].double().numpy())
        assert float(got[b]) == pytest.approx(nsr, rel=1e-6)
        assert float(gradient_noise_stats(grads)[0][b]) == pytest.approx(v, rel=1e-12)
    # one definition with gcpo analyze's
    torch.testing.assert_close(gradient_noise(grads).nsr, got)


def test_grad_nsr_invariants() -> None:
    gen = torch.Generator().manual_seed(1)
    grads = torch.randn(2, 5, 6, generator=gen)
    base = gradient_nsr(grads)
    # permutation within a group
    perm = torch.randperm(5, generator=gen)
    torch.testing.assert_close(gradient_nsr(grads[:, perm]), base)
    # a common scale of the gradients
    torch.testing.assert_close(gradient_nsr(grads * 1e-2), base, rtol=1e-4, atol=0)
    # inactive group (every A_i = 0, so every g_i = 0) -> 0
    inactive = grads.clone()
    inactive[1] = 0.0
    assert float(gradient_nsr(inactive)[1]) == 0.0
    # masked members are excluded, whatever their rows hold
    mask = torch.tensor([[True, True, False, True, False], [True] * 5])
    noisy = grads.clone()
    noisy[0, 2] = 1e6
    noisy[0, 4] = -3.0
    sub = gradient_nsr(grads[:1, [0, 1, 3]])
    torch.testing.assert_close(gradient_nsr(noisy, mask)[:1], sub)
    # degenerate groups stay finite: one member, all masked, identical gradients, P = 0
    one = gradient_nsr(grads[:, :1])
    assert one.tolist() == [0.0, 0.0]
    none = gradient_nsr(grads, torch.zeros(2, 5, dtype=torch.bool))
    assert none.tolist() == [0.0, 0.0]
    same = gradient_nsr(grads[:, :1].expand(2, 5, 6).contiguous())
    assert same.tolist() == [0.0, 0.0]
    assert gradient_nsr(torch.zeros(2, 3, 0)).tolist() == [0.0, 0.0]
    with pytest.raises(ValueError, match="gradients: contains a non-finite"):
        gradient_nsr(torch.full((1, 2, 3), float("nan")))
    with pytest.raises(ValueError, match="gradients: expected 3 dims"):
        gradient_nsr(torch.zeros(2, 3))


def test_groups_carry_gradients_to_the_signal() -> None:
    grads = torch.randn(2, 3, 4)
    groups = Groups.from_lists(["a", "b"], [["x", "y"], ["p", "q", "r"]], [[0, 1], [1, 0, 1]],
                               gradients=grads)  # fmt: skip
    assert groups.gradients is not None and groups.gradients.shape == (2, 3, 4)
    assert float(groups.gradients[0, 2].abs().sum()) == 0.0  # padding row zeroed
    scorer = GroupScorer(preset("oracle"))
    out = scorer.signals(groups)["grad_nsr"]
    torch.testing.assert_close(out, gradient_nsr(groups.gradients, groups.mask))
    result = scorer.score(groups, scorer.initial_state())
    assert result.labels["grad_nsr"] == "nsr" and torch.isfinite(result.weights).all()
    bare = Groups.from_lists(["a"], [["x", "y"]], [[0, 1]])
    with pytest.raises(ValueError, match="groups.gradients: signal 'grad_nsr' needs it"):
        scorer.signals(bare)
    with pytest.raises(ValueError, match=r"gradients: expected shape \[2, >= 3, P\]"):
        Groups.from_lists(["a", "b"], [["x", "y"], ["p", "q", "r"]], [[0, 1], [1, 0, 1]],
                          gradients=torch.zeros(2, 2, 4))  # fmt: skip


def test_count_sketch_keeps_nsr_within_its_tolerance() -> None:
    from gcpo.gradients import CountSketch

    gen = torch.Generator().manual_seed(3)
    grads = torch.randn(6, 4, 20000, generator=gen) + 0.5 * torch.randn(6, 1, 20000, generator=gen)
    sketch = CountSketch([20000], 4096, seed=0)
    projected = sketch.project(grads)
    exact, approx = gradient_nsr(grads), gradient_nsr(projected)
    # relative std of each squared norm <= sqrt(2/k) = 2.2 %; NSR is a ratio of two of them
    assert torch.allclose(approx, exact, rtol=0.15), (approx, exact)


def test_gradient_config_validation() -> None:
    from gcpo.fields import ConfigError
    from gcpo.gradients import DEFAULT_PROJECT_DIM, GradientConfig

    assert GradientConfig().project_dim == DEFAULT_PROJECT_DIM == 4096
    with pytest.raises(ConfigError, match="project_dim"):
        GradientConfig(project_dim=-1)
    with pytest.raises(ConfigError, match=r"params: 'layers\.\(' is neither"):
        GradientConfig(params="layers.(")


# -- the trainer ----------------------------------------------------------------------------------

trl = pytest.importorskip("trl")


def dispersed_reward(prompts, completions, answer, **kwargs):
    """Constant within even groups (inactive), one differing completion in odd groups."""
    out = []
    for i, _ in enumerate(completions):
        group = i // G
        out.append(float(i % G == 0) if group % 2 == 1 else 0.5)
    return out


def length_reward(prompts, completions, **kwargs):
    out = []
    for c in completions:
        text = c[-1]["content"] if isinstance(c, list) else c
        out.append(sum(ch.isdigit() for ch in text) / max(len(text), 1) + 0.01 * len(text))
    return out


def _trainer_class():
    from gcpo.trl import GCPOTrainer

    class Recording(GCPOTrainer):
        """Keeps, per batch, TRL's outputs and a direct autograd reference of every g_i."""

        def __init__(self, *args: Any, reference: bool = False, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            self.reference = reference
            self.records: list[dict[str, Any]] = []

        def _group_weights(self, output):  # type: ignore[no-untyped-def]
            rec: dict[str, Any] = {"base": output["advantages"].detach().clone()}
            if self.reference:
                rec["direct"] = _direct_gradients(self, output)
            w, w_all = super()._group_weights(output)
            rec.update(weights=w.clone(), groups=self.last_groups, result=self.last_scores[1])
            self.records.append(rec)
            return w, w_all

        def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
            out = super()._generate_and_score_completions(inputs)
            if self.model.training:
                self.records[-1]["final"] = out["advantages"].detach().clone()
            return out

    return Recording


def _direct_gradients(trainer: Any, output: dict[str, Any]) -> torch.Tensor:
    """g_i = A_i * grad l_i on the last block by plain autograd, one sequence at a time (no gcpo
    code): A_i TRL's advantage, 0 in groups whose rewards are all equal."""
    model = trainer.model
    n_layers = model.config.num_hidden_layers
    named = [(n, p) for n, p in model.named_parameters() if n.startswith(f"model.layers.{n_layers - 1}.")]
    params = [p for _, p in named]
    rewards = trainer._gcpo_rewards.sum(dim=1).view(-1, G)
    active = (rewards.max(dim=1).values > rewards.min(dim=1).values).repeat_interleave(G)
    n_local = output["completion_ids"].shape[0]
    active = active[trainer.accelerator.process_index * n_local :][:n_local]  # this process's slice
    out = []
    was = model.training
    model.eval()
    for i in range(output["completion_ids"].shape[0]):
        a = float(output["advantages"][i]) if bool(active[i]) else 0.0
        n = trainer._gcpo_lengths[i]
        if a == 0.0 or n == 0:
            out.append(torch.zeros(sum(p.numel() for p in params)))
            continue
        prompt = output["prompt_ids"][i][output["prompt_mask"][i].bool()]
        seq = torch.cat([prompt, output["completion_ids"][i, :n]])
        logits = model(input_ids=seq[None]).logits[0, prompt.numel() - 1 : -1].float()
        logp = torch.log_softmax(logits / trainer.temperature, -1).gather(-1, seq[prompt.numel():, None])
        grads = torch.autograd.grad(a * logp.mean(), params)
        out.append(torch.cat([g.reshape(-1) for g in grads]).detach())
    model.train(was)
    return torch.stack(out)  # [N_local, P]


def make_trainer(
    tmp_path: Path,
    *,
    weighting: Any = "oracle",
    reward: Any = dispersed_reward,
    trainer_kwargs: dict[str, Any] | None = None,
    **args: Any,
) -> Any:
    from datasets import Dataset
    from tiny_trl import tiny_grpo_args

    from gcpo.models import load_policy
    from gcpo.tasks.synthetic import make_task

    model, tok = load_policy("tiny-random")
    return _trainer_class()(
        model=model,
        processing_class=tok,
        reward_funcs=[reward],
        args=tiny_grpo_args(tmp_path / "out", **{"num_generations": G, **args}),
        train_dataset=Dataset.from_list(make_task("arithmetic", 16, seed=0)),
        weighting=weighting,
        embedder="hashing",
        **(trainer_kwargs or {}),
    )


def test_trainer_grad_nsr_matches_direct_autograd(tmp_path: Path) -> None:
    trainer = make_trainer(
        tmp_path, max_steps=2, per_device_train_batch_size=8,
        trainer_kwargs={"gradients": {"project_dim": 0}, "reference": True},
    )  # fmt: skip
    trainer.train()
    checked = 0
    for rec in trainer.records:
        groups, result = rec["groups"], rec["result"]
        direct = rec["direct"].view(-1, G, rec["direct"].shape[-1])
        assert groups.gradients is not None and groups.gradients.shape == direct.shape
        torch.testing.assert_close(groups.gradients, direct.float(), rtol=1e-4, atol=1e-7)
        for b in range(direct.shape[0]):
            if not bool(result.active[b]):
                assert float(result.signals["grad_nsr"][b]) == 0.0
                assert float(groups.gradients[b].abs().sum()) == 0.0
                continue
            _, nsr = _reference_nsr(direct[b].double().numpy())
            assert float(result.signals["grad_nsr"][b]) == pytest.approx(nsr, rel=1e-3)
            checked += 1
        # the weights scaled the advantages, once
        torch.testing.assert_close(rec["final"], rec["base"] * rec["weights"])
    assert checked >= 2


def test_oracle_trains_end_to_end_with_the_default_projection(tmp_path: Path) -> None:
    trainer = make_trainer(tmp_path, max_steps=2, per_device_train_batch_size=8)
    trainer.train()
    rec = trainer.records[-1]
    assert rec["groups"].gradients.shape == (4, G, 4096)
    assert torch.isfinite(rec["weights"]).all()
    rows = [r for r in trainer.state.log_history if "gcpo/active_groups" in r]
    assert len(rows) == 2
    for row in rows:
        assert "gcpo/signal/nsr" in row and row["gcpo/gradients_s"] >= 0.0
        assert row["gcpo/weight_mean"] == pytest.approx(1.0)  # renormalised over active groups
        assert not any(k.startswith("gcpo/align/") for k in row)  # monitor off by default
    assert trainer.gcpo_monitor is None
    assert json.loads(json.dumps(trainer.gcpo_state_dict()))["signal"] == "grad_nsr"


class _Counter:
    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        from gcpo.gradients import GradientProbe

        self.calls: list[int] = []
        original = GradientProbe.gradients

        def counting(probe, sequences, prompt_lengths, coefficients, temperature=1.0):  # type: ignore[no-untyped-def]
            self.calls.append(len(sequences))
            assert bool((torch.as_tensor(coefficients) != 0).all())
            return original(probe, sequences, prompt_lengths, coefficients, temperature)

        monkeypatch.setattr(GradientProbe, "gradients", counting)


def test_gradients_are_computed_only_when_needed(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = _Counter(monkeypatch)
    plain = make_trainer(tmp_path / "gcpo", weighting="gcpo", max_steps=2)
    plain.train()
    assert counter.calls == [] and all(r["groups"].gradients is None for r in plain.records)
    # the oracle: only the completions of active groups (dispersed_reward: the odd groups)
    oracle = make_trainer(tmp_path / "oracle", max_steps=2, per_device_train_batch_size=8)
    oracle.train()
    assert counter.calls == [4, 4]  # 2 active groups x G = 2 per step, of 4 groups
    # as an extra signal of another preset
    counter.calls.clear()
    extra = make_trainer(tmp_path / "extra", weighting="gcpo", max_steps=1,
                         trainer_kwargs={"extra_signals": ["nsr"]})  # fmt: skip
    extra.train()
    assert counter.calls == [2]
    assert "gcpo/signal/nsr" in extra.state.log_history[0]


def test_monitor_logs_every_k_steps_and_reuses_the_oracle_gradients(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    counter = _Counter(monkeypatch)
    trainer = make_trainer(
        tmp_path, weighting="gcpo", reward=length_reward, max_steps=4,
        trainer_kwargs={"monitor_every": 2, "extra_signals": ["nll"]},
    )  # fmt: skip
    trainer.train()
    rows = [r for r in trainer.state.log_history if "gcpo/active_groups" in r]
    measured = [r["step"] for r in rows if "gcpo/align/n" in r]
    assert measured == [2, 4]
    assert len(counter.calls) == 2  # gradients only on the measured steps
    names = {k for r in rows for k in r if k.startswith("gcpo/align/")}
    expected = {"gcpo/align/n"} | {
        f"gcpo/align/{label}/{t}" for label in ("cd", "nll", "rd", "weight") for t in ("V", "NSR")
    }
    assert names == expected
    last = [r for r in rows if "gcpo/align/n" in r][-1]
    assert last["gcpo/align/n"] == len(trainer.gcpo_monitor.groups) > 0
    assert all(-1.0 <= last[k] <= 1.0 for k in expected - {"gcpo/align/n"})
    assert "gcpo/monitor_s" in last
    # with the oracle, the monitor reuses its gradients: one gradient pass per step
    counter.calls.clear()
    oracle = make_trainer(tmp_path / "o", reward=length_reward, max_steps=2,
                          trainer_kwargs={"monitor_every": 1})  # fmt: skip
    oracle.train()
    assert len(counter.calls) == 2
    final = oracle.state.log_history[-2]
    assert final["gcpo/align/nsr/NSR"] == pytest.approx(1.0)  # the oracle ranks NSR by itself


def test_monitor_window_survives_checkpoint_and_resume(tmp_path: Path) -> None:
    kwargs = {"monitor_every": 1, "monitor_window": 5}
    trainer = make_trainer(tmp_path, weighting="gcpo", reward=length_reward, max_steps=2,
                           save_strategy="steps", save_steps=1, trainer_kwargs=kwargs)  # fmt: skip
    trainer.train()
    saved = json.loads((tmp_path / "out" / "checkpoint-2" / "gcpo_state.json").read_text())
    assert saved["rank_state"] is not None  # the weighting's own state, untouched
    window = saved["monitor"]
    assert window["measurements"] == 2 and window["groups"] == list(trainer.gcpo_monitor.groups)
    assert 0 < len(window["groups"]) <= 4
    resumed = make_trainer(tmp_path, weighting="gcpo", reward=length_reward, max_steps=3,
                           save_strategy="steps", save_steps=1, trainer_kwargs=kwargs)  # fmt: skip
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    mon = resumed.gcpo_monitor
    assert mon.measurements == 3
    new = [r for r in mon.groups if r["step"] == 3]
    assert new  # step 3 was measured, and continued the saved window (newest 5 kept)
    assert list(mon.groups) == (window["groups"] + new)[-5:]
    row = [r for r in resumed.state.log_history if "gcpo/align/n" in r][-1]
    assert row["gcpo/align/n"] == len(mon.groups)


def test_bad_monitor_arguments(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="monitor_every: expected an int >= 0, got -1"):
        make_trainer(tmp_path, weighting="gcpo", trainer_kwargs={"monitor_every": -1})
    with pytest.raises(ValueError, match="monitor_window: expected an int >= 1, got 0"):
        make_trainer(tmp_path, weighting="gcpo", trainer_kwargs={"monitor_every": 2, "monitor_window": 0})
    with pytest.raises(ValueError, match="gradients: expected a GradientConfig"):
        make_trainer(tmp_path, weighting="gcpo", trainer_kwargs={"gradients": 3})


# -- the monitor's window and the gcpo train surface ----------------------------------------------


def test_monitor_schedule_window_and_state() -> None:
    from gcpo.diagnostics.stats import spearman as analyze_spearman
    from gcpo.trl.monitor import AlignmentMonitor, spearman

    mon = AlignmentMonitor(every=4, window=3)
    assert [s for s in range(12) if mon.due(s)] == [3, 7, 11]  # steps 4, 8, 12 (1-based)
    assert [s for s in range(0, 12, 2) if mon.due(s, 2)] == [2, 6, 10]
    gen = np.random.default_rng(0)
    x, y = gen.normal(size=20), gen.normal(size=20)
    assert spearman(x, y) == pytest.approx(analyze_spearman(x, y))
    assert spearman([1, 2], [2, 1]) == 0.0 and spearman([1, 1, 1], [1, 2, 3]) == 0.0
    active = torch.tensor([True, False, True])
    mon.observe({"cd": torch.tensor([0.1, 0.5, 0.3])}, torch.tensor([1.0, 0.0, 2.0]),
                torch.tensor([3.0, 0.0, 1.0]), active, torch.tensor([1.1, 1.0, 0.9]))  # fmt: skip
    mon.observe({"cd": torch.tensor([0.7])}, torch.tensor([5.0]), torch.tensor([0.5]),
                torch.tensor([True]))  # fmt: skip
    assert len(mon.groups) == 3 and mon.measurements == 2
    rho = mon.correlations()
    assert rho["cd"]["V"] == pytest.approx(1.0) and rho["cd"]["NSR"] == pytest.approx(-1.0)
    assert rho["weight"] == {"V": 0.0, "NSR": 0.0}  # 2 groups only have a weight
    state = json.loads(json.dumps(mon.state_dict()))
    other = AlignmentMonitor(every=4, window=2)
    other.load_state_dict(state)
    assert list(other.groups) == list(mon.groups)[-2:] and other.measurements == 2
    with pytest.raises(ValueError, match="groups\\[0\\] is malformed"):
        other.load_state_dict({"groups": [{"V": "x"}]})


def test_train_config_monitor_fields_and_one_line_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from gcpo.cli import main
    from gcpo.train.config import QUICKSTART, load_train_config

    c = load_train_config(QUICKSTART, ["monitor_every=4", "gradients.project_dim=0"])
    assert c.monitor_every == 4 and c.monitor_window == 256 and c.gradients.project_dim == 0
    assert load_train_config(QUICKSTART).monitor_every == 0  # off by default
    for bad, match in (
        ("monitor_every=-1", "monitor_every: got -1, must be >= 0"),
        ("monitor_every=often", "monitor_every: expected an integer, got 'often'"),
        ("monitor_window=0", "monitor_window: got 0, must be >= 1"),
        ("monitor_every=17", "monitor_every: got 17, more than max_steps=16"),
        ("gradients.project_dim=-2", "gradients.project_dim"),
    ):
        rc = main(["train", str(QUICKSTART), bad, "--check", "--output", str(tmp_path / "r")])
        err = capsys.readouterr().err.strip()
        assert rc == 2 and len(err.splitlines()) == 1 and match in err, err
    rc = main(["train", str(QUICKSTART), "monitor_every=4", "--check", "--output", str(tmp_path / "r")])
    out = capsys.readouterr().out
    assert rc == 0 and "every 4 steps (4 of 16), window 256 groups" in out, out


def test_summary_prints_a_line_per_signal(capsys: pytest.CaptureFixture[str]) -> None:
    from gcpo.cli.train import alignment_lines

    lines = alignment_lines(
        {"every": 4, "window": 256, "groups": 40, "measured_steps": 4,
         "rho": {"cd": {"V": 0.3, "NSR": 0.12}, "weight": {"V": -0.2, "NSR": -0.1}}}
    )  # fmt: skip
    assert "    cd tracks NSR: rho = +0.12, V: rho = +0.30, n = 40 groups" in lines
    assert "    weight vs NSR: rho = -0.10, V: rho = -0.20, n = 40 groups" in lines
    assert alignment_lines(None) == []


def test_analyze_reports_the_oracle_column_equal_to_its_grad_nsr() -> None:
    from gcpo.diagnostics.analyze import AnalyzeConfig, _analyse_group
    from gcpo.diagnostics.columns import make_scorers, signal_plan
    from gcpo.diagnostics.items import Item
    from gcpo.embedders import get_embedder
    from gcpo.gradients import select_parameters
    from gcpo.models import load_policy
    from gcpo.tasks.registry import TaskKind

    even = TaskKind(
        name="even-length-oracle",
        description="test",
        score=lambda c, refs, **_: {"score": float(len(c) % 2 == 0)},
        answer_key=lambda c: str(len(c) % 2),
    )
    model, tok = load_policy("tiny-random")
    params = [p for _, p in select_parameters(model, "last-block")]
    columns, preset_column = signal_plan(["gcpo", "oracle"])
    assert preset_column["oracle"] == "nsr"
    scorers = make_scorers(columns, get_embedder("hashing"))
    for seed in range(6):
        item = Item("p0", [{"role": "user", "content": "What is 2 + 2?"}], ["4"], even)
        cfg = AnalyzeConfig(model="tiny-random", task="arithmetic", group_size=6,
                            max_new_tokens=8, temperature=1.0, seed=seed)  # fmt: skip
        row = _analyse_group(item, model, tok, params, None, scorers, cfg)
        if row["reward_dispersion"] > 0:
            break
    assert row["reward_dispersion"] > 0 and row["grad_nsr"] > 0
    assert row["nsr"] == pytest.approx(row["grad_nsr"], rel=1e-6)


def test_gcpo_train_with_the_monitor_writes_the_summary_lines(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from gcpo.cli import main

    run = tmp_path / "run"
    tiny = ["model=tiny-random", "embedder=hashing", "num_train_prompts=16", "num_eval_prompts=2",
            "per_device_train_batch_size=4", "num_generations=2", "max_completion_length=4",
            "eval_max_new_tokens=4", "plot=false", "save_final=false"]  # fmt: skip
    rc = main(["train", "--output", str(run), "max_steps=2", "save_steps=1", "monitor_every=1", "preset=oracle",
               *tiny])  # fmt: skip
    out = capsys.readouterr().out
    assert rc == 0
    summary = json.loads((run / "summary.json").read_text())
    alignment = summary["alignment"]
    assert alignment["every"] == 1 and alignment["measured_steps"] == 2
    assert "live monitor (every 1 steps, 2 measured" in out
    for label in alignment["rho"]:
        assert f"    {label} tracks NSR: rho = " in out or label == "weight"
    saved = json.loads((run / "checkpoint-2" / "gcpo_state.json").read_text())
    assert saved["monitor"]["measurements"] == 2


WORKER = r"""
import json, sys
sys.path.insert(0, {tests!r})
from pathlib import Path
import torch
from test_oracle import length_reward, make_trainer
out = Path(sys.argv[1])
# 3 completions per process, G=2: the middle group straddles the two processes
trainer = make_trainer(out, reward=length_reward, per_device_train_batch_size=3, max_steps=2,
                       trainer_kwargs={{"gradients": {{"project_dim": 0}}, "reference": True,
                                       "monitor_every": 1}})
trainer.train()
rank = trainer.accelerator.process_index
rows = [{{"direct": rec["direct"].tolist(), "gathered": rec["groups"].gradients.tolist(),
          "nsr": rec["result"].signals["grad_nsr"].tolist(),
          "active": rec["result"].active.tolist()}} for rec in trainer.records]
state = trainer.gcpo_monitor.state_dict()
(out / f"rank{{rank}}.json").write_text(json.dumps({{"rows": rows, "monitor": state}}))
"""


@pytest.mark.slow
def test_two_processes_gather_the_per_completion_gradients(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
           "--master_port", "29533", str(script), str(tmp_path)]  # fmt: skip
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert ranks[0]["monitor"] == ranks[1]["monitor"]  # the same window on every process
    active_seen = 0
    for r0, r1 in zip(ranks[0]["rows"], ranks[1]["rows"], strict=True):
        # every process scored the same gathered [B, G, P] gradients and NSR
        assert r0["gathered"] == r1["gathered"] and r0["nsr"] == r1["nsr"]
        # ... equal to the two local slices, each computed by plain autograd on its process
        direct = torch.tensor(r0["direct"] + r1["direct"])
        gathered = torch.tensor(r0["gathered"])
        torch.testing.assert_close(gathered.view(direct.shape), direct, rtol=1e-4, atol=1e-7)
        for b, on in enumerate(r0["active"]):
            if on:
                _, nsr = _reference_nsr(gathered[b].double().numpy())
                assert r0["nsr"][b] == pytest.approx(nsr, rel=1e-3)
                active_seen += 1
    assert active_seen >= 1
