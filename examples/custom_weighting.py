"""A group-weighting method of your own, in gcpo: one new signal and one weight function.

Importing this module registers the signal ``answer_spread``; ``pass_rate_weight`` can be given
to ``GCPOTrainer(weighting=...)`` in place of a preset (in Python only: the CLI has no route for
a weight function). Use the signal from the CLI with, from the repository root,
``gcpo signals --plugin examples/custom_weighting.py --signals answer_spread -i examples/groups.jsonl``
(or ``--plugin custom_weighting`` with ``examples/`` on ``PYTHONPATH``), or from Python::

    from custom_weighting import pass_rate_weight
    trainer = GCPOTrainer(model=..., reward_funcs=[...], args=GRPOConfig(...),
                          train_dataset=..., weighting=pass_rate_weight,
                          extra_signals=["answer_spread", "cd"])
"""

from __future__ import annotations

import torch

from gcpo.scoring import Groups
from gcpo.signals import register_signal, reward_dispersion


@register_signal(
    "answer_spread",
    needs=("clusters",),
    bound=1.0,
    description="fraction of the group's completions that start a new answer cluster",
)
def answer_spread(clusters: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(number of distinct answers - 1) / (G - 1) over valid completions: 0 = all agree."""
    same = (clusters.unsqueeze(2) == clusters.unsqueeze(1)) & mask.unsqueeze(1) & mask.unsqueeze(2)
    first = ~torch.tril(same, diagonal=-1).any(dim=2) & mask  # first member of its cluster
    n = mask.sum(dim=1)
    return ((first.sum(dim=1) - 1).clamp(min=0) / (n - 1).clamp(min=1)).float()


def pass_rate_weight(groups: Groups, state: dict) -> torch.Tensor:
    """Weight each group by how close its pass rate p is to 1/2: 4 p (1 - p), floored at 0.1,
    renormalised to mean 1 over the groups that carry signal. ``state`` counts the batches."""
    valid = groups.mask.float()
    p = (groups.rewards * valid).sum(dim=1) / valid.sum(dim=1).clamp(min=1)
    w = (4 * p * (1 - p)).clamp(min=0.1)
    active = reward_dispersion(groups.rewards, groups.mask) > 0
    if active.any():
        w = torch.where(active, w / w[active].mean(), w)
    state["batches"] = state.get("batches", 0) + 1
    return w
