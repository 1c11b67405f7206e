"""Invariants of gcpo.signals: permutation/scale invariance, bounds, identities, degenerate groups,
agreement with reference computations (POT's barycenter solver, the D x D EigenScore form)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from gcpo import signals as S

GEN = torch.Generator().manual_seed(0)


def randn(*shape: int) -> torch.Tensor:
    return torch.randn(*shape, generator=GEN, dtype=torch.float64)


def unit(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=-1, keepdim=True)


def one_point_clouds(e: torch.Tensor) -> list[list[torch.Tensor]]:
    return [[e[b, i : i + 1] for i in range(e.shape[1])] for b in range(e.shape[0])]


# ------------------------------------------------------------------------------------ registry


def test_registry_names_and_bounds() -> None:
    for name in (
        "semantic_entropy",
        "cosine_dispersion",
        "barycentric_transport",
        "reward_dispersion",
        "eigenscore",
        "token_entropy",
        "negative_log_likelihood",
    ):
        assert name in S.SIGNALS
        assert S.get_signal(name).name == name
    assert S.get_signal("semantic_entropy").bound_value(8, 0.5) == pytest.approx(math.log(8))
    assert S.get_signal("cosine_dispersion").bound_value(8, 0.5) == 1.0
    assert S.get_signal("barycentric_transport").bound_value(8, 0.5) == 1.0
    assert S.get_signal("reward_dispersion").bound_value(8, 0.25) == 0.25
    assert not S.get_signal("eigenscore").bounded
    # the spec is callable like the function
    e = randn(2, 4, 3)
    assert torch.equal(S.get_signal("cosine_dispersion")(e), S.cosine_dispersion(e))
    with pytest.raises(ValueError, match="unknown name 'nope'"):
        S.get_signal("nope")


# ---------------------------------------------------------------------------- semantic entropy


@pytest.mark.parametrize("g,k", [(8, 1), (8, 2), (8, 4), (8, 8), (6, 3)])
def test_semantic_entropy_equals_log_k_for_k_equal_clusters(g: int, k: int) -> None:
    ids = torch.arange(g).remainder(k).view(1, g) * 7 - 3  # arbitrary ints, -3 included
    se = S.semantic_entropy(ids)
    assert se.shape == (1,)
    assert se.item() == pytest.approx(math.log(k), abs=1e-6)
    # equal log-likelihoods: likelihood weighting is uniform
    assert S.semantic_entropy(ids, torch.full((1, g), -0.7)).item() == pytest.approx(
        math.log(k), abs=1e-6
    )


def test_semantic_entropy_likelihood_weighting_matches_hand_computation() -> None:
    ids = torch.tensor([[5, 5, -1, 2, 2, 2]])
    lp = torch.tensor([[-0.2, -1.0, -0.5, -2.0, -0.1, -0.3]], dtype=torch.float64)
    w = torch.softmax(lp[0], 0)
    masses = [w[[0, 1]].sum(), w[[2]].sum(), w[[3, 4, 5]].sum()]
    expected = -sum(float(p) * math.log(float(p)) for p in masses)
    assert S.semantic_entropy(ids, lp).item() == pytest.approx(expected, abs=1e-12)
    # discrete SE differs (masses 2/6, 1/6, 3/6)
    discrete = -sum(p * math.log(p) for p in (2 / 6, 1 / 6, 3 / 6))
    assert S.semantic_entropy(ids).item() == pytest.approx(discrete, abs=1e-6)


def test_semantic_entropy_mask_ignores_padding() -> None:
    ids = torch.tensor([[0, 1, 1, 9, 9]])
    mask = torch.tensor([[True, True, True, False, False]])
    lp = randn(1, 5)
    full = S.semantic_entropy(ids[:, :3], lp[:, :3])
    assert S.semantic_entropy(ids, lp, mask).item() == pytest.approx(full.item(), abs=1e-12)
    # a masked id equal to a valid one does not add mass to that cluster
    ids2 = torch.tensor([[0, 1, 1, 0, 0]])
    assert S.semantic_entropy(ids2, lp, mask).item() == pytest.approx(full.item(), abs=1e-12)


def test_semantic_entropy_permutation_invariant_and_bounded() -> None:
    ids = torch.randint(0, 4, (16, 8), generator=GEN)
    lp = randn(16, 8)
    se = S.semantic_entropy(ids, lp)
    perm = torch.randperm(8, generator=GEN)
    assert torch.allclose(S.semantic_entropy(ids[:, perm], lp[:, perm]), se, atol=1e-12)
    assert bool((se >= 0).all()) and bool((se <= math.log(8) + 1e-9).all())


# ------------------------------------------------------------------------------ clusterers


def test_answer_clusters_none_is_its_own_cluster_and_padding_is_masked() -> None:
    ids, mask = S.answer_clusters([["4", "4", None, None, "5"], ["x"]])
    assert ids.dtype == torch.long
    assert ids[0].tolist() == [0, 0, 1, 2, 3]
    assert mask.tolist() == [[True] * 5, [True, False, False, False, False]]
    assert S.semantic_entropy(ids, mask=mask)[1].item() == 0.0
    # two unparseable answers are two clusters: 4 clusters with masses 2,1,1,1 of 5
    expected = -(0.4 * math.log(0.4) + 3 * 0.2 * math.log(0.2))
    assert S.semantic_entropy(ids, mask=mask)[0].item() == pytest.approx(expected, abs=1e-6)


def test_answer_clusters_bad_input() -> None:
    with pytest.raises(ValueError, match=r"answer_keys\[0\]\[1\]"):
        S.answer_clusters([["1", 2]])
    with pytest.raises(ValueError, match=r"answer_keys\[0\]"):
        S.answer_clusters(["abc"])


def test_embedding_clusters_greedy_anchors() -> None:
    # a ~ b and b ~ c above the threshold, a !~ c: c is compared with anchors only (a), so it
    # starts its own cluster even though it is close to b
    ang = math.radians(20)
    a = [1.0, 0.0]
    b = [math.cos(ang), math.sin(ang)]
    c = [math.cos(2 * ang), math.sin(2 * ang)]
    thr = math.cos(math.radians(25))
    ids = S.embedding_clusters(torch.tensor([[a, b, c, a]]), threshold=thr)
    assert ids.tolist() == [[0, 0, 2, 0]]


def test_embedding_clusters_scale_invariant_and_masked() -> None:
    e = randn(4, 6, 5)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[1, 4:] = False
    ids = S.embedding_clusters(e, threshold=0.3, mask=mask)
    scale = torch.rand(4, 6, 1, generator=GEN, dtype=torch.float64) * 10 + 0.01
    assert torch.equal(S.embedding_clusters(e * scale, threshold=0.3, mask=mask), ids)
    assert ids[1, 4:].tolist() == [-1, -1]
    dup = torch.cat([e[:, :1]] * 3, dim=1)
    assert S.embedding_clusters(dup).tolist() == [[0, 0, 0]] * 4


# ----------------------------------------------------------------------- cosine dispersion


def test_cosine_dispersion_identity_with_mean_pairwise_cosine_distance() -> None:
    e = randn(5, 7, 4)
    u = unit(e)
    e_bar = u.mean(dim=1)
    pairwise = 1.0 - u @ u.transpose(1, 2)  # all ordered pairs, i = j included
    assert torch.allclose(pairwise.mean(dim=(1, 2)), 1 - e_bar.norm(dim=-1) ** 2, atol=1e-12)
    assert torch.allclose(S.cosine_dispersion(e), 1 - e_bar.norm(dim=-1), atol=1e-12)


def test_cosine_dispersion_invariances_and_bounds() -> None:
    e = randn(8, 6, 5)
    w = torch.rand(8, 6, generator=GEN, dtype=torch.float64)
    cd = S.cosine_dispersion(e, w)
    perm = torch.randperm(6, generator=GEN)
    assert torch.allclose(S.cosine_dispersion(e[:, perm], w[:, perm]), cd, atol=1e-12)
    scale = torch.rand(8, 6, 1, generator=GEN, dtype=torch.float64) * 100 + 1e-3
    assert torch.allclose(S.cosine_dispersion(e * scale, w), cd, atol=1e-12)
    assert bool((cd >= 0).all()) and bool((cd <= 1).all())
    # weights are renormalised: scaling them changes nothing
    assert torch.allclose(S.cosine_dispersion(e, 3 * w), cd, atol=1e-12)
    # antipodal pair: the maximum
    v = randn(1, 1, 5)
    assert S.cosine_dispersion(torch.cat([v, -v], dim=1)).item() == pytest.approx(1.0)


def test_cosine_dispersion_mask_equals_dropping_members() -> None:
    e = randn(3, 6, 4)
    mask = torch.tensor([[1, 1, 1, 0, 0, 0], [1, 1, 1, 1, 1, 1], [0, 1, 0, 1, 0, 1]]).bool()
    out = S.cosine_dispersion(e, mask=mask)
    for b in range(3):
        ref = S.cosine_dispersion(e[b : b + 1, mask[b]])
        assert out[b].item() == pytest.approx(ref.item(), abs=1e-12)


# ------------------------------------------------------------------ barycentric transport


def test_bot_one_point_clouds_equal_one_minus_squared_mean_norm() -> None:
    e = randn(6, 5, 8)
    e_bar = unit(e).mean(dim=1)
    bot = S.barycentric_transport(one_point_clouds(e))
    assert torch.allclose(bot, 1 - e_bar.norm(dim=-1) ** 2, atol=1e-5)
    # weighted version: sum_i w_i ||e_i - e_bar_w||^2 = 1 - ||e_bar_w||^2
    w = torch.rand(6, 5, generator=GEN, dtype=torch.float64) + 0.1
    wn = w / w.sum(dim=1, keepdim=True)
    e_bar_w = (wn.unsqueeze(-1) * unit(e)).sum(dim=1)
    bot_w = S.barycentric_transport(one_point_clouds(e), w)
    assert torch.allclose(bot_w, 1 - e_bar_w.norm(dim=-1) ** 2, atol=1e-5)
    # also with an explicit support size > 1
    bot_k = S.barycentric_transport(one_point_clouds(e), support_size=3)
    assert torch.allclose(bot_k, 1 - e_bar.norm(dim=-1) ** 2, atol=1e-5)


def _random_clouds(b: int, g: int, m_max: int, d: int) -> list[list[torch.Tensor]]:
    sizes = torch.randint(1, m_max + 1, (b, g), generator=GEN)
    return [[randn(int(sizes[i, j]), d) for j in range(g)] for i in range(b)]


def _reference_bot(clouds: list[torch.Tensor], w: np.ndarray, max_iter: int = 10) -> float:
    """POT's own solver with the initialisation rule documented in barycentric_transport."""
    import ot

    ys = [unit(c).numpy() for c in clouds]
    k = max(y.shape[0] for y in ys)
    means = np.stack([y.mean(0) for y in ys])
    centre = (w[:, None] * means).sum(0)
    dist = [
        ((mu - centre) ** 2).sum() if y.shape[0] == k else np.inf
        for mu, y in zip(means, ys, strict=True)
    ]
    x0 = ys[int(np.argmin(dist))]
    a = [np.full(y.shape[0], 1.0 / y.shape[0]) for y in ys]
    b = np.full(k, 1.0 / k)
    x = ot.lp.free_support_barycenter(ys, a, x0, b=b, weights=w, numItermax=max_iter, stopThr=1e-7)
    return sum(w[i] * ot.emd2(b, a[i], ot.dist(x, ys[i])) for i in range(len(ys)))


def test_bot_matches_pot_free_support_barycenter() -> None:
    clouds = _random_clouds(6, 5, 5, 6)
    w = np.full(5, 0.2)
    for max_iter in (1, 3, 10):
        out = S.barycentric_transport(clouds, max_iter=max_iter)
        for b in range(6):
            ref = _reference_bot(clouds[b], w, max_iter)
            assert out[b].item() == pytest.approx(ref, abs=1e-8)


def test_bot_shared_steps_cost_nothing() -> None:
    steps = unit(randn(6, 16))
    other = unit(randn(6, 16))
    same = S.barycentric_transport([[steps, steps[torch.randperm(6, generator=GEN)]]])
    assert same.item() == pytest.approx(0.0, abs=1e-12)
    one_diff = steps.clone()
    one_diff[3] = other[3]
    all_diff = other
    v_one = S.barycentric_transport([[steps, one_diff]]).item()
    v_all = S.barycentric_transport([[steps, all_diff]]).item()
    assert 0 < v_one < v_all
    # only the differing segment is transported: mass 1/6 moved half-way (barycenter at the midpoint)
    expected = (1 / 6) * ((steps[3] - other[3]).norm() ** 2).item() / 4
    assert v_one == pytest.approx(expected, rel=1e-6)


def test_bot_invariances_and_bounds() -> None:
    clouds = _random_clouds(5, 6, 4, 5)
    bot = S.barycentric_transport(clouds)
    assert bool((bot >= 0).all()) and bool((bot <= 1).all())
    scaled = [[c * (1 + 9 * torch.rand(c.shape[0], 1, generator=GEN)) for c in g] for g in clouds]
    assert torch.allclose(S.barycentric_transport(scaled), bot, atol=1e-9)
    perm = torch.randperm(6, generator=GEN).tolist()
    permuted = [[g[i] for i in perm] for g in clouds]
    assert torch.allclose(S.barycentric_transport(permuted), bot, atol=1e-9)
    # numpy inputs and [B,G] tensor weights are accepted
    as_np = [[c.numpy() for c in g] for g in clouds]
    assert torch.allclose(S.barycentric_transport(as_np, torch.ones(5, 6)), bot, atol=1e-12)
    # antipodal one-point clouds reach the bound 1
    v = unit(randn(1, 7))
    assert S.barycentric_transport([[v, -v]]).item() == pytest.approx(1.0, abs=1e-9)


def test_bot_ragged_groups_and_degenerate() -> None:
    v = randn(3, 4)
    out = S.barycentric_transport([[], [v], [v, v * 2], [torch.zeros(0, 4), torch.zeros(0, 4)]])
    assert out.tolist() == [0.0, 0.0, pytest.approx(0.0, abs=1e-12), 0.0]
    assert bool(torch.isfinite(out).all())


# ---------------------------------------------------------------- anisotropic-gap case


def test_anisotropic_gap_geometry_orders_groups_semantic_entropy_ties() -> None:
    d = 16
    base = unit(randn(d))
    near = unit(base + 0.05 * unit(randn(d)))  # a near-paraphrase cluster
    far = -base  # a contradictory cluster
    close_group = torch.stack([base] * 4 + [near] * 4)
    far_group = torch.stack([base] * 4 + [far] * 4)
    e = torch.stack([close_group, far_group])
    ids = torch.tensor([[0] * 4 + [1] * 4] * 2)
    se = S.semantic_entropy(ids)
    assert se[0].item() == pytest.approx(se[1].item(), abs=1e-9)  # SE is blind to the distance
    cd = S.cosine_dispersion(e)
    bot = S.barycentric_transport(one_point_clouds(e))
    assert cd[0] < cd[1]
    assert bot[0] < bot[1]


# ---------------------------------------------------------------- reward dispersion etc.


def test_reward_dispersion_population_std_and_bounds() -> None:
    r = torch.randint(0, 2, (32, 8), generator=GEN).double()
    rd = S.reward_dispersion(r)
    p = r.mean(dim=1)
    assert torch.allclose(rd, (p * (1 - p)).sqrt(), atol=1e-12)  # binary: sqrt(p(1-p))
    assert torch.allclose(rd, r.std(dim=1, unbiased=False), atol=1e-12)
    assert bool((rd <= 0.5 + 1e-12).all())
    perm = torch.randperm(8, generator=GEN)
    assert torch.allclose(S.reward_dispersion(r[:, perm]), rd, atol=1e-12)
    mask = torch.ones(32, 8, dtype=torch.bool)
    mask[:, 5:] = False
    assert torch.allclose(
        S.reward_dispersion(r, mask), r[:, :5].std(dim=1, unbiased=False), atol=1e-12
    )


def test_eigenscore_matches_covariance_form() -> None:
    n, d, alpha = 5, 7, 1e-3
    e = randn(3, n, d)
    out = S.eigenscore(e, alpha=alpha)
    for b in range(3):
        z = unit(e[b])
        z = z - z.mean(0)
        cov = z.T @ z / n
        full = torch.logdet(cov + alpha * torch.eye(d, dtype=torch.float64)) / n
        assert out[b].item() == pytest.approx(full.item() - (d - n) / n * math.log(alpha), abs=1e-8)
    # permutation and scale invariant; mask = dropping members
    perm = torch.randperm(n, generator=GEN)
    assert torch.allclose(S.eigenscore(e[:, perm] * 3.0, alpha=alpha), out, atol=1e-9)
    mask = torch.ones(3, n, dtype=torch.bool)
    mask[0, 3:] = False
    assert S.eigenscore(e, mask, alpha)[0].item() == pytest.approx(
        S.eigenscore(e[:1, :3], alpha=alpha).item(), abs=1e-9
    )


def test_token_entropy_and_nll_are_masked_means() -> None:
    x = randn(4, 6)
    mask = torch.ones(4, 6, dtype=torch.bool)
    mask[2, 1:] = False
    assert torch.allclose(S.token_entropy(x), x.mean(dim=1))
    assert torch.allclose(S.negative_log_likelihood(x), -x.mean(dim=1))
    assert S.token_entropy(x, mask)[2].item() == pytest.approx(x[2, 0].item())


# ----------------------------------------------------------------------- degenerate groups


def test_degenerate_groups_are_finite_and_documented() -> None:
    d = 4
    v = randn(1, 1, d)
    # G = 1
    assert S.cosine_dispersion(v).item() == 0.0
    assert S.semantic_entropy(torch.zeros(1, 1, dtype=torch.long), randn(1, 1)).item() == 0.0
    assert S.reward_dispersion(torch.ones(1, 1)).item() == 0.0
    assert S.barycentric_transport(one_point_clouds(v)).item() == 0.0
    assert S.eigenscore(v).item() == pytest.approx(math.log(1e-3))
    # identical completions, equal rewards
    same = v.expand(1, 6, d)
    assert S.cosine_dispersion(same).item() == pytest.approx(0.0, abs=1e-7)
    assert S.barycentric_transport(one_point_clouds(same)).item() == pytest.approx(0.0, abs=1e-12)
    assert S.reward_dispersion(torch.full((1, 6), 0.3)).item() == pytest.approx(0.0, abs=1e-7)
    assert S.semantic_entropy(torch.full((1, 6), 4)).item() == 0.0
    # empty completion -> zero embedding
    z = torch.zeros(1, 3, d)
    for out in (S.cosine_dispersion(z), S.eigenscore(z), S.embedding_clusters(z).double()):
        assert bool(torch.isfinite(out).all())
    assert S.cosine_dispersion(z).item() == 1.0
    # all masked
    none = torch.zeros(2, 5, dtype=torch.bool)
    e = randn(2, 5, d)
    for out in (
        S.cosine_dispersion(e, mask=none),
        S.semantic_entropy(torch.zeros(2, 5, dtype=torch.long), randn(2, 5), none),
        S.reward_dispersion(randn(2, 5), none),
        S.eigenscore(e, none),
        S.token_entropy(randn(2, 5), none),
        S.negative_log_likelihood(randn(2, 5), none),
    ):
        assert out.tolist() == [0.0, 0.0]
    # empty batch
    assert S.cosine_dispersion(torch.zeros(0, 3, d)).shape == (0,)
    assert S.barycentric_transport([]).shape == (0,)


# --------------------------------------------------------------------------- bad input


def test_bad_input_raises_value_error_naming_the_argument() -> None:
    e = randn(2, 3, 4)
    with pytest.raises(ValueError, match=r"embeddings: expected 3 dims.*\(2, 3\)"):
        S.cosine_dispersion(e[:, :, 0])
    bad = e.clone()
    bad[0, 1, 2] = float("nan")
    with pytest.raises(ValueError, match="embeddings: contains a non-finite value"):
        S.cosine_dispersion(bad)
    with pytest.raises(ValueError, match=r"mask: expected shape \(2, 3\), got \(2, 4\)"):
        S.cosine_dispersion(e, mask=torch.ones(2, 4, dtype=torch.bool))
    with pytest.raises(ValueError, match="mask: expected a bool tensor"):
        S.cosine_dispersion(e, mask=torch.ones(2, 3))
    with pytest.raises(ValueError, match=r"weights: expected shape \(2, 3\)"):
        S.cosine_dispersion(e, torch.ones(3, 2))
    with pytest.raises(ValueError, match="weights: must be >= 0"):
        S.cosine_dispersion(e, -torch.ones(2, 3))
    with pytest.raises(
        ValueError, match="cluster_ids: expected an integer tensor, got dtype torch.float"
    ):
        S.semantic_entropy(torch.zeros(2, 3))
    with pytest.raises(ValueError, match=r"logprobs: expected shape \(2, 3\)"):
        S.semantic_entropy(torch.zeros(2, 3, dtype=torch.long), torch.zeros(2, 2))
    with pytest.raises(ValueError, match="logprobs: contains a non-finite value"):
        S.semantic_entropy(
            torch.zeros(1, 2, dtype=torch.long), torch.tensor([[0.0, -float("inf")]])
        )
    with pytest.raises(ValueError, match="rewards: expected 2 dims"):
        S.reward_dispersion(torch.zeros(3))
    with pytest.raises(ValueError, match="threshold: must be in"):
        S.embedding_clusters(e, threshold=1.5)
    with pytest.raises(ValueError, match="alpha: expected a number > 0"):
        S.eigenscore(e, alpha=0.0)
    with pytest.raises(ValueError, match=r"clouds\[0\]\[1\]: expected D=4"):
        S.barycentric_transport([[randn(2, 4), randn(2, 5)]])
    with pytest.raises(ValueError, match=r"clouds\[0\]\[0\]: expected 2 dims"):
        S.barycentric_transport([[randn(4)]])
    with pytest.raises(ValueError, match="clouds: expected B lists"):
        S.barycentric_transport(randn(2, 3, 4))
    with pytest.raises(ValueError, match="support_size: expected an int >= 1"):
        S.barycentric_transport([[randn(2, 4)]], support_size=0)
    with pytest.raises(ValueError, match=r"weights\[0\]: expected 2 values"):
        S.barycentric_transport([[randn(2, 4), randn(1, 4)]], [[1.0]])
    with pytest.raises(ValueError, match="embeddings: expected a torch tensor or numpy array"):
        S.cosine_dispersion("not a tensor")


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_reward_dispersion_is_exactly_zero_for_every_constant_group(dtype: torch.dtype) -> None:
    """A mean computed as sum(r / G) leaves round-off (e.g. 1.19e-7 at G = 10 in float32): a
    constant group then looked active. Every constant group must give exactly 0."""
    values = torch.linspace(0.0, 1.0, 101, dtype=dtype)
    for g in range(2, 65):
        r = values.unsqueeze(1).expand(-1, g)
        assert bool((S.reward_dispersion(r) == 0).all()), g
        # one member off by one ulp is a different group: RD > 0
        bumped = r.clone()
        bumped[:, -1] = torch.nextafter(bumped[:, -1], torch.full_like(bumped[:, -1], 2.0))
        assert bool((S.reward_dispersion(bumped) > 0).all()), g
    # masked members do not count; a single valid member or none gives 0
    r = torch.tensor([[0.3, 0.3, 0.9], [0.7, 0.1, 0.2], [0.5, 0.4, 0.1]], dtype=dtype)
    mask = torch.tensor([[True, True, False], [True, False, False], [False, False, False]])
    assert S.reward_dispersion(r, mask).tolist() == [0.0, 0.0, 0.0]


def test_reward_dispersion_uses_only_valid_members() -> None:
    r = torch.tensor([[1.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[True, True, False, False]])  # two unscorable completions
    assert S.reward_dispersion(r, mask).item() == pytest.approx(0.5)
