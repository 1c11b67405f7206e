"""Diagnostics: does an uncertainty signal track per-prompt policy-gradient noise?

``stats`` computes the per-group gradient variance / noise-to-signal ratio and the rank
correlations, ``analyze`` is the end-to-end pipeline behind ``gcpo analyze``; the per-completion
policy gradients and their seeded CountSketch come from :mod:`gcpo.gradients`, shared with the
trainer.
"""

from gcpo.diagnostics.stats import (
    Correlation,
    GradientNoise,
    bootstrap_ci,
    correlate,
    gradient_noise,
    partial_spearman,
    spearman,
)
from gcpo.gradients import CountSketch

__all__ = [
    "CountSketch",
    "Correlation",
    "GradientNoise",
    "bootstrap_ci",
    "correlate",
    "gradient_noise",
    "partial_spearman",
    "spearman",
]
