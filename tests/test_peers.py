"""Peer group weightings (gcpo.peers): invariants, degenerate groups, input errors, and an
independent plain-Python re-implementation of each rule from its paper / released code, compared
on random binary and graded batches at G = 4, 8, 16."""

from __future__ import annotations

import ast
import inspect
import itertools
import math
import statistics
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

import gcpo.peers as peers
from gcpo.advantages import grpo_advantages
from gcpo.peers import RULES, dgpo, get_rule, learnability, mgpo, register_rule

PRESET_DIR = Path(peers.__file__).resolve().parent / "configs" / "presets"
NAMES = ("learnability", "mgpo", "dgpo")
EPS = 1e-4  # TRL's advantage eps and MathForge's eps on sum |r - mean|


# ----------------------------------------------------------------------------------------------
# Independent references (plain Python on lists of the valid rewards; no gcpo code)
# ----------------------------------------------------------------------------------------------


def _rows(rewards: np.ndarray, mask: np.ndarray) -> list[list[float]]:
    return [
        [float(x) for x, ok in zip(r, m, strict=True) if ok]
        for r, m in zip(rewards, mask, strict=True)
    ]


def _z(vals: list[float], low: float, high: float) -> list[float]:
    return [(v - low) / (high - low) if high > low else 0.0 for v in vals]


def ref_learnability(rows: list[list[float]], low: float, high: float) -> list[float]:
    # LILO: learnability p(1 - p) = variance of a Bernoulli success; graded: population variance
    out = []
    for vals in rows:
        if len(set(vals)) <= 1:
            out.append(0.0)
        else:
            out.append(statistics.pvariance(_z(vals, low, high)))
    return out


def ref_mgpo(
    rows: list[list[float]], low: float, high: float, lam: float, p0: float
) -> list[float]:
    # VibeThinker sec. 3.4 / TRL PR 5126: w = exp(-lambda * KL(Bern(p) || Bern(p0)))
    out = []
    for vals in rows:
        if not vals:
            out.append(1.0)
            continue
        z = _z(vals, low, high)
        p = math.fsum(z) / len(z)
        d = 0.0
        if p > 0:
            d += p * math.log(p / p0)
        if p < 1:
            d += (1 - p) * math.log((1 - p) / (1 - p0))
        out.append(math.exp(-lam * d))
    return out


def ref_dgpo(
    rows: list[list[float]],
    low: float,
    high: float,
    temp: float = 2.0,
    scale: str = "group",
    dgae: bool = True,
    dqw: bool = True,
) -> list[float]:
    # MathForge release: A = G (r - mean) / (sum |r - mean| + 1e-4) instead of
    # (r - mean) / (std + 1e-4)  =>  factor n (std + 1e-4) / (sum |r - mean| + 1e-4);
    # DQW: |A| * softmax(-mean_acc / T) over the questions with std != 0, 1 elsewhere.
    active = [len(set(v)) > 1 for v in rows]
    every = [x for v in rows for x in v]
    batch_std = statistics.stdev(every) if len(every) >= 2 else 0.0
    w = [1.0] * len(rows)
    for b, vals in enumerate(rows):
        if not active[b] or not dgae or scale == "none":
            continue
        n = len(vals)
        mean = math.fsum(vals) / n
        s = math.fsum(abs(x - mean) for x in vals)
        std = statistics.stdev(vals) if scale == "group" else batch_std
        w[b] = n * (std + EPS) / (s + EPS)
    if dqw and any(active):
        idx = [b for b in range(len(rows)) if active[b]]
        acc = {b: math.fsum(_z(rows[b], low, high)) / len(rows[b]) for b in idx}
        e = {b: math.exp(-acc[b] / temp) for b in idx}
        tot = math.fsum(e.values())
        for b in idx:
            w[b] *= len(idx) * e[b] / tot
    return w


def _batch(
    rng: np.random.Generator, b: int, g: int, kind: str
) -> tuple[np.ndarray, np.ndarray, float, float]:
    if kind == "binary":
        r = rng.integers(0, 2, size=(b, g)).astype(np.float64)
        low, high = 0.0, 1.0
    else:  # graded, on an arbitrary scale, with a few tied levels
        levels = rng.choice([0.0, 0.25, 0.5, 1.0, 0.8], size=(b, g)) + rng.normal(0, 0.05, (b, g))
        r = 3.0 * levels - 1.0
        low, high = float(r.min()) - 0.1, float(r.max()) + 0.2
    r[0] = r[0, 0]  # a constant group
    if b > 2:
        r[1, :] = high if kind == "binary" else r[1]  # all correct (binary)
    m = rng.random((b, g)) > 0.2
    m[-1] = False  # an all-masked group
    m[:, 0] |= rng.random(b) < 0.5
    m[-1] = False
    return r, m, low, high


CASES = list(itertools.product((4, 8, 16), ("binary", "graded"), (0, 1, 2)))


@pytest.mark.parametrize("g,kind,seed", CASES)
def test_learnability_matches_reference(g: int, kind: str, seed: int) -> None:
    r, m, low, high = _batch(np.random.default_rng(seed), 24, g, kind)
    got = learnability(torch.from_numpy(r), torch.from_numpy(m), low=low, high=high)
    assert got.dtype == torch.float64 and got.shape == (24,)
    np.testing.assert_allclose(
        got.numpy(), ref_learnability(_rows(r, m), low, high), rtol=1e-10, atol=1e-15
    )


@pytest.mark.parametrize("g,kind,seed", CASES)
@pytest.mark.parametrize("lam,p0", [(0.5, 0.5), (2.0, 0.3), (0.0, 0.5)])
def test_mgpo_matches_reference(g: int, kind: str, seed: int, lam: float, p0: float) -> None:
    r, m, low, high = _batch(np.random.default_rng(seed), 24, g, kind)
    got = mgpo(
        torch.from_numpy(r), torch.from_numpy(m), low=low, high=high, mgpo_lambda=lam, mgpo_p0=p0
    )
    ref = ref_mgpo(_rows(r, m), low, high, lam, p0)
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize("g,kind,seed", CASES)
@pytest.mark.parametrize(
    "temp,scale,dgae,dqw",
    [
        (2.0, "group", True, True),
        (0.5, "batch", True, True),
        (2.0, "none", True, True),
        (1.0, "group", False, True),
        (2.0, "group", True, False),
    ],
)
def test_dgpo_matches_reference(
    g: int, kind: str, seed: int, temp: float, scale: str, dgae: bool, dqw: bool
) -> None:
    r, m, low, high = _batch(np.random.default_rng(seed), 24, g, kind)
    got = dgpo(
        torch.from_numpy(r),
        torch.from_numpy(m),
        low=low,
        high=high,
        dgpo_temperature=temp,
        dgpo_scale_rewards=scale,
        dgpo_dgae=dgae,
        dgpo_dqw=dqw,
    )
    ref = ref_dgpo(_rows(r, m), low, high, temp, scale, dgae, dqw)
    # rtol 1e-7, not 1e-10: the factor must cancel the std TRL divided by, and TRL's nanstd takes
    # its Bessel correction n / (n - 1) from integer counts, i.e. in float32 (rel. error < 6e-8);
    # the reference uses the exact correction. test_dgae_factor_... checks the exact cancellation.
    np.testing.assert_allclose(got.numpy(), ref, rtol=1e-7)
    if not dgae or scale == "none":
        np.testing.assert_allclose(got.numpy(), ref, rtol=1e-10)


@pytest.mark.parametrize("name", NAMES)
def test_float32_rewards_agree_with_float64(name: str) -> None:
    r, m, low, high = _batch(np.random.default_rng(7), 16, 8, "graded")
    r32 = r.astype(np.float32)
    lo, hi = float(np.float32(low)), float(np.float32(high))
    a = get_rule(name)(torch.from_numpy(r32), torch.from_numpy(m), low=lo, high=hi)
    b = get_rule(name)(
        torch.from_numpy(r32.astype(np.float64)), torch.from_numpy(m), low=lo, high=hi
    )
    assert a.dtype == torch.float64
    np.testing.assert_allclose(a.numpy(), b.numpy(), rtol=1e-12)


# ----------------------------------------------------------------------------------------------
# DGAE reproduces the released advantages exactly on top of gcpo's (TRL's) advantages
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
@pytest.mark.parametrize("g", [4, 8, 16])
def test_dgae_factor_turns_trl_advantages_into_mathforge_advantages(scale: str, g: int) -> None:
    r, m, low, high = _batch(np.random.default_rng(g), 32, g, "graded")
    w = dgpo(
        torch.from_numpy(r),
        torch.from_numpy(m),
        low=low,
        high=high,
        dgpo_scale_rewards=scale,
        dgpo_dqw=False,
    )
    adv = grpo_advantages(torch.from_numpy(r), scale=scale, mask=torch.from_numpy(m)).numpy()
    ours = adv * w.numpy()[:, None]
    expected = np.zeros_like(r)
    for b in range(r.shape[0]):
        vals = r[b][m[b]]
        if len(set(vals.tolist())) <= 1:
            continue  # inactive: TRL's advantages are 0 whatever the weight
        dev = vals - vals.mean()
        if scale == "none":  # the release applies DGAE only when scaling rewards
            expected[b, m[b]] = dev
        else:
            expected[b, m[b]] = len(vals) * dev / (np.abs(dev).sum() + EPS)
    np.testing.assert_allclose(ours, expected, rtol=1e-12, atol=1e-14)


def test_dgae_balances_the_update_magnitude_across_difficulties() -> None:
    # MathForge's point: sum_i |A_i| is G for every active group, whatever its accuracy
    # (GRPO's std scaling gives more to p = 0.5 than to hard or easy questions).
    g = 16
    r = np.array([[1.0] * k + [0.0] * (g - k) for k in range(1, g)])
    t = torch.from_numpy(r)
    adv = grpo_advantages(t, scale="group")
    w = dgpo(t, None, low=0.0, high=1.0, dgpo_dqw=False)
    total = (adv * w.unsqueeze(1)).abs().sum(dim=1)
    np.testing.assert_allclose(total.numpy(), g, rtol=1e-3)
    grpo_total = adv.abs().sum(dim=1).numpy()
    assert grpo_total.max() / grpo_total.min() > 2.0  # the imbalance DGAE removes


# ----------------------------------------------------------------------------------------------
# Shape of each weight as a function of accuracy
# ----------------------------------------------------------------------------------------------


def _binary_ladder(g: int) -> torch.Tensor:
    """Row k has k correct out of g, k = 0..g."""
    return torch.tensor([[1.0] * k + [0.0] * (g - k) for k in range(g + 1)])


@pytest.mark.parametrize("g", [4, 8, 16])
def test_mgpo_peaks_at_half_and_is_symmetric(g: int) -> None:
    w = mgpo(_binary_ladder(g), None, low=0.0, high=1.0)
    half = g // 2
    assert w[half] == 1.0
    assert torch.all(w[1 : half + 1] > w[:half])  # strictly increasing up to p = 0.5
    assert torch.all(w[half + 1 :] < w[half:-1])  # strictly decreasing after
    torch.testing.assert_close(w, w.flip(0), rtol=1e-12, atol=0)
    assert w[0] == pytest.approx(0.5**0.5, rel=1e-12)  # (1 - p0)^lambda at p = 0


def test_mgpo_peak_follows_p0() -> None:
    w = mgpo(_binary_ladder(10), None, low=0.0, high=1.0, mgpo_lambda=3.0, mgpo_p0=0.3)
    assert int(w.argmax()) == 3 and w[3] == pytest.approx(1.0, abs=1e-12)  # 3/10 is not 0.3


def test_mgpo_lambda_zero_is_plain_grpo() -> None:
    w = mgpo(_binary_ladder(8), None, low=0.0, high=1.0, mgpo_lambda=0.0)
    assert torch.equal(w, torch.ones(9, dtype=torch.float64))


@pytest.mark.parametrize("g", [4, 8, 16])
def test_learnability_is_p_one_minus_p(g: int) -> None:
    w = learnability(_binary_ladder(g), None, low=0.0, high=1.0)
    p = torch.arange(g + 1, dtype=torch.float64) / g
    torch.testing.assert_close(w, p * (1 - p), rtol=1e-12, atol=1e-15)
    assert int(w.argmax()) == g // 2
    assert w[0] == 0.0 and w[-1] == 0.0


@pytest.mark.parametrize("g", [4, 8, 16])
def test_dgpo_favours_harder_questions(g: int) -> None:
    r = _binary_ladder(g)[1:-1]  # the active groups, p = 1/g .. (g-1)/g
    dqw = dgpo(r, None, low=0.0, high=1.0, dgpo_dgae=False)
    assert torch.all(dqw[1:] < dqw[:-1])  # strictly decreasing in accuracy
    assert dqw.mean().item() == pytest.approx(1.0, rel=1e-12)  # DQW is mean 1 by construction
    full = dgpo(r, None, low=0.0, high=1.0)
    # the MAD factor is symmetric in p <-> 1 - p, so with DQW the harder mirror always wins
    for k in range(len(r) // 2):
        assert full[k] > full[-1 - k]


def test_dgpo_softmax_spans_the_batch() -> None:
    # DQW couples groups: the same group weighs differently next to easier or harder ones
    a = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 0]])
    b = torch.tensor([[1.0, 0, 0, 0], [1, 0, 0, 0]])
    assert dgpo(a, None, low=0, high=1, dgpo_dgae=False)[0] > 1.0
    assert dgpo(b, None, low=0, high=1, dgpo_dgae=False)[0] == pytest.approx(1.0, rel=1e-12)


def test_dgpo_temperature_controls_concentration() -> None:
    r = _binary_ladder(8)[1:-1]
    hot = dgpo(r, None, low=0, high=1, dgpo_dgae=False, dgpo_temperature=100.0)
    cold = dgpo(r, None, low=0, high=1, dgpo_dgae=False, dgpo_temperature=0.02)
    assert float(hot.max() - hot.min()) < 0.05  # nearly uniform
    assert float(cold[0]) > 0.99 * len(r)  # nearly all the weight on the hardest question
    assert torch.isfinite(cold).all() and (cold >= 0).all()


# ----------------------------------------------------------------------------------------------
# Invariances
# ----------------------------------------------------------------------------------------------


def _random(seed: int, b: int = 12, g: int = 8) -> tuple[torch.Tensor, torch.Tensor, float, float]:
    r, m, low, high = _batch(np.random.default_rng(seed), b, g, "graded")
    return torch.from_numpy(r), torch.from_numpy(m), low, high


@pytest.mark.parametrize("name", NAMES)
def test_permuting_groups_permutes_weights(name: str) -> None:
    r, m, low, high = _random(3)
    perm = torch.randperm(r.shape[0], generator=torch.Generator().manual_seed(0))
    rule = get_rule(name)
    torch.testing.assert_close(
        rule(r[perm], m[perm], low=low, high=high),
        rule(r, m, low=low, high=high)[perm],
        rtol=1e-12,
        atol=1e-15,
    )


@pytest.mark.parametrize("name", NAMES)
def test_permuting_within_a_group_changes_nothing(name: str) -> None:
    r, m, low, high = _random(4)
    gen = torch.Generator().manual_seed(1)
    idx = torch.stack([torch.randperm(r.shape[1], generator=gen) for _ in range(r.shape[0])])
    rule = get_rule(name)
    torch.testing.assert_close(
        rule(r.gather(1, idx), m.gather(1, idx), low=low, high=high),
        rule(r, m, low=low, high=high),
        rtol=1e-12,
        atol=1e-15,
    )


@pytest.mark.parametrize("name", NAMES)
def test_masked_entries_are_ignored(name: str) -> None:
    r, m, low, high = _random(5)
    garbage = torch.where(m, r, torch.full_like(r, 1e6))  # masked values may even be out of range
    rule = get_rule(name)
    torch.testing.assert_close(
        rule(garbage, m, low=low, high=high), rule(r, m, low=low, high=high), rtol=0, atol=0
    )


@pytest.mark.parametrize("name", ["learnability", "mgpo"])
def test_masking_equals_dropping_for_per_group_rules(name: str) -> None:
    r, m, low, high = _random(6)
    rule = get_rule(name)
    w = rule(r, m, low=low, high=high)
    for b in range(r.shape[0]):
        kept = r[b][m[b]].unsqueeze(0)
        if kept.shape[1] == 0:
            continue
        torch.testing.assert_close(
            rule(kept, None, low=low, high=high)[0], w[b], rtol=1e-12, atol=1e-15
        )


@pytest.mark.parametrize("name", ["learnability", "mgpo"])
@pytest.mark.parametrize("a,c", [(2.5, -1.0), (1e-3, 7.0), (40.0, 0.5)])
def test_affine_reward_maps_with_matching_range_change_nothing(
    name: str, a: float, c: float
) -> None:
    r, m, low, high = _random(8)
    rule = get_rule(name)
    torch.testing.assert_close(
        rule(a * r + c, m, low=a * low + c, high=a * high + c),
        rule(r, m, low=low, high=high),
        rtol=1e-9,
        atol=1e-12,
    )


@pytest.mark.parametrize("a,c", [(2.5, -1.0), (1e-3, 7.0), (40.0, 0.5)])
def test_dgpo_affine_invariance(a: float, c: float) -> None:
    r, m, low, high = _random(9)
    # DQW reads the normalised accuracy: exactly invariant
    dqw = dgpo(r, m, low=low, high=high, dgpo_dgae=False)
    torch.testing.assert_close(
        dgpo(a * r + c, m, low=a * low + c, high=a * high + c, dgpo_dgae=False),
        dqw,
        rtol=1e-9,
        atol=1e-12,
    )
    # the MAD factor is invariant up to the 1e-4 constants (as TRL's and MathForge's advantages are)
    full = dgpo(r, m, low=low, high=high)
    moved = dgpo(a * r + c, m, low=a * low + c, high=a * high + c)
    tol = 2e-3 if a >= 1 else 0.5
    torch.testing.assert_close(moved, full, rtol=tol, atol=0)


@pytest.mark.parametrize("name", ["learnability", "mgpo"])
def test_symmetric_rules_ignore_a_reward_flip(name: str) -> None:
    r, m, low, high = _random(10)
    rule = get_rule(name)
    torch.testing.assert_close(
        rule(low + high - r, m, low=low, high=high),
        rule(r, m, low=low, high=high),
        rtol=1e-9,
        atol=1e-12,
    )


# ----------------------------------------------------------------------------------------------
# Degenerate groups and batches
# ----------------------------------------------------------------------------------------------

DEGENERATE = {
    "all masked": (torch.tensor([[0.3, 0.7, 1.0]]), torch.tensor([[False, False, False]])),
    "G = 1": (torch.tensor([[0.4], [1.0]]), None),
    "single valid member": (torch.tensor([[0.4, 0.9, 0.1]]), torch.tensor([[False, True, False]])),
    "constant": (torch.full((2, 8), 0.25), None),
    "empty batch": (torch.zeros((0, 8)), None),
    "G = 0": (torch.zeros((3, 0)), None),
}
INACTIVE = {"learnability": 0.0, "mgpo": None, "dgpo": 1.0}


@pytest.mark.parametrize("case", sorted(DEGENERATE))
@pytest.mark.parametrize("name", NAMES)
def test_degenerate_groups_give_finite_documented_values(name: str, case: str) -> None:
    r, m = DEGENERATE[case]
    w = get_rule(name)(r, m, low=0.0, high=1.0)
    assert w.shape == (r.shape[0],) and w.dtype == torch.float64
    assert torch.isfinite(w).all() and (w >= 0).all()
    if INACTIVE[name] is not None:
        assert torch.all(w == INACTIVE[name])
    elif case in ("all masked", "G = 0"):
        assert torch.all(w == 1.0)  # mgpo: no accuracy, neutral weight
    else:
        valid = r if m is None else r[m].reshape(r.shape[0], -1)
        p = valid.to(torch.float64).mean(dim=1)
        expect = torch.tensor(
            ref_mgpo([[x] for x in p.tolist()], 0.0, 1.0, 0.5, 0.5), dtype=torch.float64
        )
        torch.testing.assert_close(w, expect, rtol=1e-12, atol=0)


@pytest.mark.parametrize("name", NAMES)
def test_no_range_seen_yet(name: str) -> None:
    # low == high: every valid reward equals it, every group is inactive
    w = get_rule(name)(torch.full((3, 4), 2.0), None, low=2.0, high=2.0)
    assert torch.isfinite(w).all()
    assert torch.all(w == {"learnability": 0.0, "mgpo": 0.5**0.5, "dgpo": 1.0}[name])


def test_dgpo_batch_without_active_groups_is_all_ones() -> None:
    r = torch.tensor([[1.0, 1, 1], [0, 0, 0]])
    for scale in ("group", "batch", "none"):
        assert torch.equal(
            dgpo(r, None, low=0, high=1, dgpo_scale_rewards=scale),
            torch.ones(2, dtype=torch.float64),
        )


def test_constant_groups_are_exact_whatever_g() -> None:
    # 0.1 repeated: a plain mean is not exactly 0.1 for some G; the rules must still see a constant
    for g in range(1, 40):
        r = torch.full((1, g), 0.1, dtype=torch.float64)
        assert learnability(r, None, low=0.0, high=1.0)[0] == 0.0
        assert dgpo(r, None, low=0.0, high=1.0)[0] == 1.0


def test_inputs_are_not_modified_and_accept_numpy_and_lists() -> None:
    r = torch.tensor([[1.0, 0.0, 1.0], [0.0, 0.0, 1.0]])
    before = r.clone()
    for name in NAMES:
        a = get_rule(name)(r, None, low=0, high=1)
        b = get_rule(name)(r.numpy(), np.ones((2, 3), dtype=bool), low=0, high=1)
        c = get_rule(name)(r.tolist(), [[1, 1, 1], [1, 1, 1]], low=torch.tensor(0.0), high=1)
        torch.testing.assert_close(a, b, rtol=0, atol=0)
        torch.testing.assert_close(a, c, rtol=0, atol=0)
    assert torch.equal(r, before)


# ----------------------------------------------------------------------------------------------
# Errors
# ----------------------------------------------------------------------------------------------

GOOD = torch.tensor([[1.0, 0.0], [0.0, 0.0]])


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize(
    "rewards,mask,low,high,match",
    [
        (torch.ones(4), None, 0.0, 1.0, r"rewards: expected 2 dims, got shape \(4,\)"),
        (
            torch.tensor([[0.0, float("nan")]]),
            None,
            0.0,
            1.0,
            "rewards: contains a non-finite value",
        ),
        (
            GOOD,
            torch.ones(2, 3, dtype=torch.bool),
            0.0,
            1.0,
            r"mask: expected shape \(2, 2\), got \(2, 3\)",
        ),
        (GOOD, torch.ones(2, 2), 0.0, 1.0, "mask: expected a bool tensor"),
        (GOOD, None, 1.0, 0.0, r"high: expected >= low = 1.0, got 0.0"),
        (GOOD, None, float("-inf"), 1.0, "low: expected a finite number"),
        (GOOD, None, True, 1.0, "low: expected a real number, got True"),
        (GOOD, None, 0.0, "1", "high: expected a real number, got '1'"),
        (
            GOOD,
            None,
            0.0,
            0.5,
            r"rewards: valid values span \[0.0, 1.0\], outside the range \[low, high\] = \[0.0, 0.5\]",
        ),
        (GOOD, None, 0.5, 1.0, "rewards: valid values span"),
        ("nope", None, 0.0, 1.0, "rewards: expected a torch tensor or numpy array, got str"),
    ],
)
def test_bad_input_raises_value_error_naming_it(
    name: str, rewards: Any, mask: Any, low: Any, high: Any, match: str
) -> None:
    with pytest.raises(ValueError, match=match):
        get_rule(name)(rewards, mask, low=low, high=high)


@pytest.mark.parametrize(
    "fn,kwargs,match",
    [
        (mgpo, {"mgpo_lambda": -0.1}, r"mgpo_lambda: expected >= 0, got -0.1"),
        (mgpo, {"mgpo_lambda": float("nan")}, "mgpo_lambda: expected a finite number"),
        (mgpo, {"mgpo_p0": 0.0}, r"mgpo_p0: expected a number in \(0, 1\), got 0.0"),
        (mgpo, {"mgpo_p0": 1.0}, r"mgpo_p0: expected a number in \(0, 1\), got 1.0"),
        (dgpo, {"dgpo_temperature": 0.0}, "dgpo_temperature: expected > 0, got 0.0"),
        (dgpo, {"dgpo_temperature": "2"}, "dgpo_temperature: expected a real number"),
        (
            dgpo,
            {"dgpo_scale_rewards": "std"},
            "dgpo_scale_rewards: got 'std', allowed: group, batch, none",
        ),
        (dgpo, {"dgpo_dgae": 1}, "dgpo_dgae: expected a bool, got 1"),
        (dgpo, {"dgpo_dqw": "yes"}, "dgpo_dqw: expected a bool, got 'yes'"),
    ],
)
def test_bad_parameters_raise(fn: Any, kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        fn(GOOD, None, low=0.0, high=1.0, **kwargs)


def test_unknown_rule_lists_the_registered_ones() -> None:
    with pytest.raises(
        ValueError, match=r"rule: unknown name 'mgpo2'; registered: dgpo, learnability, mgpo"
    ):
        get_rule("mgpo2")


def test_register_rule_checks_and_registers() -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_rule("mgpo", description="x")
    with pytest.raises(ValueError, match="name: expected an identifier"):
        register_rule("not a name", description="x")
    with pytest.raises(ValueError, match="params: expected a tuple"):
        register_rule("tmp_rule_bad", params="alpha", description="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="description"):
        register_rule("tmp_rule_bad", description="")

    @register_rule("tmp_rule_ones", params=("tmp_scale",), description="constant weights")
    def ones(
        rewards: Any, mask: Any = None, *, low: Any, high: Any, tmp_scale: float = 1.0
    ) -> torch.Tensor:
        return torch.full((len(rewards),), tmp_scale, dtype=torch.float64)

    try:
        rule = get_rule("tmp_rule_ones")
        assert rule.params == ("tmp_scale",) and rule.fn is ones

        class Cfg:
            tmp_scale = 3.0

        assert rule.kwargs_for(Cfg()) == {"tmp_scale": 3.0}
        assert torch.equal(
            rule(GOOD, None, low=0, high=1, **rule.kwargs_for(Cfg())),
            torch.full((2,), 3.0, dtype=torch.float64),
        )
    finally:
        del RULES["tmp_rule_ones"]


# ----------------------------------------------------------------------------------------------
# Registry, presets and the core boundary
# ----------------------------------------------------------------------------------------------


def test_registered_params_are_the_functions_keyword_parameters() -> None:
    assert set(NAMES) <= set(RULES)
    for name in NAMES:
        rule = RULES[name]
        sig = inspect.signature(rule.fn)
        kw = [p for p, v in sig.parameters.items() if v.kind is inspect.Parameter.KEYWORD_ONLY]
        assert kw == ["low", "high", *rule.params]
        assert all(p.startswith(name + "_") for p in rule.params)
        assert rule.description


@pytest.mark.parametrize("name", NAMES)
def test_preset_file_names_the_rule_with_its_defaults(name: str) -> None:
    path = PRESET_DIR / f"{name}.yaml"
    text = path.read_text(encoding="utf-8")
    raw = yaml.safe_load(text)
    rule = get_rule(raw["rule"])
    assert raw["rule"] == name and raw["renormalize"] is True and raw["signal"] == "none"
    assert set(raw) == {"rule", "signal", "renormalize", *rule.params}
    # the preset loads, and its weighting comes from the rule (no uncertainty signal computed)
    from gcpo.presets import preset

    loaded = preset(name)
    assert loaded.rule == name and loaded.signal == "none"
    sig = inspect.signature(rule.fn)
    for p in rule.params:
        assert raw[p] == sig.parameters[p].default, p
    header = [line for line in text.splitlines() if line.startswith("#")]
    assert any("arXiv" in line for line in header) and any("Choices" in line for line in header)


def test_peers_imports_only_torch_math_dataclasses_and_validation() -> None:
    tree = ast.parse(Path(peers.__file__).read_text(encoding="utf-8"))
    imported: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            imported.add(node.module)
    assert imported <= {
        "__future__",
        "math",
        "dataclasses",
        "typing",
        "collections.abc",
        "torch",
        "gcpo.validation",
    }
