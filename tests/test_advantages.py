"""gcpo.advantages against TRL 1.16's own advantage code, plus GCPO weighting and bad input.

TRL computes GRPO advantages inline in ``GRPOTrainer._generate_and_score_completions`` (no separate
function). The reference below takes that method's *installed source*, cuts out the advantage block
(from the group-mean line to the ``nan_to_num`` line) and executes it with TRL's own ``nanstd`` --
so the comparison is with TRL's code, not a copy of it, and breaks loudly if TRL changes.
"""

from __future__ import annotations

import inspect
import textwrap
from types import SimpleNamespace

import pytest
import torch

from gcpo.advantages import gcpo_advantages, grpo_advantages, weight_advantages


def _trl_advantage_block() -> str:
    from trl import GRPOTrainer

    src = inspect.getsource(GRPOTrainer._generate_and_score_completions).splitlines()
    start = next(
        i
        for i, line in enumerate(src)
        if "mean_grouped_rewards = torch.nanmean(rewards.view" in line
    )
    stop = next(i for i in range(start, len(src)) if "is_std_zero = torch.isclose" in src[i])
    nan_line = next(
        line for line in src[stop:] if "advantages = torch.nan_to_num(advantages" in line
    )
    block = textwrap.dedent("\n".join(src[start : stop + 1]))
    return block + "\n" + nan_line.strip() + "\n"


@pytest.fixture(scope="module")
def trl_advantages():
    pytest.importorskip("trl")
    from trl.trainer.utils import nanstd

    code = compile(_trl_advantage_block(), "<trl GRPOTrainer advantage block>", "exec")

    def run(rewards: torch.Tensor, scale: str, mask: torch.Tensor | None = None) -> torch.Tensor:
        bsz, g = rewards.shape
        flat = rewards.clone().reshape(-1)
        if mask is not None:
            flat[~mask.reshape(-1)] = torch.nan  # TRL's unscorable completions
        ns = {
            "torch": torch,
            "nanstd": nanstd,
            "self": SimpleNamespace(scale_rewards=scale),
            "rewards": flat,
            "num_generations": g,
        }
        exec(code, ns)
        return ns["advantages"].view(bsz, g)

    return run


def _cases() -> list[tuple[torch.Tensor, torch.Tensor | None]]:
    gen = torch.Generator().manual_seed(0)
    binary = torch.randint(0, 2, (16, 8), generator=gen).float()  # many ties, zero-std groups
    binary[0] = 1.0
    binary[1] = 0.0
    cont = torch.rand(8, 6, generator=gen)
    cont[2, 3] = cont[2, 4]  # a tie
    mask = torch.rand(16, 8, generator=gen) > 0.3
    mask[3] = False  # all masked
    mask[4] = False
    mask[4, 2] = True  # a single valid member
    return [
        (binary, None),
        (cont, None),
        (cont.double(), None),
        (binary, mask),
        (torch.rand(5, 1, generator=gen), None),  # G = 1
        (torch.rand(1, 1, generator=gen), None),  # a single reward in the batch
    ]


@pytest.mark.parametrize("scale", ["group", "batch", "none"])
def test_grpo_advantages_equal_trl(trl_advantages, scale: str) -> None:
    for rewards, mask in _cases():
        ours = grpo_advantages(rewards, scale=scale, mask=mask)
        ref = trl_advantages(rewards, scale, mask)
        assert ours.dtype == rewards.dtype
        assert torch.equal(ours, ref), (scale, rewards.shape, mask is not None)
        assert bool(torch.isfinite(ours).all())


def test_grpo_advantages_properties() -> None:
    gen = torch.Generator().manual_seed(1)
    r = torch.rand(6, 8, generator=gen, dtype=torch.float64)
    adv = grpo_advantages(r)
    assert torch.allclose(adv.mean(dim=1), torch.zeros(6, dtype=torch.float64), atol=1e-12)
    # Bessel-corrected std, eps 1e-4
    expected = (r - r.mean(1, keepdim=True)) / (r.std(1, keepdim=True) + 1e-4)
    assert torch.allclose(adv, expected, atol=1e-12)
    perm = torch.randperm(8, generator=gen)
    assert torch.allclose(grpo_advantages(r[:, perm]), adv[:, perm], atol=1e-12)
    # masked entries are 0 and do not affect the others
    mask = torch.ones(6, 8, dtype=torch.bool)
    mask[:, 6:] = False
    masked = grpo_advantages(r, mask=mask)
    assert bool((masked[:, 6:] == 0).all())
    assert torch.allclose(masked[:, :6], grpo_advantages(r[:, :6]), atol=1e-12)
    # constant groups -> 0
    assert grpo_advantages(torch.ones(2, 4)).abs().sum().item() == 0.0
    # numpy accepted
    assert torch.allclose(grpo_advantages(r.numpy()), adv)


def test_gcpo_advantages_scale_each_group() -> None:
    gen = torch.Generator().manual_seed(2)
    r = torch.rand(4, 5, generator=gen)
    w = torch.tensor([0.0, 0.5, 1.0, 2.0])
    for scale in ("group", "batch", "none"):
        out = gcpo_advantages(r, w, scale=scale)
        assert torch.allclose(out, w.unsqueeze(1) * grpo_advantages(r, scale=scale))
    assert torch.equal(gcpo_advantages(r, torch.ones(4)), grpo_advantages(r))


def test_weight_advantages_per_completion_and_per_token_layouts_agree() -> None:
    # the layouts the trainers hand it: TRL [N] per completion, verl [N, T] per token
    gen = torch.Generator().manual_seed(3)
    r = torch.rand(3, 4, generator=gen)
    w = torch.tensor([0.25, 1.0, 1.75], dtype=torch.float64)
    grouped = gcpo_advantages(r, w)
    flat = weight_advantages(grpo_advantages(r).reshape(-1), w.repeat_interleave(4))
    assert torch.equal(flat, grouped.reshape(-1))
    per_token = grpo_advantages(r).reshape(-1, 1).expand(-1, 5).to(torch.bfloat16)
    out = weight_advantages(per_token, w.repeat_interleave(4))
    assert out.dtype == torch.bfloat16 and out.shape == (12, 5)
    assert torch.equal(out[:, 0], out[:, 4])  # one weight per row, every token alike
    assert torch.equal(out[:, 0], (per_token[:, 0] * w.repeat_interleave(4).to(torch.bfloat16)))
    with pytest.raises(ValueError, match="weights: must be >= 0"):
        weight_advantages(per_token, -w.repeat_interleave(4))
    with pytest.raises(ValueError, match=r"weights: expected shape \(12,\)"):
        weight_advantages(per_token, w)


def test_bad_input() -> None:
    r = torch.rand(3, 4)
    with pytest.raises(ValueError, match="scale: got 'grp'"):
        grpo_advantages(r, scale="grp")
    with pytest.raises(ValueError, match="rewards: expected 2 dims"):
        grpo_advantages(torch.rand(12))
    bad = r.clone()
    bad[1, 1] = float("nan")
    with pytest.raises(ValueError, match="rewards: contains a non-finite value"):
        grpo_advantages(bad)
    with pytest.raises(ValueError, match=r"mask: expected shape \(3, 4\)"):
        grpo_advantages(r, mask=torch.ones(4, 3, dtype=torch.bool))
    with pytest.raises(ValueError, match="eps: expected a number >= 0"):
        grpo_advantages(r, eps=-1.0)
    with pytest.raises(ValueError, match=r"weights: expected shape \(3,\), got \(2,\)"):
        gcpo_advantages(r, torch.ones(2))
    with pytest.raises(ValueError, match="weights: must be >= 0"):
        gcpo_advantages(r, -torch.ones(3))
