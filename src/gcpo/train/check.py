"""``gcpo train --check``: validate a config and its data without loading a model or training.

Everything that can be checked cheaply is: the config (types, ranges, presets, signals), the run
directory, every dataset row (bad rows named by file and line, or counted with
``skip_bad_rows``), the reward function (imported and called once on a few training rows with
their reference answers as completions, fail-fast), TRL's ``GRPOConfig`` and the batch
arithmetic. The policy and embedder are only located, not loaded.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gcpo.fields import ConfigError
from gcpo.io import JsonlReport
from gcpo.train.config import TrainConfig

__all__ = ["check_training"]


def _locate_model(name: str) -> str:
    from gcpo.models import TINY_RANDOM

    if name in (TINY_RANDOM, "smollm2-135m-instruct"):
        return f"{name} (built in)"
    p = Path(name)
    if p.exists():
        if not (p / "config.json").is_file():
            raise ConfigError(f"model: {name!r} is a path but holds no config.json")
        return f"{name} (local directory)"
    if name.startswith((".", "/", "~")):
        raise ConfigError(f"model: {name!r} does not exist")
    return f"{name} (Hugging Face id, not checked offline)"


def _locate_embedder(config: TrainConfig) -> str:
    from gcpo.scoring import GroupScorer

    name = config.embedder.name
    try:  # the signals' registered needs decide, plugins included
        geometric = GroupScorer(config.weighting).uses_embedder(list(config.extra_signals))
    except ValueError as exc:
        raise ConfigError(f"extra_signals: {exc}") from None
    if not geometric:
        return f"{name} (not used by this preset)"
    if name == "hashing":
        return "hashing (model-free)"
    from gcpo.embedders import (
        DEFAULT_EMBEDDER,
        default_model_path,
        is_static_embedder,
        static_model_path,
    )

    if name == DEFAULT_EMBEDDER:
        return f"{name} ({default_model_path()})"
    if is_static_embedder(name):
        path = static_model_path(build=False)
        built = "cached" if path.is_dir() else "distilled from MiniLM on first use, ~1 min"
        return f"{name} ({path}, {built})"
    if Path(name).exists():
        return f"{name} (local directory)"
    return f"{name} (Hugging Face id, not checked offline)"


def check_training(config: TrainConfig, *, run_dir: str | Path | None = None) -> dict[str, Any]:
    """Validate ``config`` and its data as ``gcpo train`` would, without a model.

    Returns a dict describing what would run. Raises ConfigError (config, run directory,
    reward import, batch sizes), DataError (a bad row) or RewardError (the reward function
    raised or returned non-numbers on real rows).
    """
    from gcpo.rewards import RewardStats, safe_reward
    from gcpo.train.data import build_data, load_reward
    from gcpo.train.run import fresh_run_dir, grpo_args

    out = fresh_run_dir(config, run_dir)
    report = JsonlReport()
    train_rows, heldout_rows = build_data(config, report=report)
    reward = load_reward(config)
    stats = RewardStats()
    probe = train_rows[: max(config.num_generations, 8)]
    checked = safe_reward(reward, fail_fast=True, stats=stats)
    extra = {k: [r.get(k) for r in probe] for k in probe[0] if k != "prompt"}
    checked(
        prompts=[r["prompt"] for r in probe],
        completions=[[{"role": "assistant", "content": str(r.get("answer", ""))}] for r in probe],
        **extra,
    )
    args = grpo_args(config, out, len(train_rows))
    w = config.weighting
    return {
        "run_dir": str(out),
        "model": _locate_model(config.model),
        "preset": config.preset,
        "weighting": f"signal={w.signal} normalization={w.normalization} "
        f"calibration={w.calibration} modulation={w.modulation} alpha={w.alpha}",
        "embedder": _locate_embedder(config),
        "data": config.dataset or f"synthetic {config.task}",
        "train_prompts": len(train_rows),
        "heldout_prompts": len(heldout_rows),
        "skipped_rows": report.skipped,
        "skipped_reasons": report.reasons,
        "reward": getattr(reward, "__name__", str(reward)),
        "steps": config.max_steps,
        "completions_per_step": args.generation_batch_size,
        "num_generations": config.num_generations,
        "monitor": _describe_monitor(config),
    }


def _describe_monitor(config: TrainConfig) -> str:
    """The live monitor and the per-completion gradients it (or the oracle) takes."""
    from gcpo.scoring import resolve_signal_names

    g = config.gradients
    grads = f"gradients of {g.params}, " + (
        f"CountSketch to {g.project_dim} dims" if g.project_dim else "exact"
    )
    oracle = "grad_nsr" in {config.weighting.signal, *resolve_signal_names(config.extra_signals)}
    if not config.monitor_every:
        return "off" + (f" (the oracle takes {grads} every step)" if oracle else "")
    measured = config.max_steps // config.monitor_every
    return (
        f"every {config.monitor_every} steps ({measured} of {config.max_steps}), window "
        f"{config.monitor_window} groups, {grads}"
    )
