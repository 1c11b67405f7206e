"""Tasks: rewards (math answers, QA scores), benchmark loaders and prompt templates."""

from gcpo.tasks.math import canonical_answer, extract_answer, math_reward, math_rewards
from gcpo.tasks.qa import qa_scores

__all__ = [
    "canonical_answer",
    "extract_answer",
    "math_reward",
    "math_rewards",
    "qa_scores",
]
