import math

import pytest
import torch

from gcpo.gradients import CountSketch


def test_projection_is_seeded_and_linear():
    a = CountSketch([100, 50], dim=16, seed=3)
    b = CountSketch([100, 50], dim=16, seed=3)
    c = CountSketch([100, 50], dim=16, seed=4)
    x = torch.randn(2, 150, generator=torch.Generator().manual_seed(0))
    assert torch.equal(a.project(x), b.project(x))
    assert not torch.equal(a.project(x), c.project(x))
    torch.testing.assert_close(a.project(x[0] + 2 * x[1]), a.project(x[0]) + 2 * a.project(x[1]))


def test_project_parts_equals_project_of_concatenation():
    sk = CountSketch([12, 6], dim=8, seed=0)
    w1, w2 = torch.randn(3, 4), torch.randn(6)
    torch.testing.assert_close(
        sk.project_parts([w1, w2]), sk.project(torch.cat([w1.reshape(-1), w2]))
    )


def test_squared_norms_preserved_within_documented_tolerance():
    # Var of the relative error is <= 2/k; check every vector is within 4 std and the mean ratio ~ 1.
    k = 2048
    sk = CountSketch([30_000, 20_000], dim=k, seed=0)
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(40, 50_000, generator=gen)
    x[:10] *= torch.rand(10, 50_000, generator=gen) ** 8  # heavy-tailed, gradient-like vectors
    ratio = sk.project(x).pow(2).sum(-1) / x.pow(2).sum(-1)
    sigma = math.sqrt(2 / k)
    assert (ratio - 1).abs().max().item() < 4 * sigma
    assert abs(ratio.mean().item() - 1) < 4 * sigma / math.sqrt(40)


def test_projection_rejects_bad_input():
    with pytest.raises(ValueError, match="dim"):
        CountSketch([3], dim=0)
    sk = CountSketch([3], dim=2)
    with pytest.raises(ValueError, match="last dim"):
        sk.project(torch.zeros(4))
    with pytest.raises(ValueError, match="parts"):
        sk.project_parts([torch.zeros(3), torch.zeros(1)])
