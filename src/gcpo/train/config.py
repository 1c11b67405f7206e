"""``TrainConfig``: every knob of ``gcpo train`` in one dataclass (YAML maps one-to-one).

A weighting is a named preset plus field overrides: the ``weighting:`` mapping of a YAML file is
applied on top of ``preset``, so ``preset: gcpo-bot`` with ``weighting: {alpha: 0.5}`` is BoT
with alpha 0.5 -- from YAML, overrides, or in Python (``TrainConfig(preset="grpo")`` is GRPO;
``TrainConfig(preset="gcpo-bot", weighting={"alpha": 0.5})`` merges the same way). The resolved
config written into a run directory holds the full weighting, so reloading it reproduces the run
exactly.

The fields tagged ``grpo`` are passed to TRL's ``GRPOConfig`` under the same name
(:data:`GRPO_FIELDS`); setting one of them under ``trl:`` is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from gcpo.config import load
from gcpo.embedders import EmbedderConfig
from gcpo.fields import ConfigError, coerce, field, tagged_fields
from gcpo.gradients import GradientConfig
from gcpo.presets import available_presets, merge_preset, preset
from gcpo.signals import signal_names
from gcpo.tasks.registry import reward_names, synthetic_task_names
from gcpo.weighting import WeightingConfig

__all__ = ["TrainConfig", "load_train_config", "GRPO_FIELDS", "QUICKSTART", "RECIPES_DIR"]

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
QUICKSTART = CONFIG_DIR / "quickstart.yaml"
RECIPES_DIR = CONFIG_DIR / "recipes"


def _trl_loss_types() -> Sequence[str]:
    from gcpo.trl.trainer import loss_types  # imports TRL: only when --help or a run needs it

    return loss_types()


@dataclass
class TrainConfig:
    """One GCPO/GRPO training run on TRL."""

    # -- what to train ---------------------------------------------------------------------
    model: str = field(
        "smollm2-135m-instruct",
        help="policy: 'smollm2-135m-instruct' (embedded, offline), 'tiny-random' (tests), a local "
        "HF directory or a hub id",
    )
    preset: str = field(
        "gcpo",
        help="weighting preset (a file of gcpo/configs/presets); the 'weighting' fields "
        "override it",
        names=available_presets,
    )
    weighting: WeightingConfig = field(
        None,
        help="GCPO weighting (see gcpo.weighting.WeightingConfig): the preset's fields, then "
        "these (default: the preset's)",
    )
    embedder: EmbedderConfig = field(
        default_factory=EmbedderConfig,
        help="sentence embedder for the geometric signals ('embedder: NAME' sets embedder.name)",
    )
    extra_signals: list[str] = field(
        default_factory=list,
        help="more signals to log each step without changing the weights, e.g. [se, cd, bot]",
        names=signal_names,
    )
    monitor_every: int = field(
        0,
        help="live monitor: every this many steps measure per-group gradient variance V and NSR "
        "of that step's active groups and log the Spearman rho of every signal (and of the "
        "weight) with them as gcpo/align/<label>/V|NSR, plus a line per signal in the summary "
        "(0 = off; costs one forward + backward per completion of an active group on those steps)",
        min=0,
    )
    monitor_window: int = field(
        256, help="live monitor: rho over the last this many measured groups (checkpointed)", min=1
    )
    gradients: GradientConfig = field(
        default_factory=GradientConfig,
        help="per-completion policy gradients of the grad_nsr oracle (preset oracle) and the "
        "monitor: parameter subset, CountSketch dimension, objective",
    )
    # -- data and reward --------------------------------------------------------------------
    task: str = field(
        "arithmetic",
        help="synthetic task when 'dataset' is empty: arithmetic, graded-arithmetic or passage-qa "
        "(or one registered in gcpo.tasks.registry)",
    )
    task_options: dict[str, Any] = field(
        default_factory=dict,
        help="difficulty knobs of the synthetic task (arithmetic: digits, terms, ops; "
        "graded-arithmetic: levels, e.g. [1d+, 1d*, 1d-, 2d+]; passage-qa: facts)",
    )
    dataset: str = field(
        "",
        help="training data instead of a synthetic task: a JSONL file or a Hugging Face dataset "
        "id (rows need 'prompt' (text or chat messages) and the reward's columns, e.g. 'answer')",
    )
    dataset_config: str = field("", help="Hugging Face dataset config name (if any)")
    dataset_split: str = field("train", help="split of 'dataset' to train on")
    eval_dataset: str = field(
        "",
        help="held-out prompts (JSONL or hub id); empty = the synthetic task's held-out split, "
        "or the last num_eval_prompts rows of 'dataset' held out from training",
    )
    eval_split: str = field("test", help="split of 'eval_dataset'")
    prompt_field: str = field("prompt", help="column holding the prompt")
    answer_field: str = field(
        "answer", help="column holding the reference answer (renamed to 'answer' for rewards)"
    )
    system_prompt: str = field(
        "", help="system message prepended to plain-text prompts of 'dataset' (empty = none)"
    )
    reward: str = field(
        "",
        help="reward function: empty = the task's own (synthetic) or 'math'; a task kind of "
        "gcpo.tasks.registry ('math' = gcpo.tasks.math_reward, 'qa' = 'qa-f1', 'qa-em', "
        "'arithmetic', 'passage-qa'), or 'module:function' with TRL's signature "
        "fn(prompts, completions, **columns); the kind also sets semantic entropy's answer key",
    )
    num_train_prompts: int = field(
        512,
        help="synthetic task: training prompts drawn (dataset: at most this many, 0 = all)",
        min=0,
    )
    num_eval_prompts: int = field(
        32, help="held-out prompts scored before and after training (0 = skip)", min=0
    )
    # -- GRPO ---------------------------------------------------------------------------------
    num_generations: int = field(
        4, help="G: completions per prompt (>= 2)", min=2, tags=("grpo",)
    )
    max_steps: int = field(40, help="optimizer steps", min=1, tags=("grpo",))
    learning_rate: float = field(1e-5, help="AdamW learning rate", min=0.0, tags=("grpo",))
    per_device_train_batch_size: int = field(
        16,
        help="completions per device per micro-batch (TRL needs the global generation batch to be a "
        "multiple of num_generations)",
        min=1,
        tags=("grpo",),
    )
    gradient_accumulation_steps: int = field(
        1, help="micro-batches per optimizer step", min=1, tags=("grpo",)
    )
    max_completion_length: int = field(
        32, help="new tokens per completion", min=1, tags=("grpo",)
    )
    temperature: float = field(
        1.0, help="sampling temperature of the completions", min=0.0, tags=("grpo",)
    )
    beta: float = field(
        0.0, help="KL coefficient (0 = no reference model)", min=0.0, tags=("grpo",)
    )
    loss_type: str = field(
        "dapo",
        help="TRL loss_type (checked against the installed TRL's own list before the model "
        "loads)",
        names=_trl_loss_types,
        tags=("grpo",),
    )
    scale_rewards: str = field(
        "group",
        help="TRL scale_rewards (advantage std)",
        choices=("group", "batch", "none"),
        tags=("grpo",),
    )
    num_iterations: int = field(
        1, help="policy updates per generation batch (mu)", min=1, tags=("grpo",)
    )
    trl: dict[str, Any] = field(
        default_factory=dict,
        help="extra trl.GRPOConfig keyword arguments passed through (e.g. use_vllm: true, "
        "bf16: true, gradient_checkpointing: true)",
    )
    # -- run ----------------------------------------------------------------------------------
    seed: int = field(0, help="seed of data, sampling and initialisation", tags=("grpo",))
    output_dir: str = field(
        "runs/{preset}-{task}-{time}",
        help="run directory; {preset}, {task} and {time} are filled in",
        tags=("grpo",),
    )
    save_steps: int = field(
        20,
        help="checkpoint every this many steps (resumable with --resume; 0 = only at the end)",
        min=0,
        tags=("grpo",),
    )
    save_total_limit: int = field(
        2, help="checkpoints kept (oldest deleted)", min=1, tags=("grpo",)
    )
    logging_steps: int = field(
        1, help="log metrics every this many steps", min=1, tags=("grpo",)
    )
    eval_max_new_tokens: int = field(
        32, help="greedy new tokens per held-out prompt in the before/after evaluation", min=1
    )
    eval_batch_size: int = field(16, help="held-out prompts per generate() call", min=1)
    torch_threads: int = field(
        0, help="torch intra-op CPU threads (0 = torch's default)", min=0
    )
    plot: bool = field(True, help="write metrics.png (reward, weights, signals over steps)")
    save_final: bool = field(True, help="save_pretrained the final model to RUN/final")
    # -- reliability (docs/reliability.md) ------------------------------------------------------
    skip_bad_rows: bool = field(
        False,
        help="skip malformed / incomplete dataset rows (counted in data/skipped_rows) instead of "
        "stopping at the first one",
    )
    reward_fail_fast: bool = field(
        False,
        help="stop at the first reward that raises or returns NaN/inf/a wrong length, instead of "
        "treating those completions as unscorable (counted in gcpo/unscorable_frac/*)",
    )

    # raw keys that are not fields: the flat embedder setting of configs written before
    # EmbedderConfig was nested (run directories' config.yaml must stay loadable)
    config_aliases: ClassVar[dict[str, str]] = {"embedder_batch_size": "embedder.batch_size"}
    config_prepare = staticmethod(merge_preset)

    def __post_init__(self) -> None:
        # built in Python (not from a file): the preset's weighting unless one is given whole;
        # a mapping overrides the preset's fields (from a file, merge_preset did it already)
        self.weighting = preset(self.preset, self.weighting)
        self.embedder = coerce(self.embedder, EmbedderConfig, "embedder")  # a name or mapping too
        self.gradients = coerce(self.gradients, GradientConfig, "gradients")
        every, steps = self.monitor_every, self.max_steps
        if isinstance(every, int) and isinstance(steps, int) and every > steps > 0:
            raise ConfigError(
                f"monitor_every: got {every}, more than max_steps={steps}, so the monitor would "
                f"never measure; use 1..{steps}, or 0 to turn it off"
            )
        tasks = synthetic_task_names()
        if isinstance(self.task, str) and self.task not in tasks:
            raise ConfigError(f"task: got {self.task!r}, allowed: {', '.join(tasks)}")
        if self.reward and ":" not in self.reward and self.reward not in reward_names():
            raise ConfigError(
                f"reward: got {self.reward!r}, allowed: {', '.join(reward_names())} or "
                "module:function"
            )
        if isinstance(self.extra_signals, list):
            from gcpo.scoring import resolve_signal_names

            try:
                resolve_signal_names(self.extra_signals)
            except ValueError as exc:
                raise ConfigError(f"extra_signals: {exc}") from None
        if isinstance(self.trl, dict):
            clash = sorted(set(self.trl) & set(GRPO_FIELDS))
            if clash:
                raise ConfigError(
                    f"trl.{clash[0]}: is a top-level field of the train config; set "
                    f"'{clash[0]}' there instead of under 'trl'"
                )


# the TrainConfig fields passed to trl.GRPOConfig under the same name (tagged "grpo" above)
GRPO_FIELDS: tuple[str, ...] = tagged_fields(TrainConfig, "grpo")


def load_train_config(
    path: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    preset_name: str | None = None,
) -> TrainConfig:
    """YAML file (or defaults) + ``--preset`` + ``KEY=VALUE`` overrides -> validated TrainConfig.

    Order (:func:`gcpo.config.load`): file, then ``preset_name`` (replaces the file's preset
    *and* drops its weighting overrides, so ``--preset grpo`` really means GRPO), then
    ``overrides``.
    """
    return load(TrainConfig, path, overrides, preset=preset_name)
