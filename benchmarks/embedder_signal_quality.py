"""Does a fast embedder's geometry track gradient noise as well as MiniLM's? No new generation.

Recomputes Cosine Dispersion and Barycentric Transport with another embedder (default the
static model distilled from the shipped MiniLM, `static-minilm`) on the completions of a
committed `gcpo analyze` run (default docs/results/analyze-graded: 580 prompts, G = 8, with
per-group gradient variance V and noise-to-signal ratio NSR) and reports, over the groups with
reward dispersion > 0, Spearman rho with V and NSR (bootstrap 95 % CI) and the partial rho given
RD and mean completion length, beside MiniLM's values from the same run's table.

    python benchmarks/embedder_signal_quality.py --embedder static-minilm \
        --output docs/results/analyze-graded/embedders.md
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

from gcpo.diagnostics.stats import correlate, spearman
from gcpo.presets import preset
from gcpo.scoring import Groups, GroupScorer

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--groups", type=Path, default=ROOT / "docs/results/analyze-graded/groups.jsonl")
    ap.add_argument("--embedder", default="static-minilm")
    ap.add_argument("--bootstrap", type=int, default=1000)
    ap.add_argument("--output", type=Path, default=None, help="write the table (markdown) here")
    args = ap.parse_args()

    rows = [json.loads(line) for line in args.groups.read_text(encoding="utf-8").splitlines() if line.strip()]
    rows = [r for r in rows if r["reward_dispersion"] > 0]
    groups = Groups.from_lists(
        [r["prompt_id"] for r in rows], [r["completions"] for r in rows], [r["rewards"] for r in rows]
    )
    scorer = GroupScorer(preset("gcpo"), embedder=args.embedder)
    t0 = time.perf_counter()
    fast = scorer.signals(groups, ["cd", "bot"])
    seconds = time.perf_counter() - t0
    rd = np.array([r["reward_dispersion"] for r in rows])
    length = np.array([r["mean_tokens"] for r in rows])
    targets = {"V": np.array([r["grad_variance"] for r in rows]), "NSR": np.array([r["grad_nsr"] for r in rows])}
    lines = [
        f"# Signal quality of `{args.embedder}` vs MiniLM on the committed groups",
        "",
        f"{len(rows)} groups with RD > 0 of `{args.groups.relative_to(ROOT) if args.groups.is_relative_to(ROOT) else args.groups}`; "
        f"MiniLM's CD/BoT are the run's own columns, `{args.embedder}`'s recomputed from the same "
        f"completions ({seconds:.1f} s for CD and BoT, including the one-off build or load of the model). "
        f"{args.bootstrap} bootstrap resamples. Made by `python benchmarks/embedder_signal_quality.py "
        f"--embedder {args.embedder} --output ...`.",
        "",
        "| signal | embedder | rho vs V [95 % CI] | given RD, length | rho vs NSR [95 % CI] | given RD, length | Spearman with MiniLM's value |",
        "|---|---|---|---|---|---|---:|",
    ]
    for short, name in (("cd", "cosine_dispersion"), ("bot", "barycentric_transport")):
        base = np.array([r[short] for r in rows])
        new = fast[name].double().numpy()
        for label, values in (("all-MiniLM-L6-v2", base), (args.embedder, new)):
            cells = []
            for key in ("V", "NSR"):
                c = correlate(values, targets[key], rd, second_covariate=length, n_resamples=args.bootstrap)
                cells.append(f"{c.rho:+.2f} [{c.ci_low:+.2f}, {c.ci_high:+.2f}]")
                cells.append(f"{c.partial2:+.2f} [{c.partial2_ci_low:+.2f}, {c.partial2_ci_high:+.2f}]")
            agree = 1.0 if label != args.embedder else spearman(base, new)
            lines.append(f"| {short.upper()} | {label} | " + " | ".join(cells) + f" | {agree:.2f} |")
            print(lines[-1], flush=True)
    if args.output is not None:
        args.output.write_text("\n".join(lines) + "\n", encoding="utf-8")
        print(f"wrote {args.output}")


if __name__ == "__main__":
    main()
