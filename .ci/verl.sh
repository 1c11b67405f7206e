#!/usr/bin/env bash
# The verl tests, in their own environment (verl pins transformers<5.11; gcpo's main
# environment has a newer one). Builds .venv-verl on first use and reuses it while
# .ci/verl-requirements.txt is unchanged. GCPO_REQUIRE_VERL=1 makes a missing verl an error
# instead of a skip, so these tests cannot silently not run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${VERL_VENV:-.venv-verl}"
STAMP="$VENV/.gcpo-verl-stamp"
WANT="$(sha256sum .ci/verl-requirements.txt .ci/verl.sh | sha256sum | cut -c1-16)"
start=$(date +%s)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install -q torch==2.13.0
    "$VENV/bin/pip" install -q --no-deps verl==0.9.1
    "$VENV/bin/pip" install -q -r .ci/verl-requirements.txt
    echo "$WANT" > "$STAMP"
fi
# gcpo itself, editable, without its TRL / sentence-transformers dependencies (not used here);
# this also installs the verl.plugins entry point the tests check.
"$VENV/bin/pip" install -q --no-deps -e .
echo "verl environment ready in $(( $(date +%s) - start )) s"
GCPO_REQUIRE_VERL=1 OMP_NUM_THREADS=1 "$VENV/bin/python" -m pytest -q -ra -p no:cacheprovider \
    tests/test_verl.py tests/test_verl_trainer.py
echo "verl CI total $(( $(date +%s) - start )) s"
