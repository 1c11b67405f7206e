"""gcpo.weighting: presets, config validation, rank state, calibration, modulation, renormalisation."""

from __future__ import annotations

import math
import pickle

import pytest
import torch
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from gcpo import config as cfg
from gcpo import fields
from gcpo.presets import PRESET_DIR, available_presets, preset
from gcpo.weighting import (
    WeightingConfig,
    WeightingState,
    group_weights,
    group_weights_detailed,
    initial_state,
)

# ------------------------------------------------------------------------------ presets


def test_presets_exist_and_match_the_spec() -> None:
    assert {"grpo", "seed-grpo", "seed-grpo-strong", "gcpo", "gcpo-bot"} <= set(available_presets())
    seed = preset("seed-grpo")
    assert (seed.signal, seed.se_clusterer, seed.se_likelihood_weighting) == (
        "semantic_entropy",
        "answer",
        True,
    )
    assert (seed.normalization, seed.calibration, seed.modulation) == ("bound", "none", "inverse")
    assert seed.alpha == pytest.approx(0.0417)
    assert not seed.renormalize
    strong = preset("seed-grpo-strong")
    assert strong.alpha == 1.0
    assert fields.to_dict(strong) | {"alpha": 0.0417} == fields.to_dict(seed)
    g = preset("gcpo")
    assert (g.signal, g.calibration, g.normalization, g.modulation, g.renormalize) == (
        "cosine_dispersion",
        "residual",
        "rank",
        "exp",
        True,
    )
    assert g.rd_max is None  # auto: half the reward range seen
    bot = preset("gcpo-bot")
    assert bot.signal == "barycentric_transport"
    assert fields.to_dict(bot) | {"signal": "cosine_dispersion"} == fields.to_dict(g)
    assert preset("grpo").signal == "none"


@pytest.mark.parametrize("name", available_presets())
def test_every_yaml_preset_round_trips_through_from_dict(name: str) -> None:
    raw = yaml.safe_load((PRESET_DIR / f"{name}.yaml").read_text(encoding="utf-8"))
    loaded = preset(name)
    assert fields.from_dict(WeightingConfig, raw) == loaded
    assert fields.from_dict(WeightingConfig, fields.to_dict(loaded)) == loaded
    assert fields.from_dict(WeightingConfig, yaml.safe_load(cfg.dump_yaml(loaded))) == loaded


def test_unknown_preset_lists_the_available_ones() -> None:
    with pytest.raises(ValueError, match=r"preset: got 'gcpo2', allowed: .*gcpo-bot.*seed-grpo"):
        preset("gcpo2")


def test_grpo_preset_gives_weight_one() -> None:
    u = torch.rand(7)
    w = group_weights(u, torch.rand(7), preset("grpo"))
    assert torch.equal(w, torch.ones(7))


# -------------------------------------------------------------------------- config checks


@pytest.mark.parametrize(
    "kwargs,match",
    [
        ({"alpha": -1.0}, "alpha: got -1.0, must be >= 0"),
        ({"modulation": "cubic"}, "modulation: got 'cubic', allowed: linear, exp, focal, inverse"),
        ({"signal": "bogus"}, "signal: got 'bogus', allowed: none, barycentric_transport"),
        ({"signal": "eigenscore", "normalization": "bound"}, "normalization: got 'bound'"),
        ({"w_min": 1.5}, "w_min: got 1.5, must be <= 1"),
        ({"rank_window": 0}, "rank_window: got 0, must be >= 1"),
        ({"renormalize": "maybe"}, "renormalize: expected true/false"),
    ],
)
def test_config_errors_name_the_field(kwargs: dict, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        WeightingConfig(**kwargs)


def test_help_lines_cover_every_field() -> None:
    lines = fields.help_lines(WeightingConfig)
    assert len(lines) == len(WeightingConfig.__dataclass_fields__)
    assert all(": " in line and not line.endswith(": ") for line in lines)


# ------------------------------------------------------------------------------ rank state


def test_rank_mid_rank_definition() -> None:
    st = WeightingState(window=10)
    # lone value
    assert st.rank(torch.tensor([3.0])).tolist() == [0.5]
    # pool = [3] + [1, 3, 5, 3]: others of 1 -> 0/4; of 3 -> (1 + 0.5*2)/4; of 5 -> 4/4
    r = st.rank(torch.tensor([1.0, 3.0, 5.0, 3.0]))
    assert r.tolist() == [0.0, 0.5, 1.0, 0.5]
    assert st.values == [3.0, 1.0, 3.0, 5.0, 3.0]
    # constant signal -> all 0.5
    assert WeightingState().rank(torch.full((6,), 2.0)).tolist() == [0.5] * 6


def test_rank_window_keeps_the_most_recent_values() -> None:
    st = WeightingState(window=3)
    st.rank(torch.tensor([10.0, 20.0]))
    st.rank(torch.tensor([30.0, 40.0]))
    assert st.values == [20.0, 30.0, 40.0]
    # 25 vs pool [20, 30, 40, 25]: others < 25 -> 1 of 3
    assert st.rank(torch.tensor([25.0]), update=False).item() == pytest.approx(1 / 3)
    assert st.values == [20.0, 30.0, 40.0]


def test_rank_state_round_trip_gives_identical_subsequent_weights() -> None:
    config = preset("gcpo")
    gen = torch.Generator().manual_seed(0)
    st = initial_state(config)
    assert isinstance(st, WeightingState) and st.window == config.rank_window
    for _ in range(3):
        group_weights(
            torch.rand(16, generator=gen), torch.rand(16, generator=gen) * 0.5, config, st
        )
    saved = pickle.loads(pickle.dumps(st.state_dict()))
    restored = WeightingState(window=config.rank_window)
    restored.load_state_dict(saved)
    for _ in range(3):
        u, rd = torch.rand(16, generator=gen), torch.rand(16, generator=gen) * 0.5
        assert torch.equal(group_weights(u, rd, config, st), group_weights(u, rd, config, restored))
    # a fresh state gives different weights (the test can fail)
    u, rd = torch.rand(16, generator=gen), torch.rand(16, generator=gen) * 0.5
    fresh = WeightingState(window=config.rank_window)
    assert not torch.equal(group_weights(u, rd, config, st), group_weights(u, rd, config, fresh))


def test_rank_state_bad_input() -> None:
    with pytest.raises(ValueError, match="window: expected an int >= 1"):
        WeightingState(window=0)
    with pytest.raises(ValueError, match=r"state\['values'\]\[1\]: expected a finite number"):
        WeightingState().load_state_dict({"values": [1.0, float("nan")]})
    with pytest.raises(ValueError, match=r"state: weighting 'cosine_dispersion' \(rank, residual\) needs a WeightingState"):
        group_weights(torch.rand(3), torch.rand(3), preset("gcpo"), None)
    with pytest.raises(ValueError, match=r"state\['rds'\]: expected 2 values"):
        WeightingState().load_state_dict({"values": [1.0, 2.0], "rds": [0.1]})
    with pytest.raises(ValueError, match="reward_low/reward_high must be both null or low <= high"):
        WeightingState().load_state_dict({"values": [], "reward_low": 1.0, "reward_high": 0.0})


# ----------------------------------------------------------------- normalise / calibrate


def test_bound_normalisation_of_semantic_entropy_uses_log_g() -> None:
    config = WeightingConfig(
        signal="semantic_entropy",
        normalization="bound",
        calibration="none",
        modulation="linear",
        alpha=1.0,
        w_min=0.0,
        renormalize=False,
    )
    se = torch.tensor([0.0, math.log(2), math.log(4)])
    res = group_weights_detailed(se, None, config, group_size=4)
    assert torch.allclose(res.normalized, torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(res.weights, torch.tensor([1.0, 0.5, 0.0]))
    # per-group sizes; log 1 = 0 -> normalised 0, never NaN
    res = group_weights_detailed(se, None, config, group_size=torch.tensor([1, 2, 16]))
    assert torch.allclose(res.normalized, torch.tensor([0.0, 1.0, 0.5]))
    with pytest.raises(ValueError, match="group_size: bound normalisation of semantic_entropy"):
        group_weights(se, None, config)


def test_product_calibration_separates_equal_disagreement_by_reward_dispersion() -> None:
    config = WeightingConfig(
        signal="cosine_dispersion",
        normalization="bound",
        calibration="product",
        rd_max=0.5,
        modulation="linear",
        renormalize=False,
    )
    u = torch.tensor([0.6, 0.6, 0.6])
    rd = torch.tensor([0.5, 0.25, 0.1])
    res = group_weights_detailed(u, rd, config)
    assert torch.allclose(res.calibrated, torch.tensor([0.0, 0.3, 0.48]))
    assert res.weights[0] > res.weights[1] > res.weights[2]
    # without calibration they are equal
    flat = group_weights(
        u, rd, WeightingConfig(normalization="bound", calibration="none", renormalize=False)
    )
    assert not torch.allclose(res.weights, res.weights[0].expand(3))
    assert torch.allclose(flat, flat[0].expand(3))
    with pytest.raises(ValueError, match="reward_dispersion: calibration='product' needs"):
        group_weights(u, None, config)


def test_snr_calibration() -> None:
    config = WeightingConfig(
        normalization="bound", calibration="snr", snr_lambda=2.0, rd_max=0.5, renormalize=False
    )
    u = torch.tensor([0.5, 0.5, 0.0, 0.0])
    rd = torch.tensor([0.25, 0.0, 0.25, 0.0])
    w = group_weights(u, rd, config)
    # RDn = 0.5, lambda*U = 1 -> 1/3; U = 0 -> 1; RD = 0 (no learning signal) -> 1, untouched
    assert torch.allclose(w, torch.tensor([1 / 3, 1.0, 1.0, 1.0]))


@pytest.mark.parametrize(
    "modulation,expected",
    [
        ("linear", [1.0, 0.5, 0.2]),  # w_min 0.2 clips 1 - 1.6
        ("exp", [1.0, math.exp(-0.5), math.exp(-1.6)]),
        ("focal", [1.0, 0.25, 0.0]),
        ("inverse", [1.0, 1 / 1.5, 1 / 2.6]),
    ],
)
def test_modulation_forms(modulation: str, expected: list[float]) -> None:
    config = WeightingConfig(
        normalization="bound",
        calibration="none",
        modulation=modulation,
        alpha=2.0,
        w_min=0.2,
        focal_gamma=2.0,
        renormalize=False,
    )
    w = group_weights(torch.tensor([0.0, 0.25, 0.8], dtype=torch.float64), None, config)
    assert torch.allclose(w, torch.tensor(expected, dtype=torch.float64))


def test_renormalisation_mean_one_over_groups_with_reward_dispersion() -> None:
    config = WeightingConfig(
        normalization="bound", calibration="product", rd_max=0.5, modulation="linear", w_min=0.0
    )
    u = torch.tensor([0.1, 0.9, 0.5, 0.7, 0.3])
    rd = torch.tensor([0.1, 0.2, 0.0, 0.4, 0.0])
    w = group_weights(u, rd, config)
    assert w[rd > 0].mean().item() == pytest.approx(1.0)
    raw = group_weights(u, rd, WeightingConfig(**{**fields.to_dict(config), "renormalize": False}))
    active = rd > 0
    ratio = (w / raw)[active]
    assert torch.allclose(ratio, ratio[0].expand(3))  # one common factor on the active groups
    assert w[~active].tolist() == [1.0, 1.0]  # no learning signal: left untouched, weight 1
    assert raw[~active].tolist() == [1.0, 1.0]
    # no group with RD > 0: left as is
    zero_rd = torch.zeros(5)
    kept = group_weights(u, zero_rd, config)
    assert torch.equal(
        kept,
        group_weights(u, zero_rd, WeightingConfig(**{**fields.to_dict(config), "renormalize": False})),
    )


def test_weights_are_finite_for_degenerate_batches() -> None:
    from gcpo.signals import reward_dispersion

    for name in available_presets():
        config = preset(name)
        st = initial_state(config)
        for u, rewards in (
            (torch.zeros(4), torch.zeros(4, 8)),
            (torch.ones(1), torch.ones(1, 8)),
            (torch.zeros(0), torch.zeros(0, 8)),
            (torch.tensor([0.0, 5.0]), torch.tensor([[1.0, 0.0] * 4, [1.0] * 8])),
        ):
            rd = reward_dispersion(rewards)
            w = group_weights(u, rd, config, st, group_size=8, rewards=rewards)
            assert w.shape == u.shape, name
            assert bool(torch.isfinite(w).all()) and bool((w >= 0).all()), name
            assert bool((w[rd == 0] == 1).all()), name  # no learning signal: untouched


def test_bad_input_names_the_argument() -> None:
    config = WeightingConfig(normalization="bound", calibration="product", rd_max=0.5)
    with pytest.raises(ValueError, match="uncertainty: contains a non-finite value"):
        group_weights(torch.tensor([0.1, float("nan")]), torch.zeros(2), config)
    with pytest.raises(ValueError, match=r"reward_dispersion: expected shape \(2,\)"):
        group_weights(torch.zeros(2), torch.zeros(3), config)
    with pytest.raises(ValueError, match="reward_dispersion: must be >= 0"):
        group_weights(torch.zeros(2), -torch.ones(2), config)
    with pytest.raises(ValueError, match="uncertainty: expected 1 dims"):
        group_weights(torch.zeros(2, 2), torch.zeros(2), config)
    with pytest.raises(ValueError, match="config: expected a WeightingConfig"):
        group_weights(torch.zeros(2), torch.zeros(2), {"signal": "none"})
    with pytest.raises(ValueError, match=r"bound: expected a number or shape \(2,\)"):
        group_weights(torch.zeros(2), torch.zeros(2), config, bound=torch.ones(3))


# ------------------------------------------------------------------------- properties

_settings = settings(max_examples=60, deadline=None, derandomize=True)


@_settings
@given(
    modulation=st.sampled_from(["linear", "exp", "focal", "inverse"]),
    calibration=st.sampled_from(["none", "product", "snr"]),
    alpha=st.floats(0.0, 5.0),
    u=st.lists(st.floats(0.0, 3.0), min_size=2, max_size=12),
    rd_level=st.floats(0.0, 0.6),
)
def test_weight_never_increases_with_uncertainty(
    modulation: str, calibration: str, alpha: float, u: list[float], rd_level: float
) -> None:
    config = WeightingConfig(
        signal="semantic_entropy",
        normalization="bound",
        calibration=calibration,
        modulation=modulation,
        alpha=alpha,
        rd_max=0.5,
        renormalize=False,
    )
    ut = torch.tensor(sorted(u), dtype=torch.float64)
    rd = torch.full_like(ut, rd_level)
    w = group_weights(ut, rd, config, group_size=8)
    assert bool(torch.isfinite(w).all()) and bool((w >= 0).all())
    assert bool((w[1:] <= w[:-1] + 1e-12).all())


@_settings
@given(
    calibration=st.sampled_from(["product", "snr"]),
    u=st.floats(0.0, 1.0),
    rds=st.lists(st.floats(0.0, 0.6), min_size=2, max_size=12),
)
def test_weight_never_decreases_with_reward_dispersion(
    calibration: str, u: float, rds: list[float]
) -> None:
    config = WeightingConfig(
        normalization="bound", calibration=calibration, rd_max=0.5, renormalize=False
    )
    rd = torch.tensor(sorted(rds), dtype=torch.float64)[1:]  # RD = 0: weight 1 by definition
    rd = rd[rd > 0]
    w = group_weights(torch.full_like(rd, u), rd, config)
    assert bool((w[1:] >= w[:-1] - 1e-12).all())


@pytest.mark.parametrize("name", ["gcpo", "seed-grpo", "gcpo-bot"])
def test_permuting_groups_permutes_weights(name: str) -> None:
    config = preset(name)
    gen = torch.Generator().manual_seed(5)
    u = torch.rand(10, generator=gen, dtype=torch.float64)
    rd = torch.rand(10, generator=gen, dtype=torch.float64) * 0.5
    rd[3] = 0.0
    perm = torch.randperm(10, generator=gen)
    w = group_weights(u, rd, config, initial_state(config), group_size=8)
    wp = group_weights(u[perm], rd[perm], config, initial_state(config), group_size=8)
    assert torch.allclose(wp, w[perm], atol=1e-12)


def test_binary_groups_that_move_the_policy_get_mean_weight_one() -> None:
    """8 groups of G = 10 binary rewards, 3 all-correct: the mean weight over the 5 groups whose
    advantages are non-zero is exactly 1 (was 1.051 when constant groups counted as active)."""
    from gcpo.signals import reward_dispersion

    gen = torch.Generator().manual_seed(0)
    rewards = (torch.rand(8, 10, generator=gen) < 0.5).float()
    rewards[:3] = 1.0
    rewards[3:, 0], rewards[3:, 1] = 1.0, 0.0  # every other group is mixed
    rd = reward_dispersion(rewards)
    assert rd[:3].tolist() == [0.0] * 3
    config = WeightingConfig(
        normalization="bound", calibration="product", rd_max=0.5, modulation="linear", alpha=0.9
    )
    u = torch.rand(8, generator=gen)
    w = group_weights(u, rd, config)
    assert w[:3].tolist() == [1.0] * 3
    moving = rewards.std(dim=1) > 0
    assert w[moving].double().mean().item() == pytest.approx(1.0, abs=1e-6)


def test_renormalisation_is_finite_for_extreme_exp_modulation() -> None:
    for alpha in (1.0, 740.0, 1e6):
        config = WeightingConfig(
            normalization="bound", calibration="none", modulation="exp", alpha=alpha
        )
        u = torch.tensor([0.99, 1.0, 0.995, 0.3])
        rd = torch.tensor([0.2, 0.3, 0.1, 0.0])
        res = group_weights_detailed(u, rd, config)
        assert bool(torch.isfinite(res.weights).all()), alpha
        assert res.weights[:3].double().mean().item() == pytest.approx(1.0, abs=1e-6)
        assert not res.fallback
        # the most certain active group gets the most weight; at huge alpha all of it
        assert res.weights[0] == res.weights[:3].max()
    assert res.weights[0].item() == pytest.approx(3.0)


def test_all_zero_active_weights_fall_back_to_one_and_say_so() -> None:
    config = WeightingConfig(
        normalization="bound", calibration="none", modulation="focal", alpha=1.0
    )
    u = torch.tensor([1.0, 1.0, 0.2])
    rd = torch.tensor([0.3, 0.1, 0.0])
    res = group_weights_detailed(u, rd, config)
    assert res.fallback
    assert res.weights[:2].tolist() == [1.0, 1.0]  # the batch still trains, as plain GRPO
    assert bool(torch.isfinite(res.weights).all())
    # without renormalisation nothing is rescaled and nothing falls back
    raw = group_weights_detailed(u, rd, WeightingConfig(**{**fields.to_dict(config), "renormalize": False}))
    assert raw.weights[:2].tolist() == [0.0, 0.0] and not raw.fallback


def test_public_normalize_ranks_by_the_same_rule_as_group_weights() -> None:
    # one rank rule: given the groups' RD, normalize() ranks among the active pool, exactly as
    # group_weights does; without RD, among every group of the pool
    from gcpo.weighting import normalize

    gen = torch.Generator().manual_seed(5)
    config = WeightingConfig(calibration="none", renormalize=False)
    a, b = initial_state(config), initial_state(config)
    for _ in range(3):
        u = torch.rand(6, generator=gen, dtype=torch.float64)
        rd = torch.rand(6, generator=gen, dtype=torch.float64) * (torch.rand(6, generator=gen) > 0.4)
        via_weights = group_weights_detailed(u, rd, config, a).normalized
        assert torch.equal(normalize(u, config, b, reward_dispersion=rd), via_weights)
    assert a.values == b.values and a.rds == b.rds
    plain = initial_state(config)
    u = torch.tensor([0.1, 0.9, 0.5], dtype=torch.float64)
    assert normalize(u, config, plain).tolist() == pytest.approx([0.0, 1.0, 0.5])
