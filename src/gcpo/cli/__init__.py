"""The ``gcpo`` command: one entry point, one subcommand per job.

Each subcommand lives in its own module ``gcpo.cli.<name>`` exposing ``HELP`` (one line),
``add_arguments(parser)`` and ``run(args) -> int``; its flags, YAML file and ``KEY=VALUE``
overrides come from its config dataclass through :class:`gcpo.cli.binding.Binding`. Modules keep
model / trainer imports inside ``run``. Errors that describe bad input are printed as one line
(no traceback) with the exit code of :data:`EXIT_CODES`, the one place they are mapped.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from types import ModuleType

from gcpo.fields import ConfigError
from gcpo.io import DataError
from gcpo.rewards import RewardError

# exception -> (exit code, what the one-line message calls it); the first match wins
EXIT_CODES: tuple[tuple[type[BaseException], int, str], ...] = (
    (ConfigError, 2, "configuration error"),
    (DataError, 2, "data error"),
    (RewardError, 2, "reward error"),
    (MemoryError, 3, "out of memory"),
    (KeyboardInterrupt, 130, "interrupted"),
)
# what to do about it, added to the message unless it already says so
_HINTS = {
    MemoryError: ("embedder.batch_size", "lower embedder.batch_size=N (--embedder-batch-size)")
}


def subcommands() -> dict[str, ModuleType]:
    """The subcommand modules by name, in the order ``gcpo --help`` lists them (cheap to import:
    each keeps its model / trainer imports inside ``run``)."""
    from gcpo.cli import analyze, compare, eval, signals, train

    return {m.__name__.rpartition(".")[2]: m for m in (train, eval, signals, analyze, compare)}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="gcpo",
        description="Geometry-aware Calibrated Policy Optimization for LLM post-training.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, module in subcommands().items():
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
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


def main(argv: Sequence[str] | None = None) -> int:
    tokens = list(sys.argv[1:] if argv is None else argv)
    if {"-h", "--help"} & set(tokens):  # import --plugin first: the help lists what it registers
        from gcpo.plugins import load_plugins

        pre = argparse.ArgumentParser(add_help=False)
        pre.add_argument("--plugin", action="append", default=[])
        try:
            load_plugins(pre.parse_known_args(tokens)[0].plugin)
        except ConfigError as exc:
            print(f"gcpo: {exc}", file=sys.stderr)
            return 2
    parser = build_parser()
    args = parse_args(parser, argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 2
    handled = tuple(exc for exc, _, _ in EXIT_CODES)
    try:
        return int(args._run(args) or 0)
    except handled as exc:
        code, label = next((c, lab) for e, c, lab in EXIT_CODES if isinstance(exc, e))
        message = " ".join(str(exc).split())  # one line, whatever the exception held
        for kind, (said, hint) in _HINTS.items():
            if isinstance(exc, kind) and said not in message:
                message = f"{message}; {hint}" if message else hint
        print(
            f"gcpo {args.command}: {label}" + (f": {message}" if message else ""), file=sys.stderr
        )
        return code


if __name__ == "__main__":
    sys.exit(main())
