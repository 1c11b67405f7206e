"""``gcpo eval``: evaluate a model on math, QA and synthetic benchmarks (see gcpo.evaluation)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

HELP = "evaluate a model on math / QA benchmarks or a trained run's task (pass@k, EM, F1, ...)"


def binding() -> Any:
    from gcpo.cli.binding import Binding
    from gcpo.evaluation import EvalConfig

    return Binding(EvalConfig)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    binding().add_arguments(parser)


def run(args: argparse.Namespace) -> int:
    from gcpo.evaluation import run_evaluation

    result = run_evaluation(binding().load(args))
    out = result["output"]
    stale = result.get("replaced")
    if stale:
        print(
            f"gcpo eval: {stale['rows']} earlier generations in {out} were made another way "
            f"({stale['reason']}); generated them again (old rows: {stale['moved_to']})",
            file=sys.stderr,
        )
    with open(f"{out}/results.md", encoding="utf-8") as fh:
        print(fh.read(), end="")
    for bench, t in result["timing"].items():
        rate = t["items"] / t["seconds"] if t["seconds"] > 0 else float("inf")
        print(
            f"{bench}: {t['generations']} generations for {t['items']} items in "
            f"{t['seconds']:.1f}s ({rate:.2f} items/s)"
        )
    print(f"wrote {out}/generations.jsonl, results.md, results.csv, summary.json")
    return 0
