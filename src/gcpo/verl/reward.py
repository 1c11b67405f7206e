"""gcpo's math reward as a verl custom reward function.

``reward.custom_reward_function.path=<this file>`` (``name`` defaults to ``compute_score``) makes
verl score completions exactly as ``gcpo train`` does: :func:`gcpo.tasks.math_reward`, the final
answer checked against the ground truth by canonical key, then by ``math-verify`` under a hard
time limit. The recipe ``configs/recipes/verl/qwen2.5-math-1.5b-math.sh`` uses it.
"""

from __future__ import annotations

from typing import Any

from gcpo.tasks import math_reward

__all__ = ["compute_score"]


def compute_score(
    data_source: str, solution_str: str, ground_truth: str, extra_info: Any = None, **kwargs: Any
) -> float:
    """1.0 when ``solution_str``'s final answer equals ``ground_truth``, else 0.0."""
    return math_reward(solution_str, str(ground_truth))
