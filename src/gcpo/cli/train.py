"""``gcpo train``: GCPO/GRPO post-training on TRL (no arguments = configs/quickstart.yaml)."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "train a policy with GCPO on TRL (no arguments: the offline quickstart)"

_EPILOG_HEAD = """Config fields (set them in the YAML file or as KEY=VALUE, e.g. weighting.alpha=0.5
trl.bf16=true max_steps=100):
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gcpo.config import help_lines
    from gcpo.train.config import TrainConfig

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG_HEAD + "\n".join("  " + line for line in help_lines(TrainConfig))
    parser.add_argument(
        "config",
        nargs="?",
        default=None,
        help="YAML config (default: the packaged configs/quickstart.yaml); a recipe name such as "
        "'qwen2.5-math-1.5b-math' is looked up in configs/recipes",
    )
    parser.add_argument("overrides", nargs="*", metavar="KEY=VALUE", help="config field overrides")
    parser.add_argument("--preset", help="weighting preset: grpo, seed-grpo, gcpo, gcpo-bot, ...")
    parser.add_argument("--model", help="policy model (built-in name, local directory or hub id)")
    data = parser.add_mutually_exclusive_group()
    data.add_argument(
        "--task", help="built-in synthetic task: arithmetic, graded-arithmetic or passage-qa"
    )
    data.add_argument("--dataset", help="JSONL file or Hugging Face dataset id to train on")
    parser.add_argument("--output", help="run directory (default: runs/{preset}-{task}-{time})")
    parser.add_argument(
        "--resume", metavar="RUN_DIR", help="continue RUN_DIR from its last checkpoint"
    )
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    parser.add_argument(
        "--check",
        action="store_true",
        help="validate the config, data and reward function, print what would run, and exit "
        "(0 = ready) without loading a model",
    )
    parser.add_argument(
        "--skip-bad-rows",
        action="store_true",
        help="skip malformed dataset rows (counted in data/skipped_rows) instead of stopping",
    )


def _config_path(config: str | None) -> Any:
    from pathlib import Path

    from gcpo.config import ConfigError
    from gcpo.train.config import QUICKSTART, RECIPES_DIR

    if config is None:
        return QUICKSTART
    if "=" in config:
        return None
    p = Path(config)
    if p.is_file():
        return p
    for candidate in (RECIPES_DIR / config, RECIPES_DIR / f"{config}.yaml"):
        if candidate.is_file():
            return candidate
    raise ConfigError(f"config: {config!r} is neither a file nor a recipe in {RECIPES_DIR}")


def _print_summary(s: dict[str, Any]) -> None:
    def fmt(v: Any) -> str:
        return "n/a" if v is None or (isinstance(v, float) and v != v) else f"{v:.3f}"

    print()
    print(f"gcpo train: {s['preset']} on {s['task']} with {s['model']}, {s['steps']} steps")
    print(
        f"  held-out reward ({s['heldout_prompts']} prompts, greedy): "
        f"before {fmt(s['heldout_reward_before'])} -> after {fmt(s['heldout_reward_after'])}"
    )
    print(
        f"  applied group weight (groups with reward dispersion > 0): mean {fmt(s['mean_weight'])}, "
        f"min {fmt(s['min_weight'])}, max {fmt(s['max_weight'])}, "
        f"spread (std within a step) {fmt(s.get('weight_spread'))}; "
        f"active groups per step {fmt(s.get('mean_active_groups'))}"
    )
    if s.get("few_active_groups"):
        print(
            "  note: fewer than 2 groups had reward dispersion in most steps, so the weights were "
            "renormalised to 1 and this trained as plain GRPO; give it more prompts per step "
            "(per_device_train_batch_size / num_generations, or generation_batch_size)"
        )
    if s.get("uniform_fallback_batches"):
        print(
            f"  note: in {s['uniform_fallback_batches']} batches every active group got weight 0 "
            "and the batch was trained with weight 1 (gcpo/uniform_fallback)"
        )
    print(
        f"  train reward: first step {fmt(s['train_reward_first'])}, last step {fmt(s['train_reward_last'])}"
    )
    stats = s.get("reward_stats") or {}
    if stats.get("unscorable") or s.get("data_skipped_rows"):
        print(
            f"  unscorable completions: {stats.get('unscorable', 0)} of "
            f"{stats.get('completions', 0)} ({stats.get('errors', 0)} reward calls raised); "
            f"skipped dataset rows: {s.get('data_skipped_rows', 0)}"
        )
    print(f"  run directory: {s['run_dir']}")
    for key in ("config", "metrics", "tensorboard", "plot", "final_model"):
        if s.get(key):
            print(f"    {key:12s} {s[key]}")
    if s.get("final_model"):
        print(f"  evaluate it: gcpo eval --model {s['final_model']}")


def run(args: argparse.Namespace) -> int:
    import sys

    from gcpo.embedders import EmbedderMemoryError
    from gcpo.io import DataError
    from gcpo.rewards import RewardError

    # user-data failures get one line naming the file/function, not a stack trace
    try:
        return _run(args)
    except DataError as exc:
        print(f"gcpo train: data error: {exc}", file=sys.stderr)
        return 2
    except RewardError as exc:
        print(f"gcpo train: reward error: {exc}", file=sys.stderr)
        return 2
    except EmbedderMemoryError as exc:
        print(
            f"gcpo train: out of memory: {exc}; in gcpo train the setting is "
            "embedder_batch_size=N (and max_completion_length / num_generations)",
            file=sys.stderr,
        )
        return 3


def _print_check(report: dict[str, Any], as_json: bool) -> int:
    if as_json:
        print(json.dumps(report, indent=2))
        return 0
    print("gcpo train --check: config and data are valid; this would run:")
    for key, value in report.items():
        if key == "skipped_reasons":
            for reason in value[:5]:
                print(f"    skipped: {reason}")
        else:
            print(f"  {key:22s} {value}")
    return 0


def _run(args: argparse.Namespace) -> int:
    from gcpo.config import ConfigError
    from gcpo.train.config import load_train_config
    from gcpo.train.run import resume_training, run_training

    overrides = list(args.overrides)
    if args.config is not None and "=" in args.config:
        overrides.insert(0, args.config)
    if args.resume:
        if (
            args.config
            and "=" not in args.config
            or args.preset
            or args.model
            or args.task
            or args.dataset
            or args.output
            or args.check
            or args.skip_bad_rows
        ):
            raise ConfigError(
                "--resume: the run's own config.yaml is used; pass only KEY=VALUE overrides "
                "such as max_steps=80"
            )
        summary = resume_training(args.resume, overrides)
    else:
        for flag, key in (
            ("model", "model"),
            ("task", "task"),
            ("dataset", "dataset"),
            ("output", "output_dir"),
        ):
            value = getattr(args, flag)
            if value is not None:
                overrides.append(f"{key}={json.dumps(value)}")
        if args.skip_bad_rows:
            overrides.append("skip_bad_rows=true")
        config = load_train_config(_config_path(args.config), overrides, preset_name=args.preset)
        if args.check:
            from gcpo.train.check import check_training

            return _print_check(check_training(config), args.json)
        summary = run_training(config)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0
