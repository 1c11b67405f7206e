"""``gcpo compare``: train presets x seeds on one base config, then a table and a learning-curve plot.

Examples::

    gcpo compare arithmetic                      # configs/compare/arithmetic.yaml (~90 min, 2 CPUs)
    gcpo compare arithmetic --status             # what is done, what a rerun resumes
    gcpo compare my.yaml presets=[grpo,gcpo] seeds=[0,1] train.max_steps=20
    gcpo compare arithmetic --table-only         # rebuild table.md / curves.png from results

Rerunning the same command resumes a killed comparison (see docs/compare.md).
"""

from __future__ import annotations

import argparse
import json

HELP = "train weighting presets x seeds on the same data and compare held-out learning curves"

_EPILOG_HEAD = """Config fields (in the YAML file or as KEY=VALUE, e.g. presets=[grpo,gcpo] seeds=[0,1]
train.max_steps=20):
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gcpo.compare import CompareConfig
    from gcpo.fields import help_lines

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG_HEAD + "\n".join("  " + ln for ln in help_lines(CompareConfig))
    parser.add_argument(
        "config",
        nargs="?",
        default=None,
        help="comparison YAML (a file, or a name in configs/compare such as 'arithmetic'); "
        "default: CompareConfig defaults",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config field overrides")
    parser.add_argument("--results", help="compact results directory (overrides 'results')")
    parser.add_argument("--runs", help="heavy run directories (overrides 'runs')")
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
    from gcpo.compare import load_compare_config, plan_runs, run_comparison

    overrides = list(args.overrides)
    config = args.config
    if config is not None and "=" in config:
        overrides.insert(0, config)
        config = None
    if args.results:
        overrides.append(f"results={json.dumps(args.results)}")
    if args.runs:
        overrides.append(f"runs={json.dumps(args.runs)}")
    c = load_compare_config(config, overrides)
    if args.status:
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
