"""``gcpo compare``: the same model on the same data under several weighting presets x seeds.

Every run of a comparison is one ``gcpo train`` run of one base :class:`TrainConfig` with only
``preset`` and ``seed`` changed, trained one after the other. While it trains, a callback scores
a fixed held-out set (greedy decoding, the same prompts for every run) every ``eval_every``
steps. Two directories:

- ``results`` (compact, small enough to commit; by default ``runs/compare-NAME/results``, so that
  running a packaged comparison reproduces it rather than reading the committed results, which
  ``--output docs/results/compare-NAME`` names explicitly)::

      compare.json                 the comparison's config and fingerprint
      runs/<preset>-s<seed>/
          curve.jsonl              held-out accuracy per eval step (appended + fsynced)
          metrics.jsonl            per-step extract of the training metrics (reward, gcpo/*)
          summary.json             written once the run is finished: this run counts as done
      table.md / table.csv         per preset: final held-out accuracy (mean, 95 % t-CI over
                                   seeds), paired difference vs the baseline preset per seed,
                                   curve area, steps to the threshold, applied-weight spread
      curves.png                   held-out accuracy over steps, mean and band over seeds

- ``runs`` (heavy, may be lost): one ``gcpo train`` run directory per run, with checkpoints.

Resuming (rerun the same command): a run whose ``summary.json`` is in ``results`` is skipped,
even when its heavy directory is gone (a replaced machine); a run with a checkpoint continues
from it (curve points after the checkpoint are dropped and recomputed, so an eval point cut by
a kill is recomputed); anything else starts again from scratch. Finished runs' checkpoints are
deleted unless ``keep_checkpoints``.
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcpo.config import load
from gcpo.fields import ConfigError, field, to_dict, validate
from gcpo.io import find_config

__all__ = [
    "CompareConfig",
    "RunStatus",
    "compare_config_path",
    "load_compare_config",
    "plan_runs",
    "run_comparison",
    "summarise_comparison",
    "t_interval",
    "COMPARE_DIR",
]

COMPARE_DIR = Path(__file__).resolve().parent / "configs" / "compare"
# TrainConfig fields that identify a run (set per run) or that do not change what is measured
_PER_RUN = ("preset", "seed", "output_dir")
_NOT_MEASURED = (
    "torch_threads",
    "save_steps",
    "save_total_limit",
    "logging_steps",
    "plot",
    "save_final",
    "embedder_batch_size",
)
# training metrics kept per step in results/runs/<run>/metrics.jsonl
_METRIC_KEYS = (
    "reward",
    "reward_std",
    "frac_reward_zero_std",
    "completions/mean_length",
    "completions/clipped_ratio",
    "loss",
    "grad_norm",
    "entropy",
)


@dataclass
class CompareConfig:
    """One comparison: a base ``gcpo train`` config, the presets and seeds it is trained with."""

    train_config: str = field(
        "",
        help="base gcpo train config: a YAML file or a recipe name of configs/recipes "
        "(empty = TrainConfig defaults); 'train' overrides it",
    )
    train: dict[str, Any] = field(
        default_factory=dict,
        help="TrainConfig fields set on top of train_config, e.g. {max_steps: 40, "
        "task: graded-arithmetic}; not preset, seed, output_dir or weighting (varied per run)",
    )
    presets: list[str] = field(
        default_factory=lambda: ["grpo", "seed-grpo", "gcpo"],
        help="weighting presets compared (each trained once per seed)",
    )
    arms: dict[str, dict[str, Any]] = field(
        default_factory=dict,
        help="named arms that are a preset with weighting fields changed, listed in 'presets' by "
        "name: {gcpo-a0.5: {preset: gcpo, weighting: {alpha: 0.5}}}",
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], help="training seeds")
    preset_seeds: dict[str, list[int]] = field(
        default_factory=dict,
        help="presets trained on only some of 'seeds' when the budget cannot hold every preset "
        "at every seed: {mgpo: [0, 1]}; the table shows each preset's seed count",
    )
    baseline: str = field("grpo", help="preset the paired differences are taken against")
    reference: str | None = field(
        None,
        help="arm whose paired gain over the baseline the others' gains are a fraction of (e.g. "
        "oracle: the best any signal could do); null = no such table",
    )
    eval_every: int = field(5, help="score the held-out set every this many steps", min=1)
    heldout_seed: int = field(
        0,
        help="seed of the held-out set (synthetic tasks), the same for every run; its size and "
        "generation length are the train config's num_eval_prompts / eval_max_new_tokens",
    )
    threshold: float = field(
        0.5, help="held-out accuracy for the 'steps to threshold' column", min=0.0, max=1.0
    )
    results: str = field(
        "runs/compare/results",
        help="compact results (curves, summaries, table, plot): small enough to commit; the "
        "packaged comparisons write them under runs/ so that running one reproduces it, and "
        "--output docs/results/NAME writes (or, with --status / --table-only, reads) the "
        "committed ones",
    )
    runs: str = field(
        "runs/compare", help="heavy run directories (checkpoints, models); may be lost"
    )
    only: list[str] = field(
        default_factory=list,
        help="train only these presets in this invocation (e.g. one arm per machine); the "
        "table still covers every preset whose finished runs are in 'results'",
    )
    keep_checkpoints: bool = field(
        False, help="keep a finished run's checkpoints (they are ~3x the model size each)"
    )

    def __post_init__(self) -> None:
        from gcpo.presets import available_presets

        allowed = available_presets()
        if isinstance(self.arms, dict):
            for arm, spec in self.arms.items():
                if arm in allowed:
                    raise ConfigError(f"arms.{arm}: is already a preset name; name the arm otherwise")
                if not isinstance(spec, dict) or spec.get("preset") not in allowed:
                    raise ConfigError(
                        f"arms.{arm}.preset: expected one of {', '.join(allowed)}, got "
                        f"{spec.get('preset') if isinstance(spec, dict) else spec!r}"
                    )
                stray = sorted(set(spec) - {"preset", "weighting"})
                if stray or not isinstance(spec.get("weighting", {}), dict):
                    raise ConfigError(
                        f"arms.{arm}: expected {{preset: NAME, weighting: {{FIELD: VALUE}}}}, got {spec!r}"
                    )
            allowed = [*allowed, *self.arms]
        if isinstance(self.presets, list):
            if not self.presets:
                raise ConfigError("presets: give at least one preset")
            unknown = [p for p in self.presets if p not in allowed]
            if unknown:
                raise ConfigError(f"presets: unknown {unknown[0]!r}; allowed: {', '.join(allowed)}")
            if len(set(self.presets)) != len(self.presets):
                raise ConfigError(f"presets: listed twice in {self.presets}")
            stray = [p for p in self.only if p not in self.presets]
            if stray:
                raise ConfigError(f"only: {stray[0]!r} is not among presets {self.presets}")
            if self.baseline not in self.presets:
                raise ConfigError(
                    f"baseline: {self.baseline!r} is not among presets {self.presets}; the paired "
                    "differences are taken against it"
                )
            if self.reference is not None and (
                self.reference not in self.presets or self.reference == self.baseline
            ):
                raise ConfigError(
                    f"reference: {self.reference!r} must be one of presets {self.presets} other "
                    f"than the baseline {self.baseline!r}"
                )
        if isinstance(self.seeds, list):
            if not self.seeds:
                raise ConfigError("seeds: give at least one seed")
            if len(set(self.seeds)) != len(self.seeds):
                raise ConfigError(f"seeds: listed twice in {self.seeds}")
            if isinstance(self.preset_seeds, dict) and isinstance(self.presets, list):
                for preset, some in self.preset_seeds.items():
                    if preset not in self.presets:
                        raise ConfigError(
                            f"preset_seeds.{preset}: is not among presets {self.presets}"
                        )
                    if (
                        not isinstance(some, list)
                        or not some
                        or any(s not in self.seeds for s in some)
                    ):
                        raise ConfigError(
                            f"preset_seeds.{preset}: expected a non-empty subset of seeds "
                            f"{self.seeds}, got {some!r}"
                        )
                    if preset == self.baseline:
                        raise ConfigError(
                            f"preset_seeds.{preset}: the baseline runs on every seed (the paired "
                            "differences need it)"
                        )
        if isinstance(self.train, dict):
            fixed = sorted(set(self.train) & {*_PER_RUN, "weighting"})
            if fixed:
                raise ConfigError(
                    f"train.{fixed[0]}: is set per run by the comparison (presets, seeds, runs); "
                    "remove it from 'train'"
                )


def compare_config_path(name: str | Path | None) -> Path | None:
    """A comparison YAML: a file, or a name of ``configs/compare`` (``arithmetic``)."""
    if name is None:
        return None
    return find_config(name, COMPARE_DIR, key="config", kind="comparison")


def load_compare_config(path: str | Path | None = None, overrides: Any = ()) -> CompareConfig:
    """YAML file (a path, or a name of ``configs/compare``) + ``KEY=VALUE`` overrides."""
    c = load(CompareConfig, compare_config_path(path), list(overrides))
    validate(c)
    return c


# ------------------------------------------------------------------------------------------
# Train configs of the runs
# ------------------------------------------------------------------------------------------


def seeds_of(c: CompareConfig, preset: str) -> list[int]:
    """The seeds ``preset`` is trained on: ``preset_seeds[preset]`` if given, else ``seeds``."""
    some = c.preset_seeds.get(preset)
    return [s for s in c.seeds if some is None or s in some]


def run_name(preset: str, seed: int) -> str:
    return f"{preset}-s{seed}"


def train_config_for(c: CompareConfig, preset: str, seed: int, run_dir: str | Path) -> Any:
    """The TrainConfig of one run: base config + ``train`` + this preset, seed and directory.

    Built through :func:`gcpo.train.config.load_train_config` with ``preset_name``, so the
    preset is applied exactly as ``gcpo train --preset`` applies it (a base ``weighting:``
    mapping is dropped: the comparison varies the weighting through the preset only).
    """
    from gcpo.train.config import RECIPES_DIR, load_train_config

    overrides = [f"{k}={json.dumps(v)}" for k, v in c.train.items()]
    overrides += [f"seed={seed}", f"output_dir={json.dumps(str(run_dir))}"]
    arm = c.arms.get(preset)
    if arm is not None:  # a preset with some weighting fields changed
        overrides += [f"weighting.{k}={json.dumps(v)}" for k, v in arm.get("weighting", {}).items()]
        preset = arm["preset"]
    path = None
    if c.train_config:
        path = find_config(c.train_config, RECIPES_DIR, key="train_config", kind="recipe")
    return load_train_config(path, overrides, preset_name=preset)


def _fingerprint(c: CompareConfig) -> dict[str, Any]:
    """What must be equal for runs to be compared: the base train config (without preset, seed,
    output dir and settings that do not change results) and the held-out evaluation."""
    base = to_dict(train_config_for(c, c.presets[0], c.seeds[0], "-"))
    for key in (*_PER_RUN, *_NOT_MEASURED, "weighting"):
        base.pop(key, None)
    return {"train": base, "eval_every": c.eval_every, "heldout_seed": c.heldout_seed}


def _fingerprint_id(fp: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(fp, sort_keys=True).encode()).hexdigest()[:16]


def _diff(a: Any, b: Any, prefix: str = "") -> str | None:
    """First dotted key where two plain-data trees differ (None if equal)."""
    if isinstance(a, dict) and isinstance(b, dict):
        for k in sorted(set(a) | set(b)):
            d = _diff(a.get(k), b.get(k), f"{prefix}{k}.")
            if d is not None:
                return d
        return None
    return None if a == b else prefix.rstrip(".")


def _is_main() -> bool:
    """False on the non-zero ranks of a multi-process launch (``accelerate launch``): every
    rank trains, only rank 0 writes the compact results."""
    return int(os.environ.get("RANK", "0")) == 0


def _check_results_dir(c: CompareConfig) -> dict[str, Any]:
    """Write (or check against) ``results/compare.json``; refuse to mix different setups."""
    from gcpo.io import atomic_write_text

    fp = _fingerprint(c)
    meta = Path(c.results) / "compare.json"
    if meta.is_file():
        have = json.loads(meta.read_text(encoding="utf-8")).get("fingerprint", {})
        key = _diff(have, fp)
        if key is not None:
            old: Any = have
            new: Any = fp
            for part in key.split("."):
                old = old.get(part) if isinstance(old, dict) else None
                new = new.get(part) if isinstance(new, dict) else None
            raise ConfigError(
                f"results {c.results!r} hold a comparison with {key}={old!r}, this one has "
                f"{key}={new!r}; use another results directory (and runs directory)"
            )
    record = {"fingerprint": fp, "fingerprint_id": _fingerprint_id(fp), "config": to_dict(c)}
    if _is_main():
        atomic_write_text(meta, json.dumps(record, indent=2) + "\n")
    return fp


def _read_rows(path: Path) -> list[dict[str, Any]]:
    """Rows of a results JSONL file (read only; a line cut by a kill is skipped)."""
    from gcpo.io import read_jsonl

    if not path.is_file():
        return []
    return read_jsonl(path, skip_bad_rows=True, allow_empty=True)


# ------------------------------------------------------------------------------------------
# Runs
# ------------------------------------------------------------------------------------------


@dataclass
class RunStatus:
    preset: str
    seed: int
    name: str
    state: str  # "done" | "resume" | "fresh"
    checkpoint: Path | None
    results_dir: Path
    run_dir: Path


def plan_runs(c: CompareConfig) -> list[RunStatus]:
    """Every run of the comparison, preset-major within each seed, and what a rerun does with it.

    Order: seed 0 of every preset, then seed 1, ... so an interrupted comparison already holds
    complete paired seeds.
    """
    from gcpo.rundir import last_checkpoint

    out = []
    for seed in c.seeds:
        for preset in c.presets:
            if seed not in seeds_of(c, preset):
                continue
            name = run_name(preset, seed)
            res = Path(c.results) / "runs" / name
            heavy = Path(c.runs) / name
            ckpt = last_checkpoint(heavy) if heavy.is_dir() else None
            if _load_run(Path(c.results), name) is not None:
                state = "done"
            elif ckpt is not None:
                state = "resume"
            else:
                state = "fresh"
            out.append(RunStatus(preset, seed, name, state, ckpt, res, heavy))
    return out


def _metrics_extract(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for r in rows:
        keep = {"step": r.get("step")}
        for k, v in r.items():
            if k in _METRIC_KEYS or (k.startswith("gcpo/") and not k.endswith("_s")):
                keep[k] = v
        out.append(keep)
    return out


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def curve_stats(curve: list[dict[str, Any]], max_steps: int, threshold: float) -> dict[str, Any]:
    """Final accuracy, normalised area under the curve and first step reaching ``threshold``.

    ``area`` is the trapezoid integral of accuracy over steps 0..max_steps divided by max_steps:
    the mean held-out accuracy over training, higher when a run learns earlier.
    """
    pts = sorted(
        (int(r["step"]), float(r["heldout_accuracy"]))
        for r in curve
        if isinstance(r.get("heldout_accuracy"), (int, float))
        and math.isfinite(r["heldout_accuracy"])
    )
    final = next((a for s, a in pts if s == max_steps), None)
    area = None
    if pts and pts[0][0] == 0 and pts[-1][0] == max_steps and max_steps > 0:
        area = (
            sum((s1 - s0) * (a0 + a1) / 2 for (s0, a0), (s1, a1) in zip(pts, pts[1:], strict=False))
            / max_steps
        )
    reached = next((s for s, a in pts if a >= threshold), None)
    return {"final_accuracy": final, "area": area, "steps_to_threshold": reached}


def _finish_run(
    status: RunStatus, c: CompareConfig, max_steps: int, fp_id: str, seconds: float
) -> dict[str, Any]:
    """Write the compact metrics extract and summary.json (which marks the run done)."""
    from gcpo.io import atomic_write_text, write_jsonl
    from gcpo.metrics import train_reward_span, weight_summary
    from gcpo.rundir import METRICS_FILE, read_metrics

    rows = read_metrics(status.run_dir / METRICS_FILE)
    write_jsonl(status.results_dir / "metrics.jsonl", _metrics_extract(rows))
    curve = _read_rows(status.results_dir / "curve.jsonl")
    weights = weight_summary(rows)
    summary = {
        "preset": status.preset,
        "seed": status.seed,
        "finished": True,
        "steps": max((int(r.get("step", 0)) for r in rows), default=0),
        "max_steps": max_steps,
        "fingerprint_id": fp_id,
        **curve_stats(curve, max_steps, c.threshold),
        "heldout_accuracy_start": next(
            (r["heldout_accuracy"] for r in curve if r.get("step") == 0), None
        ),
        # spread of the applied weights: mean over steps of gcpo/weight_std (active groups only);
        # None when no step logged it
        "weight_spread": weights["weight_spread"],
        "mean_weight": weights["mean_weight"],
        "mean_active_groups": weights["mean_active_groups"],
        **train_reward_span(rows),
        "eval_seconds": round(sum(float(r.get("seconds", 0.0)) for r in curve), 1),
        "wall_seconds_last_session": round(seconds, 1),
    }
    atomic_write_text(status.results_dir / "summary.json", json.dumps(summary, indent=2) + "\n")
    return summary


def _check_same_run(run_dir: Path, expected: Any) -> None:
    """Refuse to resume a heavy run directory that holds a run of another configuration."""
    from gcpo.rundir import CONFIG_FILE
    from gcpo.train.config import load_train_config

    have = to_dict(load_train_config(run_dir / CONFIG_FILE))
    want = to_dict(expected)
    for key in (*_NOT_MEASURED, "output_dir"):
        have.pop(key, None)
        want.pop(key, None)
    differs = _diff(have, want)
    if differs is not None:
        raise ConfigError(
            f"runs: {str(run_dir)!r} holds a run of another configuration ({differs} differs); "
            "delete it or use another runs directory"
        )


def _run_one(
    status: RunStatus,
    c: CompareConfig,
    heldout: list[dict[str, Any]],
    reward_fn: Any,
    base: Any,
    fp_id: str,
    log: Any,
) -> dict[str, Any]:
    from gcpo.train.run import resume_training, run_training

    status.results_dir.mkdir(parents=True, exist_ok=True)
    from gcpo.trl.callbacks import HeldoutRewardCallback

    callback = HeldoutRewardCallback(
        status.results_dir / "curve.jsonl",
        heldout,
        reward_fn,
        every=c.eval_every,
        max_new_tokens=base.eval_max_new_tokens,
        batch_size=base.eval_batch_size,
    )
    started = time.perf_counter()
    config = train_config_for(c, status.preset, status.seed, status.run_dir)
    if not base.dataset:
        # synthetic task: the comparison's fixed held-out set replaces the run's own
        # before/after scoring (the train split never overlaps it, whatever the seed)
        config.num_eval_prompts = 0
    if status.state == "resume":
        _check_same_run(status.run_dir, config)
        log(f"[{status.name}] resuming from {status.checkpoint}")
        resume_training(status.run_dir, callbacks=[callback])
    else:
        if status.run_dir.exists() and _is_main():  # killed before its first checkpoint
            shutil.rmtree(status.run_dir)
        log(f"[{status.name}] training from scratch in {status.run_dir}")
        run_training(config, run_dir=status.run_dir, callbacks=[callback])
    if not _is_main():
        return {}
    summary = _finish_run(status, c, base.max_steps, fp_id, time.perf_counter() - started)
    if not c.keep_checkpoints:
        for ckpt in status.run_dir.glob("checkpoint-*"):
            shutil.rmtree(ckpt, ignore_errors=True)
    return summary


def run_comparison(c: CompareConfig, *, log: Any = print, train: bool = True) -> dict[str, Any]:
    """Train every unfinished run (in series), then write the table and the plot.

    With ``train=False`` only the table and plot are (re)built from ``results``.
    Returns ``{"table": [...rows], "runs": [RunStatus...], "paths": {...}}``.
    """
    from gcpo.train.data import build_data, load_reward

    validate(c)
    base = train_config_for(c, c.presets[0], c.heldout_seed, "-")
    fp_id = _fingerprint_id(_check_results_dir(c) if train else _fingerprint(c))
    plan = plan_runs(c)
    todo = [s for s in plan if s.state != "done" and (not c.only or s.preset in c.only)]
    if train and todo:
        # the fixed held-out set: the task's held-out split drawn with heldout_seed (or the
        # dataset's held-out rows), identical for every run
        _, heldout = build_data(base)
        if not heldout:
            raise ConfigError("num_eval_prompts: the comparison needs held-out prompts (> 0)")
        reward_fn = load_reward(base)
        done = sum(s.state == "done" for s in plan)
        others = len(plan) - done - len(todo)  # unfinished runs of presets outside --only
        left_out = f", {others} left to other invocations (--only)" if others else ""
        log(
            f"gcpo compare: {len(plan)} runs ({done} done{left_out}), "
            f"{len(heldout)} held-out prompts every {c.eval_every} steps; results in {c.results}"
        )
        for i, status in enumerate(todo):
            log(f"run {i + 1}/{len(todo)}: {status.name} ({status.state})")
            _run_one(status, c, heldout, reward_fn, base, fp_id, log)
            gc.collect()
    if not _is_main():
        return {"table": [], "markdown": "", "runs": plan, "paths": {}}
    return summarise_comparison(c, title=_title(c, base))


def _title(c: CompareConfig, base: Any) -> str:
    source = base.dataset or base.task
    per_step = base.per_device_train_batch_size * base.gradient_accumulation_steps
    return (
        f"{base.model} on {source}: {base.max_steps} steps of {per_step // base.num_generations} "
        f"prompts x G={base.num_generations}, lr {base.learning_rate:g}, T={base.temperature:g}; "
        f"held-out: {base.num_eval_prompts} prompts, greedy, every {c.eval_every} steps"
    )


# ------------------------------------------------------------------------------------------
# Table and plot
# ------------------------------------------------------------------------------------------


def t_interval(values: list[float], level: float = 0.95) -> tuple[float | None, float | None]:
    """Student-t confidence interval of the mean of ``values`` ((None, None) for n < 2)."""
    from scipy.stats import t

    n = len(values)
    if n < 2:
        return None, None
    mean = sum(values) / n
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    half = float(t.ppf(0.5 + level / 2, n - 1)) * sd / math.sqrt(n)
    return mean - half, mean + half


def _load_run(results: Path, name: str) -> dict[str, Any] | None:
    """The summary of run ``name`` in ``results`` once it is finished, else None."""
    path = results / "runs" / name / "summary.json"
    try:
        summary = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    except json.JSONDecodeError:
        return None
    return summary if summary.get("finished") else None


def _fmt(v: float | None, digits: int = 3, sign: bool = False) -> str:
    if v is None:
        return "n/a"
    return f"{v:+.{digits}f}" if sign else f"{v:.{digits}f}"


def _ci_text(mean: float | None, lo: float | None, hi: float | None, sign: bool = False) -> str:
    if mean is None:
        return "n/a"
    if lo is None or hi is None:
        return _fmt(mean, sign=sign)
    return f"{_fmt(mean, sign=sign)} [{_fmt(lo, sign=sign)}, {_fmt(hi, sign=sign)}]"


def table_rows(c: CompareConfig) -> list[dict[str, Any]]:
    """One row per preset from the finished runs in ``results`` (see the module docstring)."""
    results = Path(c.results)
    runs = {(p, s): _load_run(results, run_name(p, s)) for p in c.presets for s in c.seeds}
    rows = []
    paired: dict[tuple[str, str], dict[int, float]] = {}  # (preset, metric) -> seed -> diff
    for preset in c.presets:
        done = {s: run for s in c.seeds if (run := runs[preset, s]) is not None}
        finals = [r["final_accuracy"] for r in done.values() if r["final_accuracy"] is not None]
        areas = [r["area"] for r in done.values() if r["area"] is not None]
        row: dict[str, Any] = {
            "preset": preset,
            "seeds_done": len(done),
            "seeds": len(seeds_of(c, preset)),
        }
        row["final_mean"] = _mean(finals)
        row["final_ci_low"], row["final_ci_high"] = t_interval(finals)
        row["area_mean"] = _mean(areas)
        row["area_ci_low"], row["area_ci_high"] = t_interval(areas)
        for key in ("final", "area"):
            metric = "final_accuracy" if key == "final" else "area"
            by_seed: dict[int, float] = {}
            for s in c.seeds:
                mine, base = (
                    runs[preset, s],
                    runs[c.baseline, s] if c.baseline in c.presets else None,
                )
                if mine and base and mine[metric] is not None and base[metric] is not None:
                    by_seed[s] = mine[metric] - base[metric]
            diffs = list(by_seed.values())
            per_seed = [f"s{s}:{d:+.3f}" for s, d in by_seed.items()]
            paired[preset, key] = {} if preset == c.baseline else by_seed
            row[f"{key}_diff_mean"] = _mean(diffs) if preset != c.baseline else None
            lo, hi = t_interval(diffs) if preset != c.baseline else (None, None)
            row[f"{key}_diff_ci_low"], row[f"{key}_diff_ci_high"] = lo, hi
            row[f"{key}_diff_per_seed"] = " ".join(per_seed) if preset != c.baseline else ""
        reached = [r["steps_to_threshold"] for r in done.values()]
        hit = [s for s in reached if s is not None]
        row["steps_to_threshold_mean"] = _mean([float(s) for s in hit])
        row["threshold_reached"] = len(hit)
        spreads = [r["weight_spread"] for r in done.values() if r.get("weight_spread") is not None]
        row["weight_spread_mean"] = _mean(spreads)
        active = [
            r["mean_active_groups"]
            for r in done.values()
            if r.get("mean_active_groups") is not None
        ]
        row["active_groups_mean"] = _mean(active)
        row["start_accuracy"] = _mean(
            [
                r["heldout_accuracy_start"]
                for r in done.values()
                if r.get("heldout_accuracy_start") is not None
            ]
        )
        rows.append(row)
    if c.reference is not None:
        for row in rows:
            if row["preset"] in (c.baseline, c.reference):
                continue
            for key in ("final", "area"):
                f = gain_fraction(paired[row["preset"], key], paired[c.reference, key])
                row[f"{key}_fraction"] = f["fraction"]
                row[f"{key}_fraction_seeds"] = f["seeds"]
                row[f"{key}_fraction_gain"] = f["gain"]
                row[f"{key}_reference_gain"] = f["reference_gain"]
                row[f"{key}_reference_ci_low"], row[f"{key}_reference_ci_high"] = f["reference_ci"]
    return rows


def gain_fraction(mine: dict[int, float], reference: dict[int, float]) -> dict[str, Any]:
    """This arm's paired gain over the baseline as a fraction of the reference arm's, on the
    seeds both finished: ``fraction`` = mean(mine) / mean(reference) there, given only when the
    reference's gain is distinguishable from 0 (its 95 % t-interval excludes 0), else None: a
    fraction of no measurable gain is no number."""
    seeds = sorted(set(mine) & set(reference))
    ref = [reference[s] for s in seeds]
    own = [mine[s] for s in seeds]
    lo, hi = t_interval(ref)
    gain = _mean(ref)
    measurable = lo is not None and hi is not None and (lo > 0 or hi < 0)
    return {
        "seeds": len(seeds),
        "gain": _mean(own),
        "reference_gain": gain,
        "reference_ci": (lo, hi),
        "fraction": (_mean(own) or 0.0) / gain if measurable and gain else None,
    }


def table_markdown(rows: list[dict[str, Any]], c: CompareConfig, title: str = "") -> str:
    lines = [f"### {title}", ""] if title else []
    lines += [
        f"Held-out accuracy (greedy) per preset over seeds {c.seeds}: mean [95 % t-interval]. "
        f"Paired differences are against `{c.baseline}` on the same seed (per seed, then mean "
        f"[95 % t-interval]). Area = mean held-out accuracy over training (trapezoid over the "
        f"eval points, higher = learnt earlier). Steps to {c.threshold:g}: mean over the seeds "
        f"that reached it (reached/done). Weight spread: mean over steps of the std of the "
        f"applied weights over active groups (`gcpo/weight_std`).",
        "",
        f"| preset | seeds | final accuracy | final − {c.baseline} | area | area − {c.baseline} "
        f"| steps to {c.threshold:g} | weight spread | active groups/step |",
        "|---|---:|---|---|---|---|---:|---:|---:|",
    ]
    for r in rows:
        base = r["preset"] == c.baseline
        diff_final = (
            "—"
            if base
            else _ci_text(
                r["final_diff_mean"], r["final_diff_ci_low"], r["final_diff_ci_high"], sign=True
            )
        )
        diff_area = (
            "—"
            if base
            else _ci_text(
                r["area_diff_mean"], r["area_diff_ci_low"], r["area_diff_ci_high"], sign=True
            )
        )
        if not base and r["final_diff_per_seed"]:
            diff_final += f" ({r['final_diff_per_seed']})"
        steps = (
            f"{r['steps_to_threshold_mean']:.1f} ({r['threshold_reached']}/{r['seeds_done']})"
            if r["steps_to_threshold_mean"] is not None
            else f"not reached (0/{r['seeds_done']})"
        )
        lines.append(
            f"| {r['preset']} | {r['seeds_done']}/{r['seeds']} | "
            f"{_ci_text(r['final_mean'], r['final_ci_low'], r['final_ci_high'])} | {diff_final} | "
            f"{_ci_text(r['area_mean'], r['area_ci_low'], r['area_ci_high'])} | {diff_area} | "
            f"{steps} | {_fmt(r['weight_spread_mean'])} | {_fmt(r['active_groups_mean'], 2)} |"
        )
    start = [r["start_accuracy"] for r in rows if r["start_accuracy"] is not None]
    if start:
        lines += ["", f"Held-out accuracy of the starting model: {start[0]:.3f}."]
    if c.reference is not None:
        lines += [
            "",
            f"Fraction of `{c.reference}`'s gain over `{c.baseline}` that each arm reaches "
            f"(paired, on the seeds the arm and `{c.reference}` both finished): the arm's mean "
            f"gain / `{c.reference}`'s mean gain; only where `{c.reference}`'s gain is "
            "distinguishable from 0 (its 95 % t-interval excludes 0), else there is no gain "
            "to take a fraction of.",
            "",
            "| preset | seeds | final: fraction | area: fraction |",
            "|---|---:|---|---|",
        ]
        for r in rows:
            if r["preset"] in (c.baseline, c.reference):
                continue
            cells = []
            for key in ("final", "area"):
                ref = _ci_text(
                    r[f"{key}_reference_gain"],
                    r[f"{key}_reference_ci_low"],
                    r[f"{key}_reference_ci_high"],
                    sign=True,
                )
                gain = _fmt(r[f"{key}_fraction_gain"], sign=True)
                if not r[f"{key}_fraction_seeds"]:
                    cells.append("no shared seed")
                elif r[f"{key}_fraction"] is None:
                    cells.append(f"none: {c.reference} {ref} not distinguishable from 0 (this arm {gain})")
                else:
                    cells.append(f"**{r[f'{key}_fraction']:.2f}** ({gain} of {ref})")
            seeds = r["final_fraction_seeds"]
            lines.append(f"| {r['preset']} | {seeds} | {cells[0]} | {cells[1]} |")
    return "\n".join(lines) + "\n"


def plot_curves(c: CompareConfig, path: Path, title: str = "") -> Path | None:
    """Held-out accuracy over steps: per preset the mean over seeds and a min-max band; and the
    applied-weight spread (gcpo/weight_std) per step, mean over seeds."""
    import io

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gcpo.io import atomic_write_bytes

    results = Path(c.results)
    fig, (ax, ax2) = plt.subplots(1, 2, figsize=(12, 4.4))
    drawn = False
    for i, preset in enumerate(c.presets):
        colour = f"C{i}"
        curves = []
        spreads: dict[int, list[float]] = {}
        for seed in c.seeds:
            run = results / "runs" / run_name(preset, seed)
            if _load_run(results, run_name(preset, seed)) is None:
                continue
            pts = {
                int(r["step"]): float(r["heldout_accuracy"])
                for r in _read_rows(run / "curve.jsonl")
                if isinstance(r.get("heldout_accuracy"), (int, float))
            }
            curves.append(pts)
            for r in _read_rows(run / "metrics.jsonl"):
                v = r.get("gcpo/weight_std")
                if isinstance(v, (int, float)) and isinstance(r.get("step"), int):
                    spreads.setdefault(r["step"], []).append(float(v))
        if not curves:
            continue
        steps = sorted(set.intersection(*(set(p) for p in curves)))
        mean = [sum(p[s] for p in curves) / len(curves) for s in steps]
        lo = [min(p[s] for p in curves) for s in steps]
        hi = [max(p[s] for p in curves) for s in steps]
        ax.plot(steps, mean, color=colour, marker="o", ms=3, label=f"{preset} (n={len(curves)})")
        if len(curves) > 1:
            ax.fill_between(steps, lo, hi, color=colour, alpha=0.15, linewidth=0)
        if spreads:
            xs = sorted(spreads)
            ax2.plot(
                xs, [sum(spreads[x]) / len(spreads[x]) for x in xs], color=colour, label=preset
            )
        drawn = True
    if not drawn:
        plt.close(fig)
        return None
    ax.axhline(c.threshold, color="grey", linestyle=":", linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("held-out accuracy (greedy)")
    ax.set_title("held-out accuracy: mean over seeds, band = min..max")
    ax.legend(fontsize=8)
    ax2.set_xlabel("step")
    ax2.set_ylabel("std of applied weights (active groups)")
    ax2.set_title("applied-weight spread (mean over seeds)")
    if ax2.lines:
        ax2.legend(fontsize=8)
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=110)
    plt.close(fig)
    return atomic_write_bytes(path, buf.getvalue())


def summarise_comparison(c: CompareConfig, *, title: str = "") -> dict[str, Any]:
    """(Re)write table.csv, table.md and curves.png from the finished runs in ``results``."""
    from gcpo.diagnostics.report import rows_to_csv
    from gcpo.io import atomic_write_text

    results = Path(c.results)
    rows = table_rows(c)
    results.mkdir(parents=True, exist_ok=True)
    atomic_write_text(results / "table.csv", rows_to_csv(rows))
    md = table_markdown(rows, c, title)
    atomic_write_text(results / "table.md", md)
    plot = plot_curves(c, results / "curves.png", title)
    return {
        "table": rows,
        "markdown": md,
        "runs": plan_runs(c),
        "paths": {
            "table_md": str(results / "table.md"),
            "table_csv": str(results / "table.csv"),
            "plot": str(plot) if plot else None,
        },
    }
