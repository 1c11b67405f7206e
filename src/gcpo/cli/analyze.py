"""``gcpo analyze``: correlate uncertainty signals with per-prompt policy-gradient noise.

Example::

    gcpo analyze --task arithmetic --prompts 64 --group-size 8 --output runs/analyze-arith
    gcpo analyze --benchmark math500 --prompts 32 --group-size 8 --max-new-tokens 256 \\
        --output runs/analyze-math500

Rerunning the same command resumes: groups already in ``OUTPUT/groups.jsonl`` are skipped.
"""

from __future__ import annotations

import argparse
import dataclasses

HELP = "measure whether uncertainty signals (SE, CD, BoT, ...) track per-prompt gradient variance"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gcpo.config import help_lines, to_dict
    from gcpo.diagnostics.analyze import AnalyzeConfig

    defaults = to_dict(AnalyzeConfig())
    helps = {line.split(" ", 1)[0]: line for line in help_lines(AnalyzeConfig)}
    parser.add_argument("--config", help="YAML file of AnalyzeConfig fields (flags override it)")
    for f in dataclasses.fields(AnalyzeConfig):
        flag = "--" + f.name.replace("_", "-")
        text = helps[f.name].split(": ", 1)[1] if ": " in helps[f.name] else f.name
        default = defaults[f.name]
        if default is not None:
            text += f" (default: {default})"
        text = text.replace("%", "%%")  # argparse formats help with %
        if f.name == "presets":
            parser.add_argument(flag, nargs="+", default=None, help=text)
        else:
            parser.add_argument(flag, default=None, help=text)
    parser.add_argument("--no-progress", action="store_true", help="disable the progress bar")
    parser.add_argument(
        "overrides", nargs="*", metavar="KEY=VALUE", help="config field overrides (as in gcpo train)"
    )


def run(args: argparse.Namespace) -> int:
    from gcpo.config import from_dict, load, to_dict
    from gcpo.diagnostics.analyze import AnalyzeConfig, run_analysis

    data = to_dict(load(AnalyzeConfig, args.config, args.overrides))
    for f in dataclasses.fields(AnalyzeConfig):
        value = getattr(args, f.name)
        if value is not None:  # flag values stay typed strings (a regex stays a regex)
            data[f.name] = value
    cfg = from_dict(AnalyzeConfig, data)
    result = run_analysis(cfg, progress=not args.no_progress)
    print((result.output / "correlations.md").read_text(encoding="utf-8"))
    print(
        f"wrote {result.output}/groups.csv, correlations.md/.csv, comparison.md/.csv, "
        "scatter_V.png, scatter_NSR.png"
    )
    return 0
