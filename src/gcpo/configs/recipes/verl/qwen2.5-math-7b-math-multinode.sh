#!/usr/bin/env bash
# The multi-node variant: GCPO in verl on Qwen2.5-Math-7B, 2 nodes x 8 GPUs, vLLM TP 2.
# Written and config-checked only (tests/test_verl_trainer.py composes these overrides with
# verl's config); no GPU ran it here.
#
# On every node: the same environment (pip install "gcpo[verl]" "verl[vllm]==0.9.1") and the
# data at the same DATA_DIR. Start Ray: `ray start --head --port=6379` on the first node,
# `ray start --address=<head-ip>:6379` on the others. Then, on the head node:
#
#   NNODES=2 bash configs/recipes/verl/qwen2.5-math-7b-math-multinode.sh [more overrides]
#
# The gcpo step runs once per step in verl's TaskRunner actor (CPU), whatever the node count.
set -euo pipefail
HERE="$(cd "$(dirname "$0")" && pwd)"
export MODEL="${MODEL:-Qwen/Qwen2.5-Math-7B}"
export NNODES="${NNODES:-2}"
export NGPUS="${NGPUS:-8}"
export TP="${TP:-2}"
export EXPERIMENT="${EXPERIMENT:-gcpo-qwen2.5-math-7b-math-${NNODES}nodes}"
exec bash "$HERE/qwen2.5-math-1.5b-math.sh" \
    data.train_batch_size=512 \
    actor_rollout_ref.actor.ppo_mini_batch_size=128 \
    actor_rollout_ref.actor.fsdp_config.param_offload=false \
    actor_rollout_ref.rollout.gpu_memory_utilization=0.7 \
    "$@"
