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
uncertainty is ranked among all groups of the file. The weighting is the preset, then the
``weighting`` fields of ``--config FILE`` (a ``SignalsConfig`` YAML; bare WeightingConfig fields
such as ``alpha: 0.5`` are accepted for ``weighting.alpha``), then ``KEY=VALUE`` overrides
(``alpha=0.5`` or ``weighting.alpha=0.5``).
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gcpo.embedders import EmbedderConfig
from gcpo.fields import ConfigError, coerce, field
from gcpo.presets import available_presets, merge_preset, preset
from gcpo.signals import signal_names
from gcpo.weighting import WeightingConfig

HELP = "score JSONL prompt groups: signals (SE, CD, BoT, RD, ...), calibrated uncertainty, weights"

DEFAULT_SIGNALS = "se,cd,bot"
_PROMPT_WIDTH = 40


@dataclass
class SignalsConfig:
    """Everything ``gcpo signals`` needs."""

    input: str = field("", help="JSONL of groups: prompt, completions, rewards, ...")
    preset: str = field("gcpo", help="weighting preset", names=available_presets)
    weighting: WeightingConfig = field(
        None, help="weighting fields over the preset's (WeightingConfig; alpha=... is short for "
        "weighting.alpha=...)",
    )  # fmt: skip
    signals: str = field(
        DEFAULT_SIGNALS,
        help="comma-separated signals (aliases or names) to report besides the preset's own and "
        "rd ('' for none)",
        names=signal_names,
    )
    output: str = field("", help="write per-group results to this .jsonl or .csv file")
    embedder: EmbedderConfig = field(
        default_factory=EmbedderConfig,
        help="sentence embedder ('embedder: NAME' sets embedder.name): all-MiniLM-L6-v2, "
        "static-minilm (fast static model distilled from it), 'hashing' (no model)",
    )
    skip_bad_rows: bool = field(
        False, help="skip (and count) malformed groups instead of stopping at the first one"
    )
    quiet: bool = field(False, help="do not print the table")

    config_prepare = staticmethod(merge_preset)
    # every WeightingConfig field may be given bare (alpha=0.5), as before SignalsConfig existed
    config_aliases: ClassVar[dict[str, str]] = {
        f.name: f"weighting.{f.name}" for f in dataclasses.fields(WeightingConfig)
    }

    def __post_init__(self) -> None:
        # built in Python (not from a file): the preset's weighting unless one is given whole;
        # a mapping overrides the preset's fields (from a file, merge_preset did it already)
        self.weighting = preset(self.preset, self.weighting)
        self.embedder = coerce(self.embedder, EmbedderConfig, "embedder")  # a name or mapping too
        if self.output and Path(self.output).suffix.lower() not in (".jsonl", ".csv"):
            raise ConfigError(
                f"output: got {self.output!r}, expected a file name ending in .jsonl or .csv"
            )


def binding() -> Any:
    from gcpo.cli.binding import Binding

    return Binding(
        SignalsConfig,
        aliases={"input": ("-i",), "output": ("-o",), "quiet": ("-q",)},
        extra_flags={
            "--embedder-batch-size": "embedder.batch_size",
            "--device": "embedder.device",
        },
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = (__doc__ or HELP).split("\n", 1)[1].replace("::", ":")
    binding().add_arguments(parser)


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
    from gcpo.io import DataError
    from gcpo.scoring import GroupScorer, resolve_signal_names

    conf: SignalsConfig = binding().load(args)
    config = conf.weighting
    if not conf.input:
        raise ConfigError("input: give the JSONL file of groups (--input FILE)")
    try:
        extra = resolve_signal_names(conf.signals or "")
    except ValueError as exc:  # the message already names the field
        raise ConfigError(str(exc)) from None
    groups, skipped, reasons = read_groups(conf.input, conf.skip_bad_rows)
    for reason in reasons[:5]:
        print(f"gcpo signals: skipped {reason}", file=sys.stderr)
    # signals that need absent inputs are dropped from the report with a note, not fatal
    missing = {"token_entropy": groups.token_entropy, "negative_log_likelihood": groups.logprobs}
    dropped = [n for n in extra if n in missing and missing[n] is None]
    extra = [n for n in extra if n not in dropped]
    scorer = GroupScorer(config, embedder=conf.embedder)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", UserWarning)  # reported below from result.notes
            result = scorer.score(groups, extra_signals=extra)
    except ValueError as exc:  # groups the scorer cannot score: a data problem, one line
        raise DataError(f"{conf.input}: {exc}") from None

    rows = result.rows()
    sizes = [int(g) for g in groups.group_sizes]
    records = [
        {"index": i, "prompt": p, "G": g, **row}
        for i, (p, g, row) in enumerate(zip(groups.prompts, sizes, rows, strict=True))
    ]
    if conf.output:
        write_results(conf.output, records)
    if not conf.quiet:
        print(format_table(groups.prompts, sizes, rows))
        print()
        window = (
            f"rank within this file's {groups.num_groups} groups"
            if config.normalization == "rank" and config.signal != "none"
            else config.normalization
        )
        print(
            f"preset {conf.preset}: signal={config.signal} normalization={window} "
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
    if conf.output:
        print(f"wrote {len(records)} groups to {conf.output}", file=sys.stderr)
    return 0
