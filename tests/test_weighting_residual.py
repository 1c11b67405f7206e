"""Residual calibration, the automatic reward scale and the strength -> spread mapping."""

from __future__ import annotations

import math
import warnings

import pytest
import torch

from gcpo.presets import preset
from gcpo.scoring import Groups, GroupScorer
from gcpo.signals import reward_dispersion
from gcpo.weighting import (
    WeightingConfig,
    WeightingState,
    group_weights,
    group_weights_detailed,
    initial_state,
    residual_calibrate,
    spread_table,
)


def _binary_batch(gen: torch.Generator, b: int, g: int) -> torch.Tensor:
    p = torch.rand(b, 1, generator=gen)
    return (torch.rand(b, g, generator=gen) < p).to(torch.float64)


def _steps(config: WeightingConfig, g: int, steps: int, b: int = 8, seed: int = 0, affine=(1.0, 0.0)):
    """Per-step weights of a run of binary-reward batches (rewards mapped by ``a*r + c``), with a
    signal that depends on the pass rate *and* on noise, as real disagreement does."""
    gen = torch.Generator().manual_seed(seed)
    state = initial_state(config)
    a, c = affine
    out = []
    for _ in range(steps):
        r = _binary_batch(gen, b, g)
        p = r.mean(dim=1)
        u = 0.5 * (p * (1 - p)) + 0.1 * torch.rand(b, generator=gen, dtype=torch.float64)
        rr = a * r + c
        res = group_weights_detailed(u, reward_dispersion(rr), config, state, rewards=rr)
        out.append(res)
    return out


# ------------------------------------------------------------------------ residual invariants


def test_residual_calibration_is_uniform_and_ignores_what_rd_predicts() -> None:
    state = WeightingState(window=64)
    rd = torch.tensor([0.1, 0.1, 0.2, 0.2, 0.3, 0.3, 0.4, 0.4], dtype=torch.float64)
    # a signal that is a function of RD alone carries nothing beyond the pass rate: U~ ties
    un, ut = residual_calibrate(3.0 * rd**2, rd, state)
    assert torch.allclose(ut, torch.full_like(ut, 0.5))
    # the same RD with a noise ordering on top: U~ follows the noise, uniform over the batch
    noise = torch.tensor([0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0], dtype=torch.float64)
    un, ut = residual_calibrate(rd + 0.01 * noise, rd, state)
    assert (ut[noise == 1] > ut[noise == 0]).all()
    assert sorted(ut.tolist()) == pytest.approx(sorted([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75]), abs=0.2)
    # inactive groups are out of the fit and get U~ = 0
    rd0 = rd.clone()
    rd0[0] = 0.0
    _, ut0 = residual_calibrate(rd + 0.01 * noise, rd0, state)
    assert ut0[0] == 0.0


def test_residual_weights_do_not_change_under_affine_reward_maps() -> None:
    config = preset("gcpo")
    base = _steps(config, 8, 5)
    for affine in ((2.0, 0.0), (2.0, -1.0), (10.0, 0.0), (0.5, 3.0)):
        other = _steps(config, 8, 5, affine=affine)
        for x, y in zip(base, other, strict=True):
            assert torch.allclose(x.weights, y.weights, atol=1e-9), affine
            assert y.rd_clipped == 0
        assert other[-1].rd_scale == pytest.approx(0.5 * affine[0])


def test_product_with_auto_rd_max_is_scale_free_and_set_rd_max_clips_loudly() -> None:
    auto = WeightingConfig(calibration="product", modulation="linear", rd_max=None)
    base = _steps(auto, 8, 3)
    scaled = _steps(auto, 8, 3, affine=(2.0, -1.0))
    for x, y in zip(base, scaled, strict=True):
        assert torch.allclose(x.weights, y.weights, atol=1e-9)
    fixed = WeightingConfig(calibration="product", modulation="linear", rd_max=0.5)
    clipped = _steps(fixed, 8, 3, affine=(2.0, -1.0))
    assert sum(r.rd_clipped for r in clipped) > 0


def test_scorer_warns_once_and_counts_clipped_reward_dispersion(caplog) -> None:
    comps = [["a b", "c d", "e f", "g h"]] * 3
    rewards = [[-1.0, 1.0, 1.0, -1.0], [1.0, 1.0, -1.0, -1.0], [1.0, 1.0, 1.0, -1.0]]
    fixed = WeightingConfig(calibration="product", modulation="linear", rd_max=0.5)
    scorer = GroupScorer(fixed, embedder="hashing")
    state = scorer.initial_state()
    with caplog.at_level("WARNING", logger="gcpo"):
        first = scorer.score(Groups.from_lists(["p", "q", "r"], comps, rewards), state)
        second = scorer.score(Groups.from_lists(["p", "q", "r"], comps, rewards), state)
    assert first.rd_clipped == second.rd_clipped == 3
    assert sum("above rd_max=0.5" in r.getMessage() for r in caplog.records) == 1
    # auto rd_max: nothing clipped, nothing said
    auto = GroupScorer(preset("gcpo"), embedder="hashing")
    res = auto.score(Groups.from_lists(["p", "q", "r"], comps, rewards), auto.initial_state())
    assert res.rd_clipped == 0 and res.notes == []


@pytest.mark.parametrize("scale", [(1.0, 0.0), (2.0, 0.0), (2.0, -1.0), (10.0, 0.0)])
def test_gcpo_scorer_weights_identical_up_to_reward_scale(scale) -> None:
    comps = [
        ["1 + 1 = 2", "It is 3", "two", "2"],
        ["7", "the answer is 7", "8", "seven"],
        ["10", "10", "11", "I do not know"],
        ["5", "5", "5", "5"],
    ]
    rewards = [[1, 0, 1, 1], [1, 1, 0, 1], [1, 1, 0, 0], [1, 1, 1, 1]]
    a, c = scale
    scorer = GroupScorer(preset("gcpo"), embedder="hashing")
    ref = GroupScorer(preset("gcpo"), embedder="hashing").score(
        Groups.from_lists(["p"] * 4, comps, rewards)
    )
    res = scorer.score(
        Groups.from_lists(["p"] * 4, comps, [[a * r + c for r in row] for row in rewards])
    )
    assert torch.allclose(res.weights, ref.weights, atol=1e-6)
    assert res.weights[3] == 1.0  # constant group: untouched
    assert res.weights[:3].double().mean().item() == pytest.approx(1.0, abs=1e-6)
    assert len(set(res.weights[:3].tolist())) == 3  # the weighting acts: three different weights


# ------------------------------------------------------------------------------ strength


@pytest.mark.parametrize("g", [4, 8, 16])
def test_alpha_sets_the_spread_monotonically_from_grpo(g: int) -> None:
    spreads = []
    for alpha in (0.0, 0.25, 0.5, 1.0, 2.0, 4.0):
        config = WeightingConfig(**{**preset("gcpo").__dict__, "alpha": alpha})
        results = _steps(config, g, 12, b=8, seed=1)
        per_step = [r.weights[r.active].double().std(unbiased=False).item() for r in results]
        spreads.append(sum(per_step) / len(per_step))
        if alpha == 0.0:
            assert all(torch.equal(r.weights, torch.ones_like(r.weights)) for r in results)
    assert spreads[0] == 0.0
    assert all(b > a for a, b in zip(spreads, spreads[1:], strict=False)), spreads
    assert spreads[-1] > 0.5  # a wide spread is reachable


def test_alpha_bounds_the_weight_ratio() -> None:
    for alpha in (0.5, 1.0, 3.0):
        config = WeightingConfig(**{**preset("gcpo").__dict__, "alpha": alpha})
        for r in _steps(config, 8, 6, seed=2):
            w = r.weights[r.active].double()
            assert (w.max() / w.min()).item() <= math.exp(alpha) * (1 + 1e-9)


def test_spread_table_matches_the_help_text_and_a_fresh_simulation() -> None:
    table = spread_table()
    help_text = WeightingConfig.__dataclass_fields__["alpha"].metadata["help"]
    for (_alpha, _n), spread in table.items():
        assert f"{spread:.2f}" in help_text
    fresh = spread_table(draws=4000, seed=123)
    for key, spread in table.items():
        assert fresh[key] == pytest.approx(spread, abs=0.015), key


def test_state_round_trip_keeps_rd_and_reward_range() -> None:
    config = preset("gcpo")
    st = initial_state(config)
    assert isinstance(st, WeightingState)
    gen = torch.Generator().manual_seed(3)
    for _ in range(3):
        r = _binary_batch(gen, 6, 8)
        group_weights(torch.rand(6, generator=gen), reward_dispersion(r), config, st, rewards=r)
    restored = WeightingState(window=config.rank_window)
    restored.load_state_dict(st.state_dict())
    assert restored.state_dict() == st.state_dict()
    assert restored.reward_range == (0.0, 1.0)
    # an old checkpoint (values only) still loads; its RDs are unknown and sit out of the fit
    old = WeightingState(window=config.rank_window)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        old.load_state_dict({"window": 1024, "values": [0.1, 0.2]})
    assert len(old.rds) == 2 and all(math.isnan(v) for v in old.rds)
