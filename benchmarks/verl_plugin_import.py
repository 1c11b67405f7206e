"""What gcpo's ``verl.plugins`` entry point costs every verl process: ``import verl`` loads it in
the driver, every Ray worker and every rollout server.

Run in the verl environment::

    .venv-verl/bin/python benchmarks/verl_plugin_import.py [--repeats 3]

Each repeat runs a fresh process that imports verl with its plugin loading switched off
(``VERL_USE_EXTERNAL_PLUGINS=none``), timing it, and then imports ``gcpo.verl.plugin`` exactly as
verl's loop would, timing that: the marginal cost of gcpo's entry point in a process where verl
is already loaded. (``python -X importtime`` cannot show it: verl loads entry points with
``importlib.import_module``, which that option does not time.) It also lists which gcpo modules
were loaded: only the plugin and its two parent packages may be (the trainer is registered when
``verl.trainer.ppo.v1`` is imported, which only the process that builds a trainer does).
"""

from __future__ import annotations

import argparse
import ast
import statistics
import subprocess
import sys

CODE = """
import os, sys, time
os.environ["VERL_USE_EXTERNAL_PLUGINS"] = "none"
t = time.perf_counter()
import verl
t_verl = time.perf_counter() - t
t = time.perf_counter()
import gcpo.verl.plugin
t_gcpo = time.perf_counter() - t
print(t_gcpo, t_verl, sorted(m for m in sys.modules if m.startswith("gcpo")))
"""


def one_run() -> tuple[float, float, list[str]]:
    out = subprocess.run([sys.executable, "-c", CODE], capture_output=True, text=True, check=True)
    g, v, loaded = out.stdout.strip().splitlines()[-1].split(" ", 2)
    return float(g), float(v), ast.literal_eval(loaded)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
    runs = [one_run() for _ in range(args.repeats)]
    g = statistics.median(r[0] for r in runs)
    v = statistics.median(r[1] for r in runs)
    print(f"import verl (fresh process, median of {args.repeats}): {v:.2f} s")
    print(f"  gcpo's entry point on top of it: {g * 1000:.1f} ms ({g / v:.4f} x import verl)")
    print(f"  gcpo modules loaded: {runs[-1][2]}")


if __name__ == "__main__":
    main()
