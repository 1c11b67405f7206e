import numpy as np
import pytest
import torch
from scipy import stats as sps

from gcpo.diagnostics.stats import (
    bootstrap_ci,
    correlate,
    gradient_noise,
    partial_spearman,
    spearman,
    spearman_difference,
)


def test_gradient_noise_hand_built_example():
    # g1 = (1, 0), g2 = (3, 0), g3 = (2, 3): mean (2, 1)
    # deviations (-1,-1), (1,-1), (0,2): squared norms 2, 2, 4 -> V = 8/3; ||g_bar||^2 = 5
    grads = torch.tensor([[1.0, 0.0], [3.0, 0.0], [2.0, 3.0]])
    out = gradient_noise(grads)
    assert out.variance.item() == pytest.approx(8 / 3)
    assert out.mean_sq_norm.item() == pytest.approx(5.0)
    assert out.nsr.item() == pytest.approx((8 / 3) / 5.0)


def test_gradient_noise_mask_and_batch():
    grads = torch.tensor(
        [[[1.0, 0.0], [3.0, 0.0], [100.0, 100.0]], [[1.0, 1.0], [1.0, 1.0], [1.0, 1.0]]]
    )
    mask = torch.tensor([[True, True, False], [True, True, True]])
    out = gradient_noise(grads, mask)
    # group 0: g = (1,0),(3,0): mean (2,0), V = 1, ||g_bar||^2 = 4
    assert out.variance.tolist() == pytest.approx([1.0, 0.0])
    assert out.mean_sq_norm.tolist() == pytest.approx([4.0, 2.0])
    assert out.nsr.tolist() == pytest.approx([0.25, 0.0])


def test_gradient_noise_degenerate_is_finite():
    zero = gradient_noise(torch.zeros(4, 5))
    assert zero.variance.item() == 0 and zero.nsr.item() == 0
    masked = gradient_noise(torch.randn(2, 3, 5), torch.zeros(2, 3, dtype=torch.bool))
    assert torch.isfinite(masked.nsr).all() and masked.variance.abs().sum() == 0


def test_gradient_noise_matches_identity_v_equals_mean_sq_minus_sq_mean():
    g = torch.randn(6, 50, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    out = gradient_noise(g)
    expected = (g**2).sum(-1).mean() - (g.mean(0) ** 2).sum()
    assert out.variance.item() == pytest.approx(expected.item(), rel=1e-5)


def test_gradient_noise_rejects_bad_shapes():
    with pytest.raises(ValueError, match="grads"):
        gradient_noise(torch.zeros(3))
    with pytest.raises(ValueError, match="mask"):
        gradient_noise(torch.zeros(3, 2), torch.ones(4, dtype=torch.bool))


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_spearman_matches_scipy_with_ties(seed):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 5, size=40).astype(float)  # many ties
    y = x + rng.normal(size=40)
    assert spearman(x, y) == pytest.approx(sps.spearmanr(x, y).statistic, abs=1e-12)


def test_partial_spearman_matches_closed_form_from_scipy():
    rng = np.random.default_rng(3)
    z = rng.normal(size=60)
    x = z + 0.5 * rng.normal(size=60)
    y = z**3 + 0.5 * rng.normal(size=60) + 0.3 * x
    r_xy = sps.spearmanr(x, y).statistic
    r_xz = sps.spearmanr(x, z).statistic
    r_yz = sps.spearmanr(y, z).statistic
    expected = (r_xy - r_xz * r_yz) / np.sqrt((1 - r_xz**2) * (1 - r_yz**2))
    assert partial_spearman(x, y, z) == pytest.approx(expected, abs=1e-10)
    # x and y are both driven by z: the partial correlation is much smaller than the raw one
    assert abs(partial_spearman(x, y, z)) < spearman(x, y)


@pytest.mark.parametrize("seed", [0, 1])
def test_partial_spearman_two_covariates_matches_precision_matrix(seed):
    """Reference: partial correlation of x, y given z1, z2 from the inverse of the Spearman
    correlation matrix of (x, y, z1, z2): -P_xy / sqrt(P_xx P_yy)."""
    rng = np.random.default_rng(seed)
    z1 = rng.normal(size=80)
    z2 = rng.integers(2, 30, size=80).astype(float)  # a length: ties
    x = z1 + 0.02 * z2 + 0.5 * rng.normal(size=80)
    y = np.exp(z1) + 0.05 * z2 + 0.4 * x + rng.normal(size=80)
    r = sps.spearmanr(np.stack([x, y, z1, z2], axis=1)).statistic
    prec = np.linalg.inv(r)
    expected = -prec[0, 1] / np.sqrt(prec[0, 0] * prec[1, 1])
    assert partial_spearman(x, y, z1, z2) == pytest.approx(expected, abs=1e-10)
    # the order of the covariates does not matter; one covariate is the earlier function
    assert partial_spearman(x, y, z2, z1) == pytest.approx(expected, abs=1e-10)
    assert partial_spearman(x, y, z1) != pytest.approx(expected, abs=1e-6)


def test_partial_spearman_removes_a_length_confound():
    # V and the signal both grow with length only: given RD alone they still correlate,
    # given RD and length jointly they do not
    rng = np.random.default_rng(4)
    length = rng.uniform(5, 60, size=400)
    rd = rng.uniform(0.1, 0.5, size=400)
    signal = length + rng.normal(scale=5, size=400)
    v = rd * length + rng.normal(scale=2, size=400)
    assert partial_spearman(signal, v, rd) > 0.5
    assert abs(partial_spearman(signal, v, rd, length)) < 0.1
    with pytest.raises(ValueError, match="covariates"):
        partial_spearman(signal, v)
    with pytest.raises(ValueError, match="same length"):
        partial_spearman(signal, v, rd[:10])


def test_spearman_difference_paired_bootstrap():
    rng = np.random.default_rng(6)
    v = rng.normal(size=300)
    good = v + 0.3 * rng.normal(size=300)  # tracks V closely
    bad = v + 3.0 * rng.normal(size=300)  # barely
    d = spearman_difference(good, bad, v)
    assert d == pytest.approx(spearman(good, v) - spearman(bad, v))
    lo, hi = bootstrap_ci(spearman_difference, good, bad, v, n_resamples=300, seed=1)
    assert 0 < lo < d < hi
    # paired: both rhos are computed on the same resample of groups
    rng2 = np.random.default_rng(1)
    ref = []
    for _ in range(300):
        i = rng2.integers(0, 300, size=300)
        ref.append(spearman(good[i], v[i]) - spearman(bad[i], v[i]))
    assert (lo, hi) == pytest.approx(tuple(np.quantile(ref, [0.025, 0.975])), abs=1e-12)
    # a signal against itself: exactly 0 on every resample
    assert bootstrap_ci(spearman_difference, good, good, v, n_resamples=50) == (0.0, 0.0)


def test_correlations_degenerate_give_zero_not_nan():
    assert spearman([1, 1, 1, 1], [1, 2, 3, 4]) == 0.0
    assert spearman([1, 2], [2, 1]) == 0.0
    # x fully explained by z: no residual left to correlate
    assert partial_spearman([1, 2, 3, 4, 5], [5, 3, 4, 1, 2], [10, 20, 30, 40, 50]) == 0.0


def test_bootstrap_ci_is_seeded_and_contains_estimate():
    rng = np.random.default_rng(0)
    x = rng.normal(size=80)
    y = x + rng.normal(size=80)
    a = bootstrap_ci(spearman, x, y, n_resamples=300, seed=7)
    b = bootstrap_ci(spearman, x, y, n_resamples=300, seed=7)
    assert a == b
    assert a[0] < spearman(x, y) < a[1]
    assert a[0] > 0.0 and a[1] < 1.0


def test_correlate_bundles_everything():
    rng = np.random.default_rng(5)
    rd = rng.uniform(size=30)
    target = rd + rng.normal(scale=0.1, size=30)
    signal = target + rng.normal(scale=0.1, size=30)
    c = correlate(signal, target, rd, n_resamples=200)
    assert c.n == 30
    assert c.ci_low <= c.rho <= c.ci_high
    assert c.partial_ci_low <= c.partial <= c.partial_ci_high
    assert c.rho > 0.5
    assert c.partial2 is None
    length = rng.uniform(5, 40, size=30)
    c2 = correlate(signal, target, rd, second_covariate=length, n_resamples=200)
    assert c2.partial2 == pytest.approx(partial_spearman(signal, target, rd, length))
    assert c2.partial2_ci_low <= c2.partial2 <= c2.partial2_ci_high
    assert (c2.rho, c2.partial) == (c.rho, c.partial)
