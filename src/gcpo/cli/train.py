"""``gcpo train``: GCPO/GRPO post-training on TRL (no arguments = configs/quickstart.yaml)."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "train a policy with GCPO on TRL (no arguments: the offline quickstart)"

_EPILOG_HEAD = """Config fields (set them in the YAML file or as KEY=VALUE, e.g. weighting.alpha=0.5
trl.bf16=true max_steps=100):
"""


def binding() -> Any:
    from gcpo.cli.binding import Binding
    from gcpo.train.config import TrainConfig

    return Binding(
        TrainConfig,
        positional_config=True,
        aliases={"output_dir": ("--output",)},
        extra_flags={"--embedder-batch-size": "embedder.batch_size"},
        exclusive=[("task", "dataset")],
    )


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from gcpo.fields import help_lines
    from gcpo.train.config import TrainConfig

    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.epilog = _EPILOG_HEAD + "\n".join("  " + line for line in help_lines(TrainConfig))
    binding().add_arguments(parser)
    for action in parser._actions:  # the config positional: say where it is looked up
        if action.dest == "config":
            action.help = (
                "YAML config (default: the packaged configs/quickstart.yaml); a recipe name such "
                "as 'qwen2.5-math-1.5b-math' is looked up in configs/recipes"
            )
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
    if s.get("inert_steps") and not s.get("few_active_groups"):
        print(
            f"  note: in {s['inert_steps']} of {s.get('steps')} steps fewer than 2 groups had reward "
            "dispersion, so the weighting could not change the update there (gcpo/inert_step)"
        )
    if s.get("rd_clipped_groups"):
        print(
            f"  warning: {s['rd_clipped_groups']} groups had reward dispersion above the configured "
            "weighting.rd_max and were clipped (gcpo/rd_clipped); set rd_max to half your reward "
            "range or to null (auto)"
        )
    if s.get("uniform_fallback_batches"):
        print(
            f"  note: in {s['uniform_fallback_batches']} batches every active group got weight 0 "
            "and the batch was trained with weight 1 (gcpo/uniform_fallback)"
        )
    print(
        f"  train reward: first step {fmt(s['train_reward_first'])}, last step {fmt(s['train_reward_last'])}"
    )
    for line in alignment_lines(s.get("alignment")):
        print(line)
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


def alignment_lines(alignment: dict[str, Any] | None) -> list[str]:
    """The live monitor's lines of the run summary: one per signal (and the applied weight)."""
    if not alignment:
        return []
    n, steps = alignment.get("groups", 0), alignment.get("measured_steps", 0)
    lines = [
        f"  live monitor (every {alignment.get('every')} steps, {steps} measured, last {n} active "
        "groups): Spearman rho with gradient noise-to-signal ratio NSR and variance V"
    ]
    for label, rho in (alignment.get("rho") or {}).items():
        verb = "weight vs" if label == "weight" else f"{label} tracks"
        lines.append(
            f"    {verb} NSR: rho = {rho['NSR']:+.2f}, V: rho = {rho['V']:+.2f}, n = {n} groups"
        )
    if n < 3:
        lines.append("    (fewer than 3 groups measured: rho is reported as 0)")
    return lines


def run(args: argparse.Namespace) -> int:
    from gcpo.fields import ConfigError
    from gcpo.io import find_config
    from gcpo.train.config import QUICKSTART, RECIPES_DIR
    from gcpo.train.run import resume_training, run_training

    bound = binding()
    if args.resume:
        if bound.config_path(args) is not None or bound.flag_values(args) or args.check:
            raise ConfigError(
                "--resume: the run's own config.yaml is used; pass only KEY=VALUE overrides "
                "such as max_steps=80"
            )
        summary = resume_training(args.resume, bound.overrides(args), plugins=args.plugin)
    else:
        # the file named, a recipe by name, else the quickstart; overrides and flags go on top
        # either way, so `gcpo train max_steps=1` and `gcpo train --max-steps 1` are one run
        path, name = QUICKSTART, bound.config_path(args)
        if name is not None:
            path = find_config(name, RECIPES_DIR, key="config", kind="recipe")
        config = bound.load(args, path=path)
        if args.check:
            from gcpo.train.check import check_training

            return _print_check(check_training(config), args.json)
        summary = run_training(config, plugins=args.plugin)
    if args.json:
        print(json.dumps(summary, indent=2))
    else:
        _print_summary(summary)
    return 0


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
