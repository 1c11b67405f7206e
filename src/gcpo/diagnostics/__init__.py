"""Diagnostics: does an uncertainty signal track per-prompt policy-gradient noise?

``gradients`` computes per-completion policy gradients on a parameter subset, ``projection`` a
seeded CountSketch that keeps them memory-bounded, ``stats`` the per-group gradient variance /
noise-to-signal ratio and the rank correlations, ``analyze`` the end-to-end pipeline behind
``gcpo analyze``.
"""

from gcpo.diagnostics.projection import CountSketch
from gcpo.diagnostics.stats import (
    Correlation,
    GradientNoise,
    bootstrap_ci,
    correlate,
    gradient_noise,
    partial_spearman,
    spearman,
)

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
