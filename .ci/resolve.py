#!/usr/bin/env python3
"""Resolution matrix: can gcpo be installed into the environments its users train in?

Each scenario asks pip, against the public registry and with this machine's pip configuration
switched off (``PIP_CONFIG_FILE=/dev/null``: no local wheel folders, no constraints), what it
would install for gcpo next to a user's stack. Metadata only: ``--dry-run --report`` with
``--use-feature=fast-deps`` (the registry here serves no PEP 658 metadata, so without it pip
downloads whole wheels, GBs of CUDA builds). Nothing is installed.

Fails (exit 1) when a scenario is impossible (pip's ResolutionImpossible), when it resolves
hydra-core < 1.3 or omegaconf < 2.3 (pip backtracks to the 2019 releases when something pins
antlr4 4.13, and verl cannot import with them), or when TRL's ``[vllm]`` extra no longer spans
the vLLM versions the matrix pins as its lowest and highest.

Usage: python .ci/resolve.py [--jobs N] [--only NAME[,NAME]] [--keep DIR]
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# TRL 1.16's [vllm] extra: vllm>=0.22,<=0.31 (checked below against TRL's own metadata).
TRL_VLLM_LOWEST = "0.22.0"
TRL_VLLM_HIGHEST = "0.31.0"


@dataclass
class Scenario:
    name: str
    requirements: list[str]
    must_have: list[str] = field(default_factory=list)  # packages the resolution must contain
    show: list[str] = field(default_factory=list)  # versions to print


SCENARIOS = [
    Scenario(
        "gcpo[verl]",
        [".[verl]"],
        must_have=["verl", "hydra-core", "omegaconf", "transferqueue"],
        show=["torch", "transformers", "verl", "hydra-core", "omegaconf", "trl"],
    ),
    Scenario(
        "gcpo[verl] + verl[vllm]==0.9.1",
        [".[verl]", "verl[vllm]==0.9.1"],
        must_have=["verl", "vllm", "hydra-core", "omegaconf"],
        show=["torch", "transformers", "vllm", "verl", "hydra-core", "omegaconf"],
    ),
    Scenario(
        f"gcpo + trl[vllm]==1.16.0, lowest vLLM it allows ({TRL_VLLM_LOWEST})",
        [".", "trl[vllm]==1.16.0", f"vllm=={TRL_VLLM_LOWEST}"],
        must_have=["trl", "vllm"],
        show=["torch", "transformers", "vllm", "trl"],
    ),
    Scenario(
        f"gcpo + trl[vllm]==1.16.0, highest vLLM it allows ({TRL_VLLM_HIGHEST})",
        [".", "trl[vllm]==1.16.0", f"vllm=={TRL_VLLM_HIGHEST}"],
        must_have=["trl", "vllm"],
        show=["torch", "transformers", "vllm", "trl"],
    ),
    Scenario(
        "gcpo + the newest vLLM",
        [".", "vllm"],
        must_have=["vllm"],
        show=["torch", "transformers", "vllm", "trl"],
    ),
]

# A resolution must never fall back to these (verl needs hydra-core 1.3 / omegaconf 2.3).
FLOORS = {"hydra-core": (1, 3), "omegaconf": (2, 3)}


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _release(version: str) -> tuple[int, ...]:
    parts = []
    for p in version.split("+")[0].split("."):
        m = re.match(r"\d+", p)
        if not m:
            break
        parts.append(int(m.group()))
    return tuple(parts)


def _pip_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    for keep in ("PIP_CERT", "PIP_DEFAULT_TIMEOUT"):
        if keep in os.environ:
            env[keep] = os.environ[keep]
    return env


def resolve(s: Scenario, out_dir: Path) -> tuple[Scenario, dict[str, str] | None, str, float]:
    """Run pip's resolver for one scenario -> (scenario, {name: version} or None, log, seconds)."""
    report = out_dir / (re.sub(r"[^A-Za-z0-9]+", "_", s.name).strip("_") + ".json")
    cmd = [
        sys.executable, "-m", "pip", "install", "--dry-run", "--ignore-installed", "--quiet",
        "--use-feature=fast-deps", "--report", str(report), *s.requirements,
    ]  # fmt: skip
    t = time.perf_counter()
    proc = subprocess.run(
        cmd, cwd=ROOT, env=_pip_env(), capture_output=True, text=True, check=False
    )
    seconds = time.perf_counter() - t
    log = proc.stdout + proc.stderr
    if proc.returncode != 0 or not report.is_file():
        return s, None, log, seconds
    data = json.loads(report.read_text())
    versions: dict[str, str] = {}
    for item in data.get("install", []):
        md = item["metadata"]
        versions[_norm(md["name"])] = md["version"]
        if _norm(md["name"]) == "trl":  # TRL's own vllm requirement, for the span check
            reqs = [r for r in md.get("requires_dist", []) if re.match(r"vllm\b(?!-)", r)]
            versions["<trl requires vllm>"] = reqs[0] if reqs else ""
    return s, versions, log, seconds


def _check_trl_vllm_span(requirement: str) -> list[str]:
    """TRL's ``vllm`` requirement must admit exactly the lowest..highest the matrix pins."""
    from packaging.requirements import Requirement

    spec = Requirement(requirement.split(";")[0]).specifier if requirement else None
    lowest, highest = _release(TRL_VLLM_LOWEST), _release(TRL_VLLM_HIGHEST)
    below = f"{lowest[0]}.{lowest[1] - 1}.0"
    above = f"{highest[0]}.{highest[1] + 1}.0"
    if (
        spec is None
        or TRL_VLLM_LOWEST not in spec
        or TRL_VLLM_HIGHEST not in spec
        or below in spec
        or above in spec
    ):
        return [
            f"trl's vllm requirement is {requirement!r}, the matrix assumes "
            f"{TRL_VLLM_LOWEST}..{TRL_VLLM_HIGHEST}: update TRL_VLLM_LOWEST / TRL_VLLM_HIGHEST"
        ]
    return []


def check(s: Scenario, versions: dict[str, str]) -> list[str]:
    problems = []
    for name in s.must_have:
        if _norm(name) not in versions:
            problems.append(f"{name} is not in the resolution")
    for name, floor in FLOORS.items():
        v = versions.get(name)
        if v is not None and _release(v)[: len(floor)] < floor:
            want = ".".join(map(str, floor))
            problems.append(f"{name} resolved to {v} (< {want}: verl cannot import with it)")
    if any(r.startswith("trl[vllm]") for r in s.requirements):
        problems += _check_trl_vllm_span(versions.get("<trl requires vllm>", ""))
    return problems


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--jobs", type=int, default=5, help="resolutions run at once (default 5)")
    ap.add_argument("--only", default="", help="comma-separated substrings of scenario names")
    ap.add_argument("--keep", default="", help="write pip's JSON reports to this directory")
    args = ap.parse_args()
    chosen = [
        s for s in SCENARIOS if not args.only or any(k in s.name for k in args.only.split(","))
    ]
    if not chosen:
        print(f"resolve.py: --only {args.only!r} matches no scenario", file=sys.stderr)
        return 2
    start = time.perf_counter()
    failed = 0
    with tempfile.TemporaryDirectory() as tmp:
        out_dir = Path(args.keep) if args.keep else Path(tmp)
        out_dir.mkdir(parents=True, exist_ok=True)
        with concurrent.futures.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
            futures = [pool.submit(resolve, s, out_dir) for s in chosen]
            results = [f.result() for f in futures]
    for s, versions, log, seconds in results:
        if versions is None:
            failed += 1
            reason = "ResolutionImpossible" if "ResolutionImpossible" in log else "pip failed"
            print(f"FAIL  {s.name}: {reason} ({seconds:.0f} s)")
            tail = [ln for ln in log.splitlines() if ln.strip()][-15:]
            print("\n".join(f"      {ln}" for ln in tail))
            continue
        problems = check(s, versions)
        shown = ", ".join(f"{n} {versions.get(_norm(n), '-')}" for n in s.show)
        status = "FAIL" if problems else "ok  "
        n = sum(not k.startswith("<") for k in versions)
        print(f"{status}  {s.name}: {shown} ({n} packages, {seconds:.0f} s)")
        for p in problems:
            print(f"      {p}")
        failed += bool(problems)
    print(f"resolution matrix: {len(results) - failed}/{len(results)} ok in "
          f"{time.perf_counter() - start:.0f} s")  # fmt: skip
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
