"""``gcpo eval``: evaluate a model on math and QA benchmarks (see gcpo.evaluation)."""

from __future__ import annotations

import argparse
import dataclasses
import sys

from gcpo.config import from_dict
from gcpo.io import DataError

HELP = "evaluate a model on math / QA benchmarks (pass@k, EM, F1, cover-EM)"

# CLI flag -> EvalConfig field; flags follow the spelling.
_FLAGS = {
    "model": ("--model", str),
    "benchmarks": ("--benchmarks", str),
    "samples": ("--samples", int),
    "limit": ("--limit", int),
    "max_new_tokens": ("--max-new-tokens", int),
    "temperature": ("--temperature", float),
    "top_p": ("--top-p", float),
    "batch_size": ("--batch-size", int),
    "max_context_tokens": ("--max-context-tokens", int),
    "data_dir": ("--data-dir", str),
    "output": ("--output", str),
    "seed": ("--seed", int),
    "dtype": ("--dtype", str),
    "device": ("--device", str),
    "math_timeout": ("--math-timeout", float),
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gcpo.evaluation import EvalConfig

    fields = {f.name: f for f in dataclasses.fields(EvalConfig)}
    for name, (flag, tp) in _FLAGS.items():
        f = fields[name]
        default = f.default_factory() if f.default_factory is not dataclasses.MISSING else f.default  # type: ignore[misc]
        if isinstance(default, list):
            default = ",".join(default)
        parser.add_argument(
            flag,
            dest=name,
            type=tp,
            default=None,
            help=f"{f.metadata['help']} (default: {default})",
        )
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def run(args: argparse.Namespace) -> int:
    from gcpo.evaluation import EvalConfig, run_evaluation

    values = {name: getattr(args, name) for name in _FLAGS if getattr(args, name) is not None}
    if args.no_progress:
        values["progress"] = False
    config = from_dict(EvalConfig, values)
    try:
        result = run_evaluation(config)
    except DataError as exc:
        print(f"gcpo eval: data error: {exc}", file=sys.stderr)
        return 2
    out = result["output"]
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
