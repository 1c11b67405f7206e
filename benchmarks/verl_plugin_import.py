"""What gcpo's ``verl.plugins`` entry point costs every verl process: ``import verl`` loads it in
the driver, every Ray worker and every rollout server.

Run in the verl environment::

    .venv-verl/bin/python benchmarks/verl_plugin_import.py [--repeats 3]

Each repeat runs ``python -X importtime -c "import verl"`` in a fresh process (gcpo installed,
so verl loads its entry point) and reads from Python's own import timings the cumulative time
of the modules gcpo's entry point imported (``gcpo``, ``gcpo.verl``, ``gcpo.verl.plugin`` and
anything they pulled in first), next to the cumulative time of ``import verl`` itself in the
same process. It also lists which gcpo modules were loaded: only the plugin and its two parent
packages may be (the trainer is registered when ``verl.trainer.ppo.v1`` is imported, which only
the process that builds a trainer does).
"""

from __future__ import annotations

import argparse
import ast
import re
import statistics
import subprocess
import sys

LINE = re.compile(r"import time:\s+(\d+)\s+\|\s+(\d+)\s+\|(\s*)(\S+)")


def one_run() -> tuple[float, float, list[str]]:
    code = "import sys, verl; print(sorted(m for m in sys.modules if m.startswith('gcpo')))"
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", code],
        capture_output=True,
        text=True,
        check=True,
    )
    rows = [m for m in (LINE.match(x) for x in out.stderr.splitlines()) if m]
    verl_us = next(int(m.group(2)) for m in rows if m.group(4) == "verl")
    gcpo = [m for m in rows if m.group(4).startswith("gcpo")]
    top = min(len(m.group(3)) for m in gcpo)  # the shallowest gcpo imports (the entry point's)
    gcpo_us = sum(int(m.group(2)) for m in gcpo if len(m.group(3)) == top)
    loaded = ast.literal_eval(out.stdout.strip().splitlines()[-1])
    return gcpo_us / 1e6, verl_us / 1e6, loaded


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs = [one_run() for _ in range(args.repeats)]
    g = statistics.median(r[0] for r in runs)
    v = statistics.median(r[1] for r in runs)
    print(f"import verl (fresh process, median of {args.repeats}): {v:.2f} s")
    print(f"  of which gcpo's entry point: {g * 1000:.1f} ms ({g / v:.4f} of it)")
    print(f"  gcpo modules loaded: {runs[-1][2]}")


if __name__ == "__main__":
    main()
