#!/usr/bin/env bash
# GCPO in verl: Qwen2.5-Math-1.5B on MATH, FSDP actor, vLLM rollout, one node of 8 GPUs.
# Written and config-checked only: tests/test_verl_trainer.py composes these overrides with
# verl 0.9.1's own config and builds the gcpo trainer from it on CPU; no GPU ran it here.
#
#   pip install "gcpo[verl]" "verl[vllm]==0.9.1"      # verl's GPU stack (torch 2.11, vLLM 0.24)
#   python configs/recipes/verl/prepare_math.py --out ~/data/math
#   bash configs/recipes/verl/qwen2.5-math-1.5b-math.sh [more hydra overrides]
#
# The primary config is gcpo's gcpo_trainer.yaml (verl's ppo_trainer + trainer_mode=gcpo and
# every trainer.v1.gcpo.* setting, so no "+" prefixes); the trainer.v1.gcpo.* lines choose the
# preset and the embedder (static-minilm: fast, in verl's TaskRunner on CPU). Extra arguments
# are passed on, e.g. trainer.v1.gcpo.preset=gcpo-bot.
#
# Several nodes: NNODES=N with a Ray cluster already running (ray start --head on the first
# node, ray start --address=HEAD:6379 on the others), launched on the head node; see
# qwen2.5-math-7b-math-multinode.sh.
set -euo pipefail
DATA_DIR="${DATA_DIR:-$HOME/data/math}"
MODEL="${MODEL:-Qwen/Qwen2.5-Math-1.5B}"
NGPUS="${NGPUS:-8}"
NNODES="${NNODES:-1}"
TP="${TP:-1}"
EXPERIMENT="${EXPERIMENT:-gcpo-qwen2.5-math-1.5b-math}"
PYTHON="${PYTHON:-python3}"
REWARD_FILE="$("$PYTHON" -c 'import gcpo.verl.reward as r; print(r.__file__)')"
CONFIG_DIR="$("$PYTHON" -c 'import gcpo.verl as v; print(v.CONFIG_DIR)')"

OVERRIDES=(
    algorithm.adv_estimator=grpo
    algorithm.use_kl_in_reward=false
    trainer.v1.trainer_mode=gcpo
    trainer.v1.gcpo.preset=gcpo
    trainer.v1.gcpo.embedder=static-minilm
    "trainer.v1.gcpo.extra_signals=[se]"
    data.train_files="$DATA_DIR/train.parquet"
    data.val_files="$DATA_DIR/test.parquet"
    data.train_batch_size=256
    data.max_prompt_length=1024
    data.max_response_length=3072
    data.filter_overlong_prompts=true
    data.truncation=error
    reward.custom_reward_function.path="$REWARD_FILE"
    reward.custom_reward_function.name=compute_score
    actor_rollout_ref.model.path="$MODEL"
    actor_rollout_ref.model.use_remove_padding=true
    actor_rollout_ref.model.enable_gradient_checkpointing=true
    actor_rollout_ref.actor.strategy=fsdp2
    actor_rollout_ref.actor.optim.lr=1e-6
    actor_rollout_ref.actor.ppo_mini_batch_size=64
    actor_rollout_ref.actor.use_dynamic_bsz=true
    actor_rollout_ref.actor.ppo_max_token_len_per_gpu=16384
    actor_rollout_ref.actor.use_kl_loss=false
    actor_rollout_ref.actor.entropy_coeff=0
    actor_rollout_ref.actor.loss_agg_mode=token-mean
    actor_rollout_ref.rollout.name=vllm
    actor_rollout_ref.rollout.n=8
    actor_rollout_ref.rollout.temperature=1.0
    actor_rollout_ref.rollout.tensor_model_parallel_size="$TP"
    actor_rollout_ref.rollout.gpu_memory_utilization=0.6
    trainer.n_gpus_per_node="$NGPUS"
    trainer.nnodes="$NNODES"
    trainer.total_epochs=10
    trainer.total_training_steps=500
    trainer.save_freq=50
    trainer.test_freq=25
    trainer.val_before_train=true
    "trainer.logger=[console,tensorboard]"
    trainer.project_name=gcpo
    trainer.experiment_name="$EXPERIMENT"
    trainer.default_local_dir="checkpoints/$EXPERIMENT"
)
if [ "$NNODES" -gt 1 ]; then
    OVERRIDES+=(+ray_kwargs.ray_init.address=auto)  # join the running cluster
fi

EXTRA=()
PRINT=0
for arg in "$@"; do
    if [ "$arg" = "--print-overrides" ]; then PRINT=1; else EXTRA+=("$arg"); fi
done
if [ "$PRINT" = 1 ]; then  # the overrides (the tests compose them with verl's config)
    printf '%s\n' "${OVERRIDES[@]}" "${EXTRA[@]}"
    exit 0
fi
exec "$PYTHON" -m verl.trainer.main_ppo --config-path="$CONFIG_DIR" --config-name=gcpo_trainer \
    "${OVERRIDES[@]}" "${EXTRA[@]}"
