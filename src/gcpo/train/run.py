"""The training recipe behind ``gcpo train``: config -> run directory -> trained model + report.

Read top to bottom, one run is::

    run_dir/config.yaml      resolved config (written before anything heavy is loaded)
    run_dir/plugins.json     the --plugin modules, when any (imported again on resume)
    held-out reward before   greedy decoding on num_eval_prompts held-out prompts
    GCPOTrainer.train()      TRL GRPO loop with GCPO weights; checkpoint-N/ every save_steps
                             (each with gcpo_state.json = the rank-normalisation window)
    held-out reward after
    run_dir/final/           save_pretrained model + tokenizer (loadable by ``gcpo eval``)
    run_dir/metrics.jsonl    one line per logged step (TRL's metrics + gcpo/*)
    run_dir/tensorboard/     the same metrics as TensorBoard events
    run_dir/metrics.png      reward, weights and signals over steps
    run_dir/summary.json     before/after reward, mean weights, paths

``resume(run_dir)`` reloads ``config.yaml`` and continues from the newest ``checkpoint-N``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import time
import warnings
from collections.abc import Iterator, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from gcpo.config import dump_yaml
from gcpo.fields import ConfigError, validate
from gcpo.io import JsonlReport, atomic_write_text
from gcpo.metrics import train_reward_span, weight_summary
from gcpo.plugins import PLUGINS_FILE, load_plugins, plugin_spec, run_plugins
from gcpo.rewards import RewardStats, safe_reward
from gcpo.rundir import CONFIG_FILE, METRICS_FILE, SUMMARY_FILE, last_checkpoint, read_metrics
from gcpo.train.config import GRPO_FIELDS, TrainConfig, load_train_config
from gcpo.train.data import answer_fn_for, build_data, load_reward

__all__ = ["grpo_args", "run_training", "resume_training", "resolve_run_dir"]


def resolve_run_dir(config: TrainConfig) -> Path:
    """``config.output_dir`` with ``{preset}``, ``{task}``, ``{time}`` filled in."""
    task = Path(config.dataset).stem if config.dataset else config.task
    task = task.replace("/", "_") or "data"
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    try:
        return Path(config.output_dir.format(preset=config.preset, task=task, time=stamp))
    except (KeyError, IndexError, ValueError) as exc:
        raise ConfigError(
            f"output_dir: got {config.output_dir!r}; only {{preset}}, {{task}}, {{time}} may be "
            f"filled in ({exc})"
        ) from None


def grpo_args(config: TrainConfig, run_dir: Path, train_prompts: int) -> Any:
    """TRL's ``GRPOConfig`` of a run; ConfigError when TRL rejects it or ``train_prompts``
    prompts do not fill one generation batch."""
    from trl import GRPOConfig

    from gcpo.trl.trainer import loss_types

    known = loss_types()
    if known and config.loss_type not in known:  # TRL itself raises only at the first loss
        raise ConfigError(f"loss_type: got {config.loss_type!r}, allowed: {', '.join(known)}")
    # the knobs TrainConfig owns, under their GRPOConfig names (tagged "grpo" in TrainConfig)
    kwargs: dict[str, Any] = {name: getattr(config, name) for name in GRPO_FIELDS}
    kwargs.update(
        {
            "output_dir": str(run_dir),
            "data_seed": config.seed,
            "save_strategy": "steps",
            "save_steps": config.save_steps or config.max_steps,
            "report_to": [],
            "disable_tqdm": False,
        }
    )
    import torch

    if not torch.cuda.is_available():
        # TRL defaults to bf16 mixed precision, which needs a GPU; on CPU train in float32.
        kwargs.update({"bf16": False, "use_cpu": True})
    kwargs.update(config.trl)
    try:
        with warnings.catch_warnings():
            # TRL 1.16 sets gradient_checkpointing, a name transformers 5 deprecates: nothing
            # the user can act on, printed before every run and `--check`
            warnings.filterwarnings(
                "ignore", message=r".*gradient_checkpointing.*deprecated", category=FutureWarning
            )
            args: Any = GRPOConfig(**kwargs)  # TRL types generation_batch_size optional; set by now
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"trl: GRPOConfig rejected the arguments: {exc}") from None
    if train_prompts * config.num_generations < args.generation_batch_size:
        raise ConfigError(
            f"num_train_prompts: {train_prompts} prompts x G={config.num_generations} is fewer "
            f"than one generation batch ({args.generation_batch_size} completions)"
        )
    return args


def _callbacks(run_dir: Path) -> list[Any]:
    from torch.utils.tensorboard import SummaryWriter

    from gcpo.trl import MetricsJsonlCallback
    from gcpo.trl.callbacks import QuietTensorBoardCallback

    return [
        MetricsJsonlCallback(run_dir / METRICS_FILE),
        QuietTensorBoardCallback(tb_writer=SummaryWriter(log_dir=str(run_dir / "tensorboard"))),
    ]


class _UnscorableFilter(logging.Filter):
    """Drops TRL's per-batch "All reward functions returned None" warning while gcpo train
    runs: the run counts unscorable completions (reward stats, ``gcpo/unscorable_frac/*``) and
    reports them once in its summary."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "All reward functions returned None" not in record.getMessage()


@contextlib.contextmanager
def quiet_unscorable_warning() -> Iterator[None]:
    """gcpo train's own logging: TRL's unscorable-rewards warning is filtered inside the block
    only, so ``GCPOTrainer`` used as a library leaves every TRL warning as TRL emits it."""
    from trl.trainer import grpo_trainer

    target = logging.getLogger(grpo_trainer.__name__)
    f = _UnscorableFilter()
    target.addFilter(f)
    try:
        yield
    finally:
        target.removeFilter(f)


@quiet_unscorable_warning()
def _train(
    config: TrainConfig, run_dir: Path, checkpoint: Path | None, callbacks: Sequence[Any]
) -> dict[str, Any]:
    import torch
    from datasets import Dataset
    from transformers import set_seed
    from transformers.trainer_callback import ProgressCallback

    from gcpo.models import base_model_id, load_policy
    from gcpo.train.progress import CompactProgressCallback
    from gcpo.trl import GCPOTrainer
    from gcpo.trl.callbacks import ConstantMetricsCallback, heldout_reward
    from gcpo.trl.checkpoint import replace_dir

    t_start = time.perf_counter()
    # transformers 5 deprecates the gradient_checkpointing names that TRL 1.16 still calls around
    # every generation: one FutureWarning per step otherwise floods the console
    warnings.filterwarnings(
        "ignore", message=r".*gradient_checkpointing.*deprecated", category=FutureWarning
    )
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    set_seed(config.seed)
    report = JsonlReport()
    train_rows, heldout_rows = build_data(config, report=report)
    if report.skipped:
        print(
            f"skipped {report.skipped} bad dataset rows (skip_bad_rows), first: "
            f"{report.reasons[0]}",
            flush=True,
        )
    # unscorable completions are counted (gcpo/unscorable_frac/*), not fatal: docs/reliability.md
    reward_stats = RewardStats()
    user_reward = load_reward(config)
    reward_fn = safe_reward(user_reward, fail_fast=config.reward_fail_fast, stats=reward_stats)
    args = grpo_args(config, run_dir, len(train_rows))
    model, tokenizer = load_policy(config.model)

    summary_path = run_dir / SUMMARY_FILE
    previous = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
    if "heldout_reward_before" in previous:
        before = previous["heldout_reward_before"]
    else:
        if heldout_rows:
            print(f"scoring {len(heldout_rows)} held-out prompts before training ...", flush=True)
        before = heldout_reward(
            model,
            tokenizer,
            heldout_rows,
            reward_fn,
            max_new_tokens=config.eval_max_new_tokens,
            batch_size=config.eval_batch_size,
        )
        atomic_write_text(summary_path, json.dumps({"heldout_reward_before": before}, indent=2))

    trainer = GCPOTrainer(
        model=model,
        reward_funcs=[reward_fn],
        args=args,
        train_dataset=Dataset.from_list(train_rows),
        processing_class=tokenizer,
        callbacks=[
            ConstantMetricsCallback({"data/skipped_rows": report.skipped}),
            *_callbacks(run_dir),
            *callbacks,
        ],
        weighting=config.weighting,
        embedder=config.embedder,
        answer_fn=answer_fn_for(config),
        extra_signals=config.extra_signals,
        base_model=base_model_id(config.model),
        gradients=config.gradients,
        monitor_every=config.monitor_every,
        monitor_window=config.monitor_window,
        weighting_name=config.preset,
    )
    trainer.remove_callback(ProgressCallback)  # prints every log dict; ours shows a postfix
    trainer.add_callback(CompactProgressCallback())
    trainer.train(resume_from_checkpoint=str(checkpoint) if checkpoint else None)

    after = heldout_reward(
        trainer.model,
        tokenizer,
        heldout_rows,
        reward_fn,
        max_new_tokens=config.eval_max_new_tokens,
        batch_size=config.eval_batch_size,
    )
    final_dir = run_dir / "final"
    if config.save_final:  # staged then renamed, so final/ is never half-written
        staged = run_dir / ".tmp-final"
        if trainer.args.should_save:
            shutil.rmtree(staged, ignore_errors=True)  # left by a run killed while saving
        trainer.save_model(str(staged))
        tokenizer.save_pretrained(str(staged))
        trainer.create_model_card(model_name=run_dir.name, model_path=str(final_dir))
        if trainer.args.should_save and (run_dir / "README.md").is_file():
            shutil.copyfile(run_dir / "README.md", staged / "README.md")
        trainer.accelerator.wait_for_everyone()
        if trainer.args.should_save:
            replace_dir(staged, final_dir)

    from gcpo.train.plot import plot_metrics

    rows = read_metrics(run_dir / METRICS_FILE)
    plot_path = run_dir / "metrics.png"
    if config.plot and rows:
        plot_metrics(rows, plot_path, title=f"{config.preset} on {config.dataset or config.task}")
    summary = {
        "preset": config.preset,
        "model": config.model,
        "task": config.dataset or config.task,
        "steps": trainer.state.global_step,
        "heldout_prompts": len(heldout_rows),
        "heldout_reward_before": before,
        "heldout_reward_after": after,
        **weight_summary(rows),
        "uniform_fallback_batches": trainer.gcpo_counts["uniform_fallback"],
        "inert_steps": trainer.gcpo_counts["inert_steps"],
        "rd_clipped_groups": trainer.gcpo_counts["rd_clipped"],
        **train_reward_span(rows),
        "wall_seconds_this_session": round(time.perf_counter() - t_start, 1),
        "run_dir": str(run_dir),
        "config": str(run_dir / CONFIG_FILE),
        "metrics": str(run_dir / METRICS_FILE),
        "tensorboard": str(run_dir / "tensorboard"),
        "plot": str(plot_path) if plot_path.is_file() else None,
        "final_model": str(final_dir) if config.save_final else None,
        "resumed_from": str(checkpoint) if checkpoint else None,
        "data_skipped_rows": report.skipped,
        "reward_stats": reward_stats.as_dict(),
        "alignment": trainer.gcpo_monitor.summary() if trainer.gcpo_monitor else None,
    }
    atomic_write_text(summary_path, json.dumps(summary, indent=2))
    return summary


def fresh_run_dir(config: TrainConfig, run_dir: str | Path | None = None) -> Path:
    """Validate ``config`` and return the directory of a new run; refuse one that holds a run."""
    validate(config)
    out = Path(run_dir) if run_dir is not None else resolve_run_dir(config)
    if last_checkpoint(out) is not None or (out / SUMMARY_FILE).is_file():
        raise ConfigError(
            f"output_dir: {str(out)!r} already holds a run; continue it with "
            f"`gcpo train --resume {out}` or choose another --output"
        )
    return out


def run_training(
    config: TrainConfig,
    *,
    run_dir: str | Path | None = None,
    callbacks: Sequence[Any] = (),
    plugins: Sequence[str] = (),
) -> dict[str, Any]:
    """Train a fresh run of ``config``; returns the summary dict (also in summary.json).

    ``callbacks``: extra ``transformers.TrainerCallback`` instances (``gcpo compare`` adds its
    held-out evaluation this way). ``plugins``: the ``--plugin`` modules the run was started
    with (already imported); recorded in the run directory so that a resume imports them again.
    """
    out = fresh_run_dir(config, run_dir)
    out.mkdir(parents=True, exist_ok=True)
    config.output_dir = str(out)
    _record_plugins(out, plugins)
    atomic_write_text(out / CONFIG_FILE, dump_yaml(config))
    return _train(config, out, None, callbacks)


def _record_plugins(run_dir: Path, plugins: Sequence[str]) -> list[str]:
    """Union of the run's recorded ``--plugin`` modules and ``plugins``, written back if it grew."""
    recorded = run_plugins(run_dir)
    given = [plugin_spec(p) for p in plugins]
    union = recorded + [p for p in given if p not in recorded]
    if union != recorded:
        atomic_write_text(run_dir / PLUGINS_FILE, json.dumps(union) + "\n")
    return union


def resume_training(
    run_dir: str | Path,
    overrides: list[str] | None = None,
    *,
    callbacks: Sequence[Any] = (),
    plugins: Sequence[str] = (),
) -> dict[str, Any]:
    """Continue the run in ``run_dir`` from its newest checkpoint (config from config.yaml).

    ``overrides`` may raise ``max_steps`` (to train longer) but nothing that changes the run.
    The ``--plugin`` modules the run was started with are imported again, with ``plugins``.
    """
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"--resume: {str(run_dir)!r} does not exist")
    if not (run_dir / CONFIG_FILE).is_file():
        raise ConfigError(
            f"--resume: {str(run_dir)!r} has no {CONFIG_FILE}; not a gcpo run directory"
        )
    allowed = {"max_steps", "save_steps", "logging_steps", "torch_threads", "plot", "save_final",
               "monitor_every", "monitor_window"}  # fmt: skip
    for item in overrides or []:
        key = item.split("=", 1)[0].strip().lstrip("-").replace("-", "_")
        if key not in allowed:
            raise ConfigError(
                f"--resume: override {item!r} would change the run; only {', '.join(sorted(allowed))} "
                "may be overridden when resuming"
            )
    # the run's --plugin modules first: its config may name a signal or task they register
    load_plugins(_record_plugins(run_dir, plugins))
    config = load_train_config(run_dir / CONFIG_FILE, overrides or [])
    checkpoint = last_checkpoint(run_dir)
    if checkpoint is None:
        raise ConfigError(
            f"--resume: {str(run_dir)!r} has no complete checkpoint-N yet (save_steps="
            f"{config.save_steps}); start it again instead"
        )
    if overrides:
        atomic_write_text(run_dir / CONFIG_FILE, dump_yaml(config))
    return _train(config, run_dir, checkpoint, callbacks)
