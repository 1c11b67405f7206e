"""``gcpo signals``: score your own rollouts -- per-group signals, calibrated uncertainty, weights.

Input: a JSONL file, one prompt group per line::

    {"prompt": "...", "completions": ["...", "..."], "rewards": [1.0, 0.0],
     "logprobs": [-0.31, -0.52],        # optional: length-normalised log-likelihood per completion
     "answers": ["14", null],           # optional: final answer per completion (else extracted)
     "token_entropy": [0.8, 1.1]}       # optional: mean token entropy per completion

Examples::

    gcpo signals --input examples/groups.jsonl
    gcpo signals --input rollouts.jsonl --preset gcpo-bot --signals se,cd,bot,eig \\
        --output scores.csv alpha=0.5 calibration=snr

With ``rank`` normalisation (the gcpo presets) the window is this file's groups: each group's
uncertainty is ranked among all groups of the file.
"""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path
from typing import Any

HELP = "score JSONL prompt groups: signals (SE, CD, BoT, RD, ...), calibrated uncertainty, weights"

DEFAULT_SIGNALS = "se,cd,bot"
_PROMPT_WIDTH = 40


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (__doc__ or HELP).split("\n", 1)[1].replace("::", ":")
    parser.add_argument(
        "--input", "-i", required=True, help="JSONL of groups: prompt, completions, rewards, ..."
    )
    parser.add_argument(
        "--preset",
        default="gcpo",
        help="weighting preset: grpo, seed-grpo, seed-grpo-strong, gcpo, gcpo-bot (default: gcpo)",
    )
    parser.add_argument(
        "--config", help="YAML file of WeightingConfig fields, applied on top of the preset"
    )
    parser.add_argument(
        "--signals",
        default=DEFAULT_SIGNALS,
        help="comma-separated signals to report besides the preset's own and rd: se, cd, bot, "
        f"eig, te, nll or full names (default: {DEFAULT_SIGNALS}; '' for none)",
    )
    parser.add_argument(
        "--output", "-o", help="write per-group results to this .jsonl or .csv file"
    )
    parser.add_argument(
        "--embedder",
        default="all-MiniLM-L6-v2",
        help="sentence embedder: all-MiniLM-L6-v2 (default, offline), hashing (no model, for "
        "smoke tests), or a local sentence-transformers directory",
    )
    parser.add_argument(
        "--embedder-batch-size", type=int, default=64, help="texts per encoder pass (default 64)"
    )
    parser.add_argument(
        "--device", default="auto", help="embedder device: auto, cpu, cuda, ... (default auto)"
    )
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip (and count) malformed groups instead of stopping at the first one",
    )
    parser.add_argument("--quiet", "-q", action="store_true", help="do not print the table")
    parser.add_argument(
        "overrides",
        nargs="*",
        metavar="KEY=VALUE",
        help="WeightingConfig overrides, e.g. alpha=0.5 calibration=snr (see gcpo.weighting)",
    )


def load_weighting(preset_name: str, config_path: str | None, overrides: list[str]) -> Any:
    """WeightingConfig = preset, then the YAML file's fields, then KEY=VALUE overrides."""
    import yaml

    from gcpo.config import ConfigError, apply_overrides, from_dict, to_dict
    from gcpo.weighting import WeightingConfig, available_presets, preset

    if preset_name not in available_presets():
        raise ConfigError(f"preset: got {preset_name!r}, allowed: {', '.join(available_presets())}")
    data = to_dict(preset(preset_name))
    if config_path is not None:
        p = Path(config_path)
        if not p.is_file():
            raise ConfigError(f"config file {str(p)!r} does not exist")
        try:
            loaded = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except (yaml.YAMLError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {str(p)!r} is not valid YAML: {exc}") from None
        if not isinstance(loaded, dict):
            raise ConfigError(f"config file {str(p)!r}: top level must be a mapping")
        data.update(loaded)
    return from_dict(WeightingConfig, apply_overrides(data, overrides))


def _line_numbers(path: Path) -> list[int]:
    """1-based numbers of the non-blank lines (the rows read_jsonl returns when none is bad)."""
    with path.open("rb") as fh:
        return [n for n, raw in enumerate(fh, start=1) if raw.strip()]


def read_groups(path: str, skip_bad_rows: bool = False) -> tuple[Any, int, list[str]]:
    """Read and validate a groups JSONL file -> (Groups, skipped count, skip reasons).

    Raises ``gcpo.io.DataError`` naming the file and line of the first bad group.
    """
    from gcpo.io import DataError, JsonlReport, read_jsonl
    from gcpo.scoring import Groups

    report = JsonlReport()
    rows = read_jsonl(
        path,
        required=("prompt", "completions", "rewards"),
        skip_bad_rows=skip_bad_rows,
        report=report,
    )
    lines = _line_numbers(Path(path)) if report.skipped == 0 else None
    good = []
    for n, row in enumerate(rows):
        where = f"{path}:{lines[n]}" if lines else f"{path}: group {n + 1}"
        try:
            Groups.from_rows([row], source=where)
        except ValueError as exc:
            message = str(exc).replace(f"{where}: row 1: ", f"{where}: ")
            if not skip_bad_rows:
                raise DataError(message) from None
            report.skipped += 1
            report.reasons.append(message)
            continue
        good.append(row)
    if not good:
        raise DataError(f"{path}: no valid groups ({report.skipped} skipped)")
    return Groups.from_rows(good, source=path), report.skipped, report.reasons


def _fmt(x: float) -> str:
    return f"{x:.3f}"


def format_table(prompts: list[str], sizes: list[int], rows: list[dict[str, float]]) -> str:
    """Aligned text table: #, prompt (truncated), G, every value column."""
    keys = list(rows[0]) if rows else []
    header_names = {"u_normalized": "Un", "u_calibrated": "U~"}
    headers = ["#", "prompt", "G", *[header_names.get(k, k) for k in keys]]
    body = []
    for i, (prompt, g, row) in enumerate(zip(prompts, sizes, rows, strict=True)):
        flat = " ".join(prompt.split())
        if len(flat) > _PROMPT_WIDTH:
            flat = flat[: _PROMPT_WIDTH - 3] + "..."
        body.append([str(i), flat, str(g), *[_fmt(row[k]) for k in keys]])
    widths = [max(len(r[c]) for r in [headers, *body]) for c in range(len(headers))]
    left = {1}  # the prompt column reads better left-aligned

    def line(cells: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if j in left else c.rjust(w)
            for j, (c, w) in enumerate(zip(cells, widths, strict=True))
        ).rstrip()

    sep = "  ".join("-" * w for w in widths)
    return "\n".join([line(headers), sep, *(line(r) for r in body)])


def write_results(path: str, records: list[dict[str, Any]]) -> None:
    """Write per-group records as JSONL or CSV, chosen by the file extension."""
    import csv
    import io

    from gcpo.config import ConfigError
    from gcpo.io import atomic_write_text, write_jsonl

    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        write_jsonl(path, records)
    elif suffix == ".csv":
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(records[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(records)
        atomic_write_text(path, buf.getvalue())
    else:
        raise ConfigError(f"output: got {path!r}, expected a file name ending in .jsonl or .csv")


def run(args: argparse.Namespace) -> int:
    from gcpo.config import ConfigError
    from gcpo.embedders import EmbedderConfig
    from gcpo.io import DataError
    from gcpo.scoring import GroupScorer, resolve_signal_names

    config = load_weighting(args.preset, args.config, list(args.overrides))
    try:
        extra = resolve_signal_names(args.signals or "")
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    if args.output and Path(args.output).suffix.lower() not in (".jsonl", ".csv"):
        raise ConfigError(
            f"output: got {args.output!r}, expected a file name ending in .jsonl or .csv"
        )
    embedder = EmbedderConfig(
        name=args.embedder, batch_size=args.embedder_batch_size, device=args.device
    )
    try:
        groups, skipped, reasons = read_groups(args.input, args.skip_bad_rows)
    except DataError as exc:
        print(f"gcpo signals: {exc}", file=sys.stderr)
        return 2
    for reason in reasons[:5]:
        print(f"gcpo signals: skipped {reason}", file=sys.stderr)
    # signals that need absent inputs are dropped from the report with a note, not fatal
    missing = {"token_entropy": groups.token_entropy, "negative_log_likelihood": groups.logprobs}
    dropped = [n for n in extra if n in missing and missing[n] is None]
    extra = [n for n in extra if n not in dropped]
    scorer = GroupScorer(config, embedder=embedder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported below from result.notes
            result = scorer.score(groups, extra_signals=extra)
    except ValueError as exc:
        print(f"gcpo signals: {exc}", file=sys.stderr)
        return 2

    rows = result.rows()
    sizes = [int(g) for g in groups.group_sizes]
    records = [
        {"index": i, "prompt": p, "G": g, **row}
        for i, (p, g, row) in enumerate(zip(groups.prompts, sizes, rows, strict=True))
    ]
    if args.output:
        write_results(args.output, records)
    if not args.quiet:
        print(format_table(groups.prompts, sizes, rows))
        print()
        window = (
            f"rank within this file's {groups.num_groups} groups"
            if config.normalization == "rank" and config.signal != "none"
            else config.normalization
        )
        print(
            f"preset {args.preset}: signal={config.signal} normalization={window} "
            f"calibration={config.calibration} modulation={config.modulation} "
            f"alpha={config.alpha:g} renormalize={config.renormalize}"
        )
        t = result.timings
        print(
            f"time: embedding {t.get('embed_s', 0.0):.2f} s (includes loading the embedder), "
            f"signals {t.get('signals_s', 0.0):.2f} s"
        )
    for note in result.notes:
        print(f"gcpo signals: note: {note}", file=sys.stderr)
    for name in dropped:
        print(
            f"gcpo signals: note: {name} needs per-completion inputs this file lacks; not reported",
            file=sys.stderr,
        )
    if skipped:
        print(f"gcpo signals: skipped {skipped} bad group(s)", file=sys.stderr)
    if args.output:
        print(f"wrote {len(records)} groups to {args.output}", file=sys.stderr)
    return 0
