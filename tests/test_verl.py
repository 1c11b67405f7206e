"""gcpo.verl: the "gcpo" advantage estimator for verl.

verl is not a dependency of gcpo. The registration test uses a faked minimal
``verl.trainer.ppo.core_algos`` (the same ``register_adv_est`` contract as verl 0.9.1); the
comparison with verl's own ``compute_grpo_outcome_advantage`` runs only where verl is importable.
"""

from __future__ import annotations

import sys
import types

import numpy as np
import pytest
import torch

import gcpo.verl as gv


def _batch(seed: int = 0, groups: int = 5, g: int = 4, length: int = 3):
    gen = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 2, (groups * g,), generator=gen).float()
    scores[:g] = 1.0  # a zero-std group
    uids = np.array([f"u{i}" for i in range(groups) for _ in range(g)], dtype=object)
    perm = torch.randperm(
        groups * g, generator=gen
    )  # verl batches need not be grouped contiguously
    scores, uids = scores[perm], uids[perm.numpy()]
    tlr = torch.zeros(groups * g, length)
    tlr[:, -1] = scores
    mask = torch.ones(groups * g, length)
    mask[0, 1:] = 0.0
    return tlr, mask, uids, scores


def _fake_verl(monkeypatch: pytest.MonkeyPatch) -> dict:
    registry: dict = {}

    def register_adv_est(name):
        def deco(fn):
            if name in registry and registry[name] is not fn:
                raise ValueError(f"Adv estimator {name} has already been registered")
            registry[name] = fn
            return fn

        return deco

    mods = {}
    for name in ("verl", "verl.trainer", "verl.trainer.ppo", "verl.trainer.ppo.core_algos"):
        mods[name] = types.ModuleType(name)
        monkeypatch.setitem(sys.modules, name, mods[name])
    mods["verl.trainer.ppo.core_algos"].register_adv_est = register_adv_est
    mods["verl.trainer.ppo.core_algos"].ADV_ESTIMATOR_REGISTRY = registry
    return registry


def test_register_with_a_faked_verl_registry(monkeypatch: pytest.MonkeyPatch) -> None:
    registry = _fake_verl(monkeypatch)
    gv.register()
    gv.register()  # idempotent
    assert registry["gcpo"] is gv.compute_gcpo_outcome_advantage


def test_register_without_verl_says_so(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("verl", "verl.trainer", "verl.trainer.ppo", "verl.trainer.ppo.core_algos"):
        monkeypatch.setitem(sys.modules, name, None)  # makes the import raise ImportError
    with pytest.raises(ImportError, match="verl is not installed"):
        gv.register()


def test_grpo_convention_matches_a_per_group_loop() -> None:
    tlr, mask, uids, scores = _batch()
    adv = gv.verl_grpo_advantages(scores, uids)
    for uid in set(uids):
        sel = torch.from_numpy(uids == uid)
        s = scores[sel]
        assert torch.allclose(adv[sel], (s - s.mean()) / (s.std() + 1e-6), atol=1e-6)
    # a lone response keeps its raw score (verl: mean 0, std 1)
    lone = gv.verl_grpo_advantages(torch.tensor([0.7, 1.0, 0.0]), np.array(["a", "b", "b"]))
    assert lone[0].item() == pytest.approx(0.7 / (1 + 1e-6))


def test_verl_grpo_advantages_equal_verl_itself() -> None:
    core_algos = pytest.importorskip("verl.trainer.ppo.core_algos")
    tlr, mask, uids, scores = _batch(seed=3)
    for norm in (True, False):
        ref, _ = core_algos.compute_grpo_outcome_advantage(
            tlr.clone(), mask, uids, norm_adv_by_std_in_grpo=norm
        )
        ours, _ = gv.compute_gcpo_outcome_advantage(
            tlr, mask, uids, {"gcpo": {"preset": "grpo"}, "norm_adv_by_std_in_grpo": norm}
        )
        assert torch.allclose(ours, ref, atol=1e-6)


def test_grpo_preset_is_plain_grpo_and_mask_applies() -> None:
    tlr, mask, uids, scores = _batch()
    adv, ret = gv.compute_gcpo_outcome_advantage(tlr, mask, uids, {"gcpo": {"preset": "grpo"}})
    assert torch.equal(adv, ret)
    assert torch.allclose(adv, gv.verl_grpo_advantages(scores, uids).unsqueeze(-1) * mask)
    assert bool((adv[0, 1:] == 0).all())


def test_uncertainty_lowers_the_weight_of_its_group() -> None:
    tlr, mask, uids, scores = _batch(seed=1, groups=6)
    config = {
        "gcpo": {
            "preset": "gcpo",
            "normalization": "bound",
            "calibration": "none",
            "renormalize": False,
            "w_min": 0.0,
        }
    }
    per_group = {f"u{i}": 0.15 * i for i in range(6)}
    u = np.array([per_group[x] for x in uids])
    adv, _ = gv.compute_gcpo_outcome_advantage(tlr, mask, uids, config, uncertainty=u)
    plain = gv.verl_grpo_advantages(scores, uids).unsqueeze(-1) * mask
    expected_w = torch.tensor([1 - per_group[x] for x in uids]).unsqueeze(-1)
    assert torch.allclose(adv, plain * expected_w, atol=1e-6)
    # same through non_tensor_batch under the configured key
    adv2, _ = gv.compute_gcpo_outcome_advantage(
        tlr, mask, uids, config, non_tensor_batch={"gcpo_uncertainty": u}
    )
    assert torch.equal(adv, adv2)


def test_reward_dispersion_signal_needs_no_extra_data() -> None:
    tlr, mask, uids, _ = _batch(seed=2)
    config = {"gcpo": {"signal": "reward_dispersion", "normalization": "bound"}}
    adv, _ = gv.compute_gcpo_outcome_advantage(tlr, mask, uids, config)
    assert bool(torch.isfinite(adv).all())


def test_missing_or_inconsistent_uncertainty_raises() -> None:
    tlr, mask, uids, _ = _batch()
    with pytest.raises(ValueError, match="uncertainty: signal 'cosine_dispersion' needs"):
        gv.compute_gcpo_outcome_advantage(tlr, mask, uids, None)
    with pytest.raises(ValueError, match="uncertainty: values differ within a group"):
        gv.compute_gcpo_outcome_advantage(
            tlr, mask, uids, None, uncertainty=np.arange(len(uids), dtype=float)
        )
    with pytest.raises(ValueError, match="config.gcpo.alpha: got -1"):
        gv.compute_gcpo_outcome_advantage(tlr, mask, uids, {"gcpo": {"alpha": -1}})
    with pytest.raises(ValueError, match="index: the gcpo estimator needs the uid"):
        gv.compute_gcpo_outcome_advantage(tlr, mask)


def test_rank_state_round_trip() -> None:
    tlr, mask, uids, _ = _batch(seed=4)
    u = np.array([float(int(x[1:])) for x in uids])
    gv.RANK_STATE.clear()
    gv.compute_gcpo_outcome_advantage(tlr, mask, uids, None, uncertainty=u)
    saved = gv.rank_state_dict()
    a, _ = gv.compute_gcpo_outcome_advantage(tlr, mask, uids, None, uncertainty=u * 0.5)
    gv.load_rank_state_dict(saved)
    b, _ = gv.compute_gcpo_outcome_advantage(tlr, mask, uids, None, uncertainty=u * 0.5)
    assert torch.equal(a, b)
    gv.RANK_STATE.clear()
