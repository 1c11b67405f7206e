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
