#!/usr/bin/env bash
# The verl tests, in an environment pip resolved: gcpo[verl] installed the way docs/scaling.md
# tells users to (with the CPU torch wheel), so a broken resolution of gcpo's verl extra fails
# here. Builds .venv-verl on first use and reuses it while pyproject.toml and this file are
# unchanged. GCPO_REQUIRE_VERL=1 makes a missing verl an error instead of a skip, so these
# tests cannot silently not run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VERL_VENV:-.venv-verl}"
STAMP="$VENV/.gcpo-verl-stamp"
WANT="$(sha256sum pyproject.toml .ci/verl.sh | sha256sum | cut -c1-16)"
start=$(date +%s)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    # docs/scaling.md: pip install "gcpo[verl]" (here from this checkout, editable, which also
    # installs the verl.plugins entry point); torch==2.13.0 takes the CPU wheel.
    "$VENV/bin/pip" install -q torch==2.13.0 -e ".[verl]" "pytest>=8,<10" "pytest-timeout>=2.3,<3"
    echo "$WANT" > "$STAMP"
fi
# What pip resolved must be what verl can run with: hydra-core >= 1.3, omegaconf >= 2.3, and
# verl's own imports and config (tests/test_verl_trainer.py composes verl's Hydra config).
"$VENV/bin/pip" check
"$VENV/bin/python" - <<'PY'
from importlib.metadata import version
from packaging.version import Version

for name, floor in (("hydra-core", "1.3"), ("omegaconf", "2.3")):
    got = version(name)
    if Version(got) < Version(floor):
        raise SystemExit(f"verl environment: {name} {got} < {floor}; verl cannot import with it")
print("verl environment:", ", ".join(
    f"{n} {version(n)}" for n in ("verl", "torch", "transformers", "hydra-core", "omegaconf",
                                   "TransferQueue", "gcpo")))
PY
echo "verl environment ready in $(( $(date +%s) - start )) s"
GCPO_REQUIRE_VERL=1 OMP_NUM_THREADS=1 "$VENV/bin/python" -m pytest -q -ra -p no:cacheprovider \
    tests/test_verl.py tests/test_verl_trainer.py
echo "verl CI total $(( $(date +%s) - start )) s"
