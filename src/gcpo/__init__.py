"""gcpo: Geometry-aware Calibrated Policy Optimization (arXiv 2605.21801).

The core (``gcpo.signals``, ``gcpo.weighting``, ``gcpo.advantages``) is pure tensor code with no
framework imports; adapters (``gcpo.trl``, ``gcpo.verl``) and the CLI build on it.
"""

__version__ = "0.1.0"
