"""``gcpo analyze``: does an uncertainty signal track per-prompt policy-gradient noise?

For each of N prompts: sample G completions from the policy, score them (rewards), compute every
uncertainty signal of the group, the GRPO advantages ``A_i``, and the per-completion policy
gradients ``g_i = A_i * grad l_i`` on a parameter subset (see :mod:`gcpo.gradients`),
then the group's gradient variance V, ``||g_bar||^2`` and NSR. Each finished group is appended to
``groups.jsonl`` at once, so an interrupted run resumes where it stopped. At the end, the
calibrated/weighted form of every weighting preset is computed over all groups and the outputs
are (re)written:

- ``groups.csv``: one line per group (prompt id, every signal, every preset's calibrated
  uncertainty and weight, RD, V, ||g_bar||^2, NSR, accuracy, mean completion length);
- ``correlations.md`` / ``correlations.csv``: Spearman rho with bootstrap 95 % CIs of every signal
  against V and NSR over groups with RD > 0, the partial Spearman given RD, and given RD and
  mean completion length jointly;
- ``comparison.md`` / ``comparison.csv``: the paper's comparison, rho(CD, T) - rho(SE, T) and
  rho(BoT, T) - rho(SE, T) for T = V, NSR, with paired bootstrap CIs over groups (also appended
  to ``correlations.md``);
- ``scatter_V.png`` / ``scatter_NSR.png``.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gcpo.diagnostics.columns import (
    group_signals,
    make_scorers,
    preset_columns,
    signal_plan,
)
from gcpo.diagnostics.items import Item, load_items
from gcpo.embedders import EmbedderConfig
from gcpo.fields import ConfigError, coerce, field, to_dict, validate
from gcpo.tasks.synthetic import SYNTHETIC_TASKS

__all__ = ["AnalyzeConfig", "AnalysisResult", "run_analysis", "write_report"]

DEFAULT_PRESETS = ("seed-grpo", "seed-grpo-strong", "gcpo", "gcpo-bot")


@dataclass
class AnalyzeConfig:
    """Everything ``gcpo analyze`` needs; the CLI flags map one-to-one onto these fields."""

    model: str = field(
        "smollm2-135m-instruct",
        help="policy: 'smollm2-135m-instruct' (embedded default), 'tiny-random', a local HF "
        "directory or a hub id available offline",
    )
    task_split: str = field(
        "test",
        help="split of a synthetic task the prompts come from (test = held out from training; "
        "train gives more distinct prompts, e.g. graded-arithmetic's 1-digit levels)",
        choices=("test", "train"),
    )
    task_options: dict[str, Any] = field(
        default_factory=dict,
        help="difficulty knobs of a synthetic task, as in gcpo train (e.g. {levels: [1d+, 2d+]})",
    )
    task: str | None = field(None, help="synthetic task: " + ", ".join(SYNTHETIC_TASKS))
    benchmark: str | None = field(
        None,
        help="benchmark (math500, aime24, olympiadbench; hotpotqa, qasper, narrativeqa scored by "
        "F1), read from --data-dir, else ../shared/data next to the repository, else the hub",
    )
    data_dir: str | None = field(
        None, help="directory holding <benchmark>/test.jsonl (default: the shared data directory)"
    )
    max_level: int = field(
        0,
        help="benchmark items of MATH difficulty level <= this only (0 = no filter); the prompts "
        "are then a seeded sample of those",
        min=0,
        max=5,
    )
    prompts: int = field(32, help="number of prompt groups", min=1)
    group_size: int = field(8, help="completions per prompt (G)", min=2)
    params: str = field(
        "last-block",
        help="parameter subset for the gradients: last-block, lm_head, all, or a name regex",
    )
    objective: str = field(
        "mean",
        help="log-likelihood whose gradient gives V and NSR: mean (per-token mean log-prob l_i, "
        "as GRPO's length-normalised objective) or sum (sequence log-probability); the other "
        "one's V and NSR are reported beside them (same gradients rescaled by the lengths)",
        choices=("mean", "sum"),
    )
    project_dim: int = field(
        0,
        help="CountSketch the per-completion gradients to this many dims (0 = exact gradients); "
        "relative error of squared norms has std <= sqrt(2/k)",
        min=0,
    )
    max_new_tokens: int = field(64, help="generation length limit", min=1)
    temperature: float = field(1.0, help="sampling temperature (log-probs use the same)", min=1e-3)
    top_p: float = field(1.0, help="nucleus sampling threshold", min=0.0, max=1.0)
    seed: int = field(0, help="seed for prompt selection, sampling, projection and bootstrap")
    embedder: EmbedderConfig = field(
        default_factory=EmbedderConfig,
        help="sentence embedder ('embedder: NAME' sets embedder.name: all-MiniLM-L6-v2, hashing, "
        "or a path)",
    )
    cluster_threshold: float = field(
        0.9, help="cosine threshold of the embedding clusterer (se_emb_lik)", min=-1.0, max=1.0
    )
    signals: list[str] = field(
        default_factory=list,
        help="more registered signals to report besides the built-in ones, by name or alias "
        "(e.g. a plugin's: --plugin my_signals signals=[my_signal])",
    )
    presets: list[str] = field(
        default_factory=lambda: list(DEFAULT_PRESETS),
        help="weighting presets whose calibrated uncertainty and weight are reported",
    )
    bootstrap: int = field(1000, help="bootstrap resamples for the 95 % CIs", min=10)
    torch_threads: int = field(0, help="torch intra-op CPU threads (0 = torch's default)", min=0)
    output: str = field("runs/analyze", help="output directory (resumable)")
    progress: bool = field(True, help="show a progress bar")

    def __post_init__(self) -> None:
        from gcpo.presets import check_preset

        self.embedder = coerce(self.embedder, EmbedderConfig, "embedder")  # a name or mapping too
        for name in self.presets:
            check_preset(name, "presets")


# Fields that must match for a rerun to resume into an existing output directory.
_FINGERPRINT = (
    "model",
    "task",
    "benchmark",
    "max_level",
    "task_split",
    "task_options",
    "group_size",
    "params",
    "objective",
    "project_dim",
    "max_new_tokens",
    "temperature",
    "top_p",
    "seed",
    "embedder",
    "cluster_threshold",
    "signals",
)


@dataclass
class AnalysisResult:
    output: Path
    rows: list[dict[str, Any]]
    correlations: list[dict[str, Any]]
    new_groups: int


# ------------------------------------------------------------------------------------------
# One group
# ------------------------------------------------------------------------------------------


def _seed_of(prompt_id: str, seed: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{prompt_id}".encode()).digest()[:4], "big")


def _sample(
    model: Any, tokenizer: Any, item: Item, cfg: AnalyzeConfig
) -> tuple[Any, list[Any], list[float], list[float]]:
    """G sampled completions of one prompt.

    Returns (prompt ids ``[T]``, G completion id tensors (cut after the first EOS, which is
    kept: the policy chose it), G mean token log-probs ``l_i`` and G mean token entropies, both
    from the sampling logits divided by the temperature). Seeded by (seed, prompt id), so a
    resumed run draws the same completions for a prompt whatever the order.
    """
    import torch

    text = tokenizer.apply_chat_template(item.messages, tokenize=False, add_generation_prompt=True)
    prompt = tokenizer(text, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    torch.manual_seed(_seed_of(item.prompt_id, cfg.seed))
    device = next(iter(model.parameters())).device
    batch = prompt[None].repeat(cfg.group_size, 1).to(device)
    with torch.no_grad():
        out = model.generate(
            input_ids=batch,
            attention_mask=torch.ones_like(batch),
            do_sample=True,
            temperature=cfg.temperature,
            top_p=cfg.top_p,
            top_k=0,
            max_new_tokens=cfg.max_new_tokens,
            pad_token_id=tokenizer.pad_token_id,
            output_logits=True,
            return_dict_in_generate=True,
        )
    eos = {tokenizer.eos_token_id} | set(_as_list(model.generation_config.eos_token_id))
    gen = out.sequences[:, prompt.numel() :].cpu()
    completions, logprobs, entropies = [], [], []
    for i, row in enumerate(gen):
        ids = row.tolist()
        cut = next((j + 1 for j, t in enumerate(ids) if t in eos), len(ids))
        completions.append(row[:cut])
        if cut == 0:
            logprobs.append(0.0)
            entropies.append(0.0)
            continue
        logits = torch.stack([step[i] for step in out.logits[:cut]]).float().cpu()
        logp = torch.log_softmax(logits / cfg.temperature, dim=-1)
        logprobs.append(float(logp.gather(-1, row[:cut, None]).mean()))
        entropies.append(float(-(logp.exp() * logp).sum(-1).mean()))
    return prompt.cpu(), completions, logprobs, entropies


def _as_list(x: Any) -> list[Any]:
    if x is None:
        return []
    return list(x) if isinstance(x, (list, tuple)) else [x]


def _analyse_group(
    item: Item,
    model: Any,
    tokenizer: Any,
    params: list[Any],
    sketch: Any,
    scorers: list[tuple[Any, list[str]]],
    cfg: AnalyzeConfig,
) -> dict[str, Any]:
    import torch

    from gcpo.advantages import grpo_advantages
    from gcpo.diagnostics.stats import gradient_noise
    from gcpo.gradients import completion_gradients
    from gcpo.scoring import Groups

    started = time.perf_counter()
    prompt, completions, logprobs, entropies = _sample(model, tokenizer, item, cfg)
    plen = prompt.numel()
    texts = [tokenizer.decode(c, skip_special_tokens=True) for c in completions]
    rewards = [item.reward(t) for t in texts]
    adv = grpo_advantages(torch.tensor([rewards]))[0]
    seqs = [torch.cat([prompt, c]) for c in completions]
    grads = completion_gradients(
        model,
        params,
        seqs,
        [plen] * len(seqs),
        adv,
        sketch=sketch,
        temperature=cfg.temperature,
        skip_zero=True,
        objective=cfg.objective,
    )
    noise = gradient_noise(grads.grads)
    # The other objective's V and NSR come free: per completion, grad of the summed log-prob is
    # n_i times grad of the mean (n_i = completion length), and the sketch is linear.
    n = grads.num_tokens.to(torch.float32)
    scale = {
        "mean": torch.ones_like(n) if cfg.objective == "mean" else 1.0 / n.clamp_min(1.0),
        "sum": n if cfg.objective == "mean" else torch.ones_like(n),
    }
    by_objective = {k: gradient_noise(grads.grads * v[:, None]) for k, v in scale.items()}
    # no precomputed answers: each scorer applies the task kind's answer key, as in training
    groups = Groups.from_lists(
        [tokenizer.decode(prompt)],
        [texts],
        [rewards],
        logprobs=[logprobs],
        token_entropy=[entropies],
        gradients=grads.grads[None],  # for the grad_nsr oracle (signals=[grad_nsr], preset oracle)
    )
    row: dict[str, Any] = {"prompt_id": item.prompt_id}
    if "level" in item.meta:  # graded-arithmetic's difficulty level, MATH's level
        row["level"] = str(item.meta["level"])
    row.update(group_signals(groups, scorers))
    row.update(
        {
            "grad_variance": float(noise.variance),
            "grad_mean_sq_norm": float(noise.mean_sq_norm),
            "grad_nsr": float(noise.nsr),
            **{f"grad_variance_{k}": float(v.variance) for k, v in by_objective.items()},
            **{f"grad_nsr_{k}": float(v.nsr) for k, v in by_objective.items()},
            "accuracy": sum(rewards) / len(rewards),
            "mean_tokens": float(grads.num_tokens.float().mean()),
            "seconds": round(time.perf_counter() - started, 3),
            "rewards": rewards,
            "logprobs": logprobs,
            "completions": texts,
        }
    )
    return row


# ------------------------------------------------------------------------------------------
# Driver
# ------------------------------------------------------------------------------------------


# embedder fields that change the embeddings (batch size and device do not)
_EMBEDDER_FINGERPRINT = ("name", "max_seq_length", "max_windows")


def _fingerprint(cfg: AnalyzeConfig) -> dict[str, Any]:
    d = to_dict(cfg)
    d["embedder"] = {k: d["embedder"][k] for k in _EMBEDDER_FINGERPRINT}
    return {k: d[k] for k in _FINGERPRINT}


def _check_resume(out: Path, cfg: AnalyzeConfig) -> None:
    from gcpo.io import atomic_write_text

    meta = out / "run.json"
    want = _fingerprint(cfg)
    if meta.is_file():
        have = json.loads(meta.read_text(encoding="utf-8")).get("fingerprint", {})
        defaults = _fingerprint(AnalyzeConfig())
        if isinstance(have.get("embedder"), str):  # written before the embedder was nested
            have["embedder"] = {**defaults["embedder"], "name": have["embedder"]}
        # a field added after the run was started counts as its default
        diff = [k for k in want if have.get(k, defaults[k]) != want[k]]
        if diff:
            k = diff[0]
            raise ConfigError(
                f"output {str(out)!r} holds a run with {k}={have.get(k)!r}, this run has "
                f"{k}={want[k]!r}; use another --output or delete the directory"
            )
    atomic_write_text(
        meta, json.dumps({"fingerprint": want, "config": to_dict(cfg)}, indent=2) + "\n"
    )


def write_report(
    rows: list[dict[str, Any]], cfg: AnalyzeConfig, out: Path, *, plots: bool = True
) -> list[dict[str, Any]]:
    """Write groups.csv, correlations.{md,csv} and scatter plots from the per-group rows."""
    from gcpo.diagnostics.report import (
        TARGETS,
        comparison_markdown,
        comparison_rows,
        correlation_rows,
        correlations_markdown,
        level_markdown,
        level_rows,
        rows_to_csv,
        scatter_plot,
    )
    from gcpo.io import atomic_write_text

    columns_plan, preset_column = signal_plan(cfg.presets, cfg.cluster_threshold, cfg.signals)
    extra = preset_columns(rows, cfg.presets, preset_column)
    table = [{**r, **e} for r, e in zip(rows, extra, strict=True)]
    cal = [f"cal_{p}" for p in cfg.presets if p in preset_column]
    signals = list(columns_plan) + cal
    columns = (
        ["prompt_id"]
        + signals
        + [f"weight_{p}" for p in cfg.presets]
        + ["grad_variance", "grad_mean_sq_norm", "grad_nsr"]
        + [f"grad_{t}_{o}" for o in ("mean", "sum") for t in ("variance", "nsr")]
        + ["accuracy", "mean_tokens", "level", "seconds"]
    )
    atomic_write_text(out / "groups.csv", rows_to_csv(table, columns))
    corr = correlation_rows(table, signals, n_resamples=cfg.bootstrap, seed=cfg.seed)
    n_inf = sum(1 for r in table if r["reward_dispersion"] > 0)
    source = cfg.task or cfg.benchmark
    title = (
        f"{cfg.model} on {source}: {len(table)} prompts x G={cfg.group_size}, params={cfg.params}"
        + f", objective={cfg.objective}"
        + (f", CountSketch k={cfg.project_dim}" if cfg.project_dim else "")
    )
    md = correlations_markdown(corr, n_groups=n_inf, n_total=len(table), title=title)
    comp = comparison_rows(table, n_resamples=cfg.bootstrap, seed=cfg.seed)
    comp_md = comparison_markdown(comp, n_groups=n_inf)
    md += "\n" + comp_md
    # the other objective, from the same gradients rescaled by the completion lengths (rows
    # written before these columns existed have none: then this part is left out)
    other = "sum" if cfg.objective == "mean" else "mean"
    has_other = bool(table) and all(f"grad_variance_{other}" in r for r in table)
    targets = {f"grad_variance_{other}": f"V[{other}]", f"grad_nsr_{other}": f"NSR[{other}]"}
    if has_other:
        corr_o = correlation_rows(
            table, signals, n_resamples=cfg.bootstrap, seed=cfg.seed, targets=targets
        )
        comp_o = comparison_rows(table, n_resamples=cfg.bootstrap, seed=cfg.seed, targets=targets)
        corr, comp = corr + corr_o, comp + comp_o
        md += (
            f"\n#### The same groups, objective={other}: gradients of the "
            + ("summed (sequence)" if other == "sum" else "mean (per-token)")
            + " log-probability\n\n"
            + correlations_markdown(corr_o, n_groups=n_inf, n_total=len(table), targets=targets)
            + "\n"
            + comparison_markdown(comp_o, n_groups=n_inf)
        )
        comp_md += "\n" + comparison_markdown(comp_o, n_groups=n_inf)
    # difficulty level as a third confound (task kinds with levels): both objectives at once
    all_targets = {**TARGETS, **(targets if has_other else {})}
    lv = level_rows(table, signals, n_resamples=cfg.bootstrap, seed=cfg.seed, targets=all_targets)
    if lv:
        md += "\n#### Difficulty level held fixed too\n\n" + level_markdown(
            lv, n_groups=n_inf, targets=all_targets
        )
        atomic_write_text(
            out / "levels.csv",
            rows_to_csv([{k: v for k, v in r.items() if k != "levels"} for r in lv]),
        )
    atomic_write_text(out / "correlations.csv", rows_to_csv(corr))
    atomic_write_text(out / "comparison.csv", rows_to_csv(comp))
    atomic_write_text(out / "comparison.md", comp_md)
    atomic_write_text(out / "correlations.md", md)
    if plots:
        shown = ["se_lik", "cd", "bot"]
        shown += [c for c in ("cal_gcpo", "cal_seed-grpo") if c in signals] + ["reward_dispersion"]
        shown += ["mean_tokens"]  # the length confound, in the same picture
        plots_of = [("grad_variance", "V"), ("grad_nsr", "NSR")]
        if has_other:
            plots_of += [(f"grad_variance_{other}", f"V_{other}"), (f"grad_nsr_{other}", f"NSR_{other}")]
        for target, label in plots_of:
            scatter_plot(
                table, shown, target, out / f"scatter_{label}.png", title=f"{label}: {title}"
            )
    return corr


def run_analysis(
    cfg: AnalyzeConfig, *, progress: bool | None = None, log: Callable[[str], None] = print
) -> AnalysisResult:
    """Run (or resume) the analysis described by ``cfg`` and write every output
    (``progress`` overrides ``cfg.progress``)."""
    import torch
    from tqdm.auto import tqdm

    from gcpo.embedders import get_embedder
    from gcpo.gradients import CountSketch, select_parameters
    from gcpo.io import append_jsonl, recover_jsonl
    from gcpo.models import load_policy

    validate(cfg)
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    # before the model: bad task/benchmark input fails fast
    items = load_items(
        task=cfg.task,
        benchmark=cfg.benchmark,
        prompts=cfg.prompts,
        seed=cfg.seed,
        data_dir=cfg.data_dir,
        max_level=cfg.max_level,
        split=cfg.task_split,
        options=cfg.task_options,
    )
    _check_resume(out, cfg)
    groups_path = out / "groups.jsonl"
    done = recover_jsonl(groups_path, required=("prompt_id",))  # drops a line cut by a kill
    done_ids = {r["prompt_id"] for r in done}
    todo = [it for it in items if it.prompt_id not in done_ids]
    if done_ids:
        log(f"resuming: {len(done_ids)} groups already in {groups_path}, {len(todo)} to go")
    new_rows: list[dict[str, Any]] = []
    if todo:
        if cfg.torch_threads:
            torch.set_num_threads(cfg.torch_threads)
        model, tokenizer = load_policy(cfg.model)
        named = select_parameters(model, cfg.params)
        params = [p for _, p in named]
        n_params = sum(p.numel() for p in params)
        sketch = (
            CountSketch([p.numel() for p in params], cfg.project_dim, seed=cfg.seed)
            if cfg.project_dim
            else None
        )
        log(
            f"gradients on {len(params)} tensors ({n_params:,} parameters, params={cfg.params!r})"
            + (f", CountSketch to {cfg.project_dim} dims" if sketch else ", exact")
        )
        scorers = make_scorers(
            signal_plan(cfg.presets, cfg.cluster_threshold, cfg.signals)[0],
            get_embedder(cfg.embedder),
            answer_fn=items[0].task.answer_key,
        )
        show = cfg.progress if progress is None else progress
        for item in tqdm(todo, desc="groups", unit="group", disable=not show):
            row = _analyse_group(item, model, tokenizer, params, sketch, scorers, cfg)
            append_jsonl(groups_path, row)
            new_rows.append(row)
    wanted = {it.prompt_id for it in items}
    rows = [r for r in done + new_rows if r["prompt_id"] in wanted]
    corr = write_report(rows, cfg, out)
    return AnalysisResult(out, rows, corr, len(new_rows))
