"""``gcpo analyze``: correlate uncertainty signals with per-prompt policy-gradient noise.

Example::

    gcpo analyze --task arithmetic --prompts 64 --group-size 8 --output runs/analyze-arith
    gcpo analyze --benchmark math500 --prompts 32 --group-size 8 --max-new-tokens 256 \\
        --output runs/analyze-math500

Rerunning the same command resumes: groups already in ``OUTPUT/groups.jsonl`` are skipped.
"""

from __future__ import annotations

import argparse
from typing import Any

HELP = "measure whether uncertainty signals (SE, CD, BoT, ...) track per-prompt gradient variance"


def binding() -> Any:
    from gcpo.cli.binding import Binding
    from gcpo.diagnostics.analyze import AnalyzeConfig

    return Binding(
        AnalyzeConfig,
        extra_flags={"--embedder-batch-size": "embedder.batch_size"},
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    binding().add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from gcpo.diagnostics.analyze import run_analysis

    cfg = binding().load(args)
    result = run_analysis(cfg, progress=cfg.progress)
    print((result.output / "correlations.md").read_text(encoding="utf-8"))
    print(
        f"wrote {result.output}/groups.csv, correlations.md/.csv, comparison.md/.csv, "
        "scatter_V.png, scatter_NSR.png"
    )
    return 0
