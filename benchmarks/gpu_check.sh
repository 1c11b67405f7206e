#!/usr/bin/env bash
# The GPU checks the CPU test suite cannot make (about 5 minutes on one H100/H200-class GPU):
#   1. GCPOTrainer steps on CUDA in bf16, embedder on the GPU (MiniLM and static-minilm),
#      presets gcpo, gcpo-bot, seed-grpo: benchmarks/gpu_check.py (exits non-zero on a failure);
#   2. the signal-cost benchmark with the policy and the embedder on CUDA.
# Run from the repository root in gcpo's environment:  bash benchmarks/gpu_check.sh
# Not run in this repository's development (no GPU was available): see docs/scaling.md.
set -euo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-runs/gpu-check}"
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv | tee "$OUT/nvidia-smi.csv"
start=$(date +%s)
timeout 420 python benchmarks/gpu_check.py --output "$OUT" 2>&1 | tee "$OUT/gpu_check.log"
timeout 240 python benchmarks/signals.py --device cuda --groups 64 --gen-groups 2 \
    --max-new-tokens 256 2>&1 | tee "$OUT/signals_cuda.log"
echo "gpu_check.sh: done in $(( $(date +%s) - start )) s; logs in $OUT"
