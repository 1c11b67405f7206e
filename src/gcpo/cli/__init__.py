"""The ``gcpo`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module ``gcpo.cli.<name>`` exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``. Modules keep heavy imports (torch,
transformers, TRL) inside ``run`` so that ``gcpo --help`` and argument errors stay instant.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from gcpo.config import ConfigError
from gcpo.io import DataError

SUBCOMMANDS = ("train", "compare", "eval", "signals", "analyze")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gcpo",
        description="Geometry-aware Calibrated Policy Optimization for LLM post-training.",
    )
    plugin_help = (
        "import MODULE first (repeatable): a module that registers signals, tasks or weight "
        "functions; entry points of the 'gcpo.plugins' group are always loaded"
    )
    parser.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE", dest="plugins_top",
        help=plugin_help,
    )
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument(
        "--plugin", action="append", default=[], metavar="MODULE", dest="plugins",
        help=plugin_help,
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"gcpo.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"gcpo.cli.{name}":
                raise
            continue
        p = sub.add_parser(name, help=module.HELP, description=module.HELP, parents=[common])
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def parse_args(parser: argparse.ArgumentParser, argv: Sequence[str] | None) -> argparse.Namespace:
    """Parse, letting ``KEY=VALUE`` overrides stand anywhere among the flags.

    argparse stops filling a ``nargs="*"`` positional at the first flag, so
    ``gcpo train --check model=x`` would otherwise be "unrecognized arguments".
    """
    args, extra = parser.parse_known_args(argv)
    overrides = [tok for tok in extra if "=" in tok and not tok.startswith("-")]
    unknown = [tok for tok in extra if tok not in overrides]
    if overrides and isinstance(getattr(args, "overrides", None), list):
        args.overrides.extend(overrides)
    else:
        unknown = extra
    if unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    return args


def _user_errors() -> tuple[type[BaseException], ...]:
    """Errors that describe bad input or settings: printed as one line, no traceback."""
    errors: list[type[BaseException]] = [DataError]
    try:
        from gcpo.rewards import RewardError

        errors.append(RewardError)
    except ImportError:  # pragma: no cover - optional module
        pass
    return tuple(errors)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    try:
        from gcpo.plugins import load_plugins

        load_plugins([*args.plugins_top, *getattr(args, "plugins", [])])
        return int(args._run(args) or 0)
    except ConfigError as exc:
        print(f"gcpo {args.command}: configuration error: {exc}", file=sys.stderr)
        return 2
    except _user_errors() as exc:
        print(f"gcpo {args.command}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 2
    except MemoryError as exc:  # EmbedderMemoryError names the setting to lower
        print(f"gcpo {args.command}: out of memory: {exc}", file=sys.stderr)
        return 3
    except KeyboardInterrupt:
        print(f"gcpo {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
