"""``gcpo compare``: train presets x seeds on one base config, then a table and a learning-curve plot.

Examples::

    gcpo compare arithmetic                      # configs/compare/arithmetic.yaml (2 CPUs)
    gcpo compare arithmetic --status             # what is done, what a rerun resumes
    gcpo compare arithmetic --table-only --output docs/results/compare-arithmetic  # committed
    gcpo compare my.yaml --presets grpo,gcpo --seeds 0,1 train.max_steps=20
    gcpo compare arithmetic --table-only         # rebuild table.md / curves.png from results
    gcpo compare arithmetic --only gcpo          # one arm now (e.g. one arm per machine)

Rerunning the same command resumes a killed comparison (see docs/compare.md).
"""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "train weighting presets x seeds on the same data and compare held-out learning curves"


def binding() -> Any:
    from gcpo.cli.binding import Binding
    from gcpo.compare import CompareConfig

    return Binding(CompareConfig, positional_config=True, aliases={"results": ("--output",)})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    binding().add_arguments(parser)
    for action in parser._actions:  # the config positional: say where it is looked up
        if action.dest == "config":
            action.help = (
                "comparison YAML: a file, or a name in configs/compare such as 'arithmetic' "
                "(train fields go under 'train:', or as train.KEY=VALUE)"
            )
    parser.add_argument(
        "--status", action="store_true", help="print each run's state (done/resume/fresh) and exit"
    )
    parser.add_argument(
        "--table-only",
        action="store_true",
        help="train nothing; rebuild table.md/.csv and curves.png from the results directory",
    )
    parser.add_argument("--json", action="store_true", help="print the table rows as JSON")


def run(args: argparse.Namespace) -> int:
    from gcpo.compare import compare_config_path, plan_runs, run_comparison

    b = binding()
    c = b.load(args, path=compare_config_path(b.config_path(args)))
    if args.status:
        print(f"results {c.results} (finished runs: summary.json); runs {c.runs} (checkpoints)")
        for s in plan_runs(c):
            where = f" from {s.checkpoint}" if s.checkpoint else ""
            print(f"{s.name:24s} {s.state}{where}")
        return 0
    out = run_comparison(c, train=not args.table_only)
    if args.json:
        print(json.dumps(out["table"], indent=2))
    else:
        print()
        print(out["markdown"])
        for key, path in out["paths"].items():
            if path:
                print(f"  {key:10s} {path}")
    return 0
