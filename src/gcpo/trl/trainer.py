"""``GCPOTrainer``: TRL's ``GRPOTrainer`` with each prompt group's advantages scaled by its weight.

The whole GCPO step, in the order it runs inside one TRL generation batch::

    output = GRPOTrainer._generate_and_score_completions(inputs)   # TRL: generate, reward, advantages
        └─ self._calculate_rewards(...)   # TRL gathers rewards of the whole batch; we keep a reference
    texts  = gather_object(local prompts / completions)           # full batch, on every process
    groups = Groups.from_lists(... G = num_generations per group ...)
    result = scorer.score(groups, rank_state)                      # signals -> weight per group [B]
    output["advantages"] *= weight[group of each local sample]      # this process's slice only

TRL is touched only through ``super()`` calls and the attributes those calls document (see
``tests/test_trl_trainer.py``, which pins them):

- ``RepeatSampler`` lays each prompt's ``num_generations`` completions out consecutively across
  the *global* batch, so sample ``j`` of the gathered batch belongs to group ``j // G``; a group
  may straddle processes, which is why the weights are computed on the gathered batch.
- ``_calculate_rewards`` returns the gathered ``[N_global, n_funcs]`` reward matrix.
- ``_generate_and_score_completions`` returns the local ``advantages`` ``[N_local]`` and the
  process slice is ``process_index * N_local : (process_index + 1) * N_local``.
- with ``num_iterations > 1`` (or ``steps_per_generation > 1``) the output is buffered and reused,
  so the weight is applied exactly once per generation batch, whatever the ``loss_type``: every
  TRL loss multiplies ``advantages`` into the per-token objective.

Every process computes the same weights from the same gathered data (scoring is deterministic)
and updates its own copy of the rank-normalisation window identically, so no broadcast is needed.
The window is saved as ``gcpo_state.json`` inside every checkpoint and restored on resume.

Likelihood weighting (the ``seed-grpo`` preset) needs each completion's length-normalised
log-likelihood under the sampling policy. When TRL already computed per-token log-probs
(``old_per_token_logps``, or vLLM's ``sampling_per_token_logps``) they are reused; otherwise one
extra no-grad forward pass of the policy computes them (counted in ``gcpo/logprob_s``).

Per-completion policy gradients ``g_i = A_i * grad l_i`` (``A_i`` TRL's advantages before
weighting; the parameter subset and CountSketch of ``gradients=``, :mod:`gcpo.gradients`) are
computed only when a configured signal needs them (the ``grad_nsr`` oracle, ``needs()`` reports
``gradients``) or the live monitor measures this step (``monitor_every``, :mod:`gcpo.trl.monitor`),
and only for the completions of *active* groups (RD > 0; every other row is 0, as its advantages
are): one forward + backward pass per such completion on this process's slice of the batch
(counted in ``gcpo/gradients_s``), then gathered like the log-probs, so every process scores the
same ``[B, G, P]`` tensor. The monitor's window is saved in ``gcpo_state.json`` under
``"monitor"``.
"""

from __future__ import annotations

import logging
import os
import re
import time
import warnings
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

import torch
from accelerate.utils import gather_object
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, rotate_checkpoints
from trl import GRPOTrainer

from gcpo.advantages import weight_advantages
from gcpo.embedders import Embedder, EmbedderConfig
from gcpo.gradients import GradientConfig, GradientProbe, unpadded_sequences
from gcpo.metrics import score_metrics
from gcpo.presets import preset
from gcpo.rewards import sanitize_rewards
from gcpo.rundir import STATE_FILE, read_state, write_state
from gcpo.scoring import FunctionScorer, Groups, GroupScorer, ScoreResult, WeightFunction
from gcpo.signals import gradient_noise_stats, reward_dispersion
from gcpo.tasks.prompts import completion_text, prompt_text
from gcpo.trl.checkpoint import publish_checkpoint, remove_stale_staging, staging_parent
from gcpo.trl.monitor import AlignmentMonitor
from gcpo.weighting import WeightingConfig, WeightingState, active_groups, is_weighted

__all__ = ["GCPOTrainer", "OneGroupPerBatchWarning", "loss_types"]

logger = logging.getLogger(__name__)


def loss_types() -> tuple[str, ...]:
    """The ``loss_type`` values the installed TRL supports, read from its own ``GRPOConfig`` field
    help ("Supported values are 'grpo', 'dr_grpo', ... and 'vespo'."), so the list follows a TRL
    upgrade. Empty when this TRL words it differently (then TRL alone checks the value)."""
    import dataclasses

    from trl import GRPOConfig

    help_text = next(
        (str(f.metadata.get("help", "")) for f in dataclasses.fields(GRPOConfig) if f.name == "loss_type"),
        "",
    )
    found = re.search(r"Supported values are (.*?)\.\s", help_text + " ")
    return tuple(re.findall(r"'([a-z0-9_]+)'", found.group(1))) if found else ()


class OneGroupPerBatchWarning(UserWarning):
    """A weighting that compares groups was given one prompt group per generation batch."""


class GCPOTrainer(GRPOTrainer):
    """Drop-in ``trl.GRPOTrainer`` (TRL 1.16) whose group advantages are scaled by GCPO weights.

    Args (beyond ``GRPOTrainer``'s, all keyword-only):
        weighting: a preset name (``grpo``, ``seed-grpo``, ``gcpo``, ``gcpo-bot``, ...), a
            :class:`~gcpo.weighting.WeightingConfig`, or your own weight function
            ``(groups, state) -> weights[B]`` (see :class:`~gcpo.scoring.FunctionScorer`: it gets
            the gathered batch and a dict saved in every checkpoint). Default ``gcpo``.
        embedder: an embedder object, name or :class:`~gcpo.embedders.EmbedderConfig`
            (default: the offline MiniLM); loaded lazily, never for ``grpo``/``seed-grpo``.
        answer_fn: completion -> canonical final answer, for answer-clustered semantic entropy
            (default ``gcpo.tasks.extract_answer``).
        extra_signals: more signals to compute and log each step (e.g. ``["se", "cd"]``); they
            do not change the weights.
        scorer: a ready :class:`~gcpo.scoring.GroupScorer` (overrides the three above).
        base_model: the Hugging Face id the saved model card names as the base model (default:
            the model config's ``_name_or_path`` when it is not a local directory).
        gradients: a :class:`~gcpo.gradients.GradientConfig` (or its fields as a dict): parameter
            subset, CountSketch dimension (default 4096) and objective of the per-completion
            gradients that the ``grad_nsr`` oracle (``weighting="oracle"``) and the monitor use.
        monitor_every: every this many optimizer steps, measure the gradient variance V and NSR
            of that step's active groups and log the running Spearman rho of every signal (and of
            the applied weight) with them as ``gcpo/align/<label>/V|NSR`` (0 = off, the default;
            see :mod:`gcpo.trl.monitor`).
        monitor_window: the monitor's rho is over the last this many measured groups (saved in
            checkpoints).
        weighting_name: the preset's name in logs and warnings when ``weighting`` is a
            WeightingConfig built from one (``gcpo train`` passes its ``preset``).

    After each generation batch ``self.last_groups`` (the gathered :class:`~gcpo.scoring.Groups`)
    and ``self.last_scores`` (``(group_prompts, ScoreResult)``) describe the full batch; they
    are identical on every process.
    """

    def __init__(
        self,
        *args: Any,
        weighting: WeightingConfig | str | WeightFunction = "gcpo",
        embedder: Embedder | str | EmbedderConfig | None = None,
        answer_fn: Callable[[str], str | None] | None = None,
        extra_signals: Sequence[str] = (),
        scorer: GroupScorer | None = None,
        base_model: str | None = None,
        gradients: GradientConfig | dict[str, Any] | None = None,
        monitor_every: int = 0,
        monitor_window: int = 256,
        weighting_name: str | None = None,
        **kwargs: Any,
    ) -> None:
        self.weighting_name = weighting_name or (weighting if isinstance(weighting, str) else None)
        self.base_model = base_model
        self._init_gradients(gradients, monitor_every, monitor_window)  # checked before TRL's init
        if scorer is None:
            if isinstance(weighting, str):
                weighting = preset(weighting)
            if isinstance(weighting, WeightingConfig):
                scorer = GroupScorer(weighting, embedder, answer_fn)
            elif callable(weighting):
                scorer = FunctionScorer(weighting, embedder=embedder, answer_fn=answer_fn)
            else:
                raise ValueError(
                    "weighting: expected a preset name, a WeightingConfig or a function "
                    f"(groups, state) -> weights, got {type(weighting).__name__}"
                )
        super().__init__(*args, **kwargs)
        self.scorer = scorer
        self.weighting = self.scorer.config
        self.extra_signals = list(extra_signals)
        weighted = is_weighted(self.weighting) or isinstance(self.scorer, FunctionScorer)
        if self.multi_objective_aggregation != "sum_then_normalize" and weighted:
            raise ValueError(
                f"multi_objective_aggregation: got {self.multi_objective_aggregation!r}; GCPO "
                "weighting needs 'sum_then_normalize' (TRL's default): with 'normalize_then_sum' "
                "TRL baselines each completion on the batch, not its group, so a group's reward "
                "dispersion no longer tells whether its advantages move the policy"
            )
        w = self.weighting
        if w.rule == "dgpo" and w.dgpo_dgae and w.dgpo_scale_rewards != str(self.scale_rewards):
            raise ValueError(
                f"weighting.dgpo_scale_rewards: got {w.dgpo_scale_rewards!r} but the trainer's "
                f"scale_rewards is {self.scale_rewards!r}; DGPO's MAD factor undoes the std TRL "
                "divided by, so the two must match"
            )
        self._gcpo_inputs = self.scorer.needs(self.extra_signals)  # fails early on a bad name
        self._gcpo_lengths: list[int] | None = None
        self.gcpo_counts: dict[str, int] = {
            "uniform_fallback": 0,
            "unscorable": 0,
            "rd_clipped": 0,
            "inert_steps": 0,
        }
        self._warn_if_one_group_per_batch()
        # the rank window (presets with rank normalisation), a weight function's dict, or None
        self.gcpo_state: Any = self.scorer.initial_state()
        self.last_scores: tuple[list[str], ScoreResult] | None = None
        self.last_groups: Groups | None = None
        self._gcpo_rewards: torch.Tensor | None = None
        self._gcpo_texts: tuple[list[Any], list[Any]] | None = None

    def _warn_if_one_group_per_batch(self) -> None:
        """Weights are relative between the groups of one generation batch (renormalised to
        mean 1): with a single group per batch they are all 1 and this trains plain GRPO, which
        TRL's defaults (per-device batch 8, ``num_generations`` 8) silently give."""
        g = self.num_generations or 1
        args: Any = self.args  # a GRPOConfig; typed as TrainingArguments by transformers
        groups = args.generation_batch_size // g
        relative = isinstance(self.scorer, FunctionScorer) or (
            is_weighted(self.weighting) and self.weighting.renormalize
        )
        self.gcpo_counts["one_group_per_batch"] = 0
        if groups >= 2 or not relative:
            return
        self.gcpo_counts["one_group_per_batch"] = 1
        what = self.weighting_name or getattr(self.scorer, "name", None) or self.weighting.signal
        warnings.warn(
            f"GCPOTrainer: each generation batch holds {groups} prompt group (generation_batch_size "
            f"{args.generation_batch_size} / num_generations {g}), so weighting {what!r} "
            "renormalises every weight to 1 and this trains as plain GRPO; give it at least 2 "
            f"groups: per_device_train_batch_size (x processes x steps_per_generation) >= {2 * g}, "
            "or generation_batch_size",
            OneGroupPerBatchWarning,
            stacklevel=3,
        )

    # -- TRL extension points (super() first, then our part) ----------------------------------

    def _calculate_rewards(self, inputs, prompts, completions, completion_ids_list):  # type: ignore[no-untyped-def]
        rewards_per_func = super()._calculate_rewards(
            inputs, prompts, completions, completion_ids_list
        )
        # +-inf -> NaN ("unscorable"): TRL's nan_to_num would make an infinite reward a huge advantage
        rewards_per_func = sanitize_rewards(rewards_per_func)
        self._gcpo_rewards = rewards_per_func  # gathered: [N_global, n_reward_funcs]
        self._gcpo_texts = (list(prompts), list(completions))
        # real token counts: TRL zeroes a truncated completion's mask (mask_truncated_completions)
        self._gcpo_lengths = [len(ids) for ids in completion_ids_list]
        return rewards_per_func

    def _generate_and_score_completions(self, inputs):  # type: ignore[no-untyped-def]
        self._gcpo_rewards, self._gcpo_texts = None, None
        output = super()._generate_and_score_completions(inputs)
        if not self.model.training:  # eval loss stays plain GRPO; the rank window is not touched
            return output
        if self._gcpo_rewards is None or self._gcpo_texts is None:
            raise RuntimeError(
                "GCPOTrainer: TRL's _generate_and_score_completions did not call _calculate_rewards; "
                "this TRL version is not supported (pin trl>=1.16,<1.17)"
            )
        weights_local, weights_global = self._group_weights(output)
        output["advantages"] = weight_advantages(output["advantages"], weights_local)
        self._log_applied_advantages(weights_global)
        return output

    def _log_applied_advantages(self, weights: torch.Tensor) -> None:
        """TRL logged the gathered advantages before weighting (completions table): replace
        them by the applied ones, ``weight x advantage``."""
        logged = self._logs.get("advantages") if isinstance(self._logs, dict) else None
        n = weights.numel()
        if not isinstance(logged, deque) or len(logged) < n:
            return
        before = [logged.pop() for _ in range(n)][::-1]
        logged.extend((torch.tensor(before, dtype=torch.float64) * weights.double()).tolist())

    def _get_output_dir(self, trial):  # type: ignore[no-untyped-def]
        staging = getattr(self, "_gcpo_staging", None)
        return staging if staging is not None else super()._get_output_dir(trial=trial)

    def _save_checkpoint(self, model, trial):  # type: ignore[no-untyped-def]
        # The Trainer saves into a staging folder (via _get_output_dir) and the finished
        # checkpoint-N is renamed into the run directory: see gcpo.trl.checkpoint.
        run_dir = self._get_output_dir(trial=trial)
        step = self.state.global_step
        if self.args.should_save:
            remove_stale_staging(run_dir)
        self.accelerator.wait_for_everyone()
        self._gcpo_staging = staging_parent(run_dir, step)
        try:
            super()._save_checkpoint(model, trial)
            if self.args.should_save:
                folder = os.path.join(self._gcpo_staging, f"{PREFIX_CHECKPOINT_DIR}-{step}")
                saved = {**self.gcpo_state_dict(), "monitor": self._monitor_state_dict()}
                write_state(folder, saved)
        finally:
            self._gcpo_staging = None
        self.accelerator.wait_for_everyone()
        if self.args.should_save:
            publish_checkpoint(run_dir, step)
            best = self.state.best_global_step
            if best and os.path.isdir(os.path.join(run_dir, f"{PREFIX_CHECKPOINT_DIR}-{best}")):
                self.state.best_model_checkpoint = os.path.join(
                    run_dir, f"{PREFIX_CHECKPOINT_DIR}-{best}"
                )
            rotate_checkpoints(
                output_dir=run_dir,
                save_total_limit=self.args.save_total_limit,
                best_model_checkpoint=self.state.best_model_checkpoint,
                use_mtime=False,
            )

    def _load_optimizer_and_scheduler(self, checkpoint):  # type: ignore[no-untyped-def]
        super()._load_optimizer_and_scheduler(checkpoint)
        if checkpoint is not None:
            saved = read_state(checkpoint)
            if saved is not None:
                self.load_gcpo_state_dict(saved)
                self._load_monitor_state_dict(saved.get("monitor") if isinstance(saved, dict) else None)
            elif self.gcpo_state is not None:
                raise ValueError(
                    f"checkpoint {checkpoint!r}: no {STATE_FILE}; the rank-normalisation window "
                    "cannot be restored (was it written by plain GRPOTrainer?)"
                )

    def create_model_card(  # type: ignore[override]
        self,
        model_name: str | None = None,
        dataset_name: str | None = None,
        tags: str | list[str] | None = None,
        model_path: str | None = None,
    ) -> None:
        """TRL's model card, naming the base model and the GCPO weighting it was trained with.

        ``model_path``: what the card's usage snippet loads (default: the hub repo when pushed,
        else ``output_dir``); TRL would print ``model="None"`` for a model never pushed."""
        w = self.weighting
        if isinstance(self.scorer, FunctionScorer):
            what = f"the weight function {self.scorer.name!r}"
        elif w.signal == "none":
            what = "plain GRPO (weight 1)"
        else:
            what = (
                f"{w.signal} weighting ({w.normalization} normalisation, {w.calibration} "
                f"calibration, {w.modulation} modulation, alpha {w.alpha:g})"
            )
        label = f"preset '{self.weighting_name}': " if self.weighting_name else ""
        config: Any = getattr(self.model, "config", None)
        original = getattr(config, "_name_or_path", "")
        extra = ["gcpo", *([self.weighting_name] if self.weighting_name else [])]
        tags = [tags] if isinstance(tags, str) else list(tags or [])
        self._name = f"GRPO with gcpo group weighting ({label}{what})"
        hub_model_id = self.hub_model_id
        try:
            if self.base_model and config is not None:
                config._name_or_path = self.base_model
            if hub_model_id is None:  # the template's usage snippet loads hub_model_id
                # typed None by transformers, which sets it only when pushing to the hub
                self.hub_model_id = model_path or self.args.output_dir  # type: ignore[assignment]
            super().create_model_card(model_name, dataset_name, [*tags, *extra])
        finally:
            self.hub_model_id = hub_model_id
            if config is not None:
                config._name_or_path = original

    # -- state ----------------------------------------------------------------------------------

    def gcpo_state_dict(self) -> dict[str, Any]:
        """Plain-data GCPO state saved in each checkpoint: the rank window of a preset with rank
        normalisation, or the dict of a weight function."""
        st = self.gcpo_state
        return {
            "version": 1,
            "signal": getattr(self.scorer, "name", self.weighting.signal),
            "rank_state": st.state_dict() if isinstance(st, WeightingState) else None,
            "function_state": st if isinstance(st, dict) else None,
        }

    def load_gcpo_state_dict(self, state: dict[str, Any]) -> None:
        """Restore :meth:`gcpo_state_dict` output."""
        if not isinstance(state, dict) or "rank_state" not in state:
            raise ValueError(f"state: expected a dict with 'rank_state', got {state!r:.100}")
        if state["rank_state"] is not None and isinstance(self.gcpo_state, WeightingState):
            self.gcpo_state.load_state_dict(state["rank_state"])
        saved = state.get("function_state")
        if saved is not None and isinstance(self.gcpo_state, dict):
            self.gcpo_state.clear()
            self.gcpo_state.update(saved)

    # -- the GCPO part --------------------------------------------------------------------------

    def _completion_stats(
        self, output: dict[str, Any], logprobs: bool, entropy: bool
    ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """``[N_local]`` mean token log-prob (``l_i``) and mean token entropy of each completion
        under the sampling policy, over its real tokens.

        Real tokens come from the generated lengths, not ``completion_mask``: with
        ``mask_truncated_completions`` TRL zeroes a truncated completion's mask (and attention),
        which would give it ``l = 0``, the highest possible likelihood. TRL's per-token log-probs
        are reused when they were computed on real tokens (vLLM's sampling log-probs, or TRL's
        ``old_per_token_logps`` when no completion was masked); otherwise one no-grad forward
        pass computes them (and the entropies, which TRL does not keep).
        """
        if not (logprobs or entropy):
            return None, None
        ids = output["completion_ids"]
        assert self._gcpo_lengths is not None and len(self._gcpo_lengths) == ids.size(0)
        lengths = torch.tensor(self._gcpo_lengths, device=ids.device)
        real = torch.arange(ids.size(1), device=ids.device).unsqueeze(0) < lengths.unsqueeze(1)
        masked_any = bool((output["completion_mask"].bool() != real).any())
        per_token = output.get("sampling_per_token_logps")
        if per_token is None and not masked_any:
            per_token = output.get("old_per_token_logps")
        per_token_entropy = None
        if per_token is None or entropy:
            attention_mask = torch.cat([output["prompt_mask"], real.to(output["prompt_mask"].dtype)], 1)
            with torch.no_grad():
                computed, per_token_entropy, _ = self._get_per_token_logps_and_entropies(
                    self.model,
                    torch.cat([output["prompt_ids"], ids], dim=1),
                    attention_mask,
                    ids.size(1),
                    batch_size=self.args.per_device_train_batch_size,
                    compute_entropy=entropy,
                )
            per_token = computed if per_token is None else per_token

        def mean_over_real(values: torch.Tensor) -> torch.Tensor:
            values = values.to(torch.float32)
            ok = real & ~torch.isnan(values)  # vLLM marks tokens it could not score as NaN
            total = torch.where(ok, values, torch.zeros_like(values)).sum(dim=1)
            return total / ok.sum(dim=1).clamp(min=1)

        lp = mean_over_real(per_token) if logprobs else None
        ent = mean_over_real(per_token_entropy) if per_token_entropy is not None else None
        return lp, ent

    def _gather_per_completion(self, local: torch.Tensor | None, g: int) -> torch.Tensor | None:
        if local is None:
            return None
        return self.accelerator.gather(local.contiguous()).float().cpu().view(-1, g)

    def _group_weights(self, output: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """Score the gathered batch; return the weight of each *local* sample ``[N_local]`` and
        of every gathered sample ``[N_global]``."""
        assert self._gcpo_rewards is not None and self._gcpo_texts is not None
        local_prompts, local_completions = self._gcpo_texts
        n_local = len(local_prompts)
        g = self.num_generations
        assert g is not None  # TRL types it Optional; GRPOTrainer.__init__ always sets it
        prompts = gather_object([prompt_text(p) for p in local_prompts])
        completions = gather_object([completion_text(c) for c in local_completions])

        rewards_per_func = self._gcpo_rewards
        weights = self.reward_weights.to(rewards_per_func.device)
        # A completion no reward function could score (TRL: advantage 0) is left out of the
        # group: of its reward dispersion and of every signal (Groups' validity mask).
        unscorable = torch.isnan(rewards_per_func).all(dim=1).cpu()
        rewards = (rewards_per_func * weights.unsqueeze(0)).nansum(dim=1).to(torch.float32).cpu()
        n_global = rewards.numel()
        if n_global != len(completions) or n_global % g != 0:
            raise RuntimeError(
                f"GCPOTrainer: gathered batch has {n_global} rewards and {len(completions)} completions; "
                f"expected equal counts divisible by num_generations={g} (TRL group layout changed?)"
            )
        rewards = rewards.masked_fill(unscorable, 0.0).view(-1, g)
        self.gcpo_counts["unscorable"] += int(unscorable.sum())
        valid = ~unscorable.view(-1, g)
        oracle = "gradients" in self._gcpo_inputs
        monitor = self._monitor_due()
        t0 = time.perf_counter()
        grads = self._completion_gradients(output, rewards, valid) if (oracle or monitor) else None
        t_grad = time.perf_counter() - t0

        t0 = time.perf_counter()
        local_lp, local_ent = self._completion_stats(
            output, "logprobs" in self._gcpo_inputs, "token_entropy" in self._gcpo_inputs
        )
        logprobs = self._gather_per_completion(local_lp, g)
        entropies = self._gather_per_completion(local_ent, g)
        t_lp = time.perf_counter() - t0 if (local_lp is not None or local_ent is not None) else 0.0

        n_groups = n_global // g
        group_prompts = [prompts[b * g] for b in range(n_groups)]
        groups = Groups.from_lists(
            group_prompts,
            [completions[b * g : (b + 1) * g] for b in range(n_groups)],
            rewards,
            logprobs=logprobs,
            token_entropy=entropies,
            valid=valid,
            gradients=grads,
        )
        result = self.scorer.score(groups, self.gcpo_state, extra_signals=self.extra_signals)
        if result.state is not None:
            self.gcpo_state = result.state
        if result.fallback:
            self.gcpo_counts["uniform_fallback"] += 1
            if self.gcpo_counts["uniform_fallback"] == 1:
                logger.warning(
                    "gcpo: every active group got weight 0 (weighting %s); this batch is trained "
                    "with weight 1 (plain GRPO) instead of not at all. Counted in "
                    "gcpo/uniform_fallback; lower alpha or use calibration/w_min.",
                    self.weighting.signal,
                )
        self.gcpo_counts["rd_clipped"] += result.rd_clipped
        weighted = is_weighted(self.weighting) or isinstance(self.scorer, FunctionScorer)
        if weighted and not result.acts:
            self.gcpo_counts["inert_steps"] += 1
            if self.gcpo_counts["inert_steps"] == 1:
                logger.warning(
                    "gcpo: this batch has %d active group(s) (reward dispersion > 0) of %d, so "
                    "the weighting cannot change the update (a lone active group is renormalised "
                    "to weight 1): this step trains as plain GRPO. Use more prompts per step "
                    "(per_device_train_batch_size / num_generations) or prompts the model solves "
                    "only sometimes. Counted in gcpo/inert_step; said once.",
                    int(result.active.sum()),
                    int(result.active.numel()),
                )
        self.last_groups = groups
        self.last_scores = (group_prompts, result)
        self._log_scores(result, t_lp)
        if grads is not None:
            self._metrics["train"]["gcpo/gradients_s"].append(t_grad)
        if monitor and grads is not None:
            self._monitor_observe(groups, result, 0.0 if oracle else t_grad)

        per_sample = result.weights.to(torch.float32).repeat_interleave(g)
        start = self.accelerator.process_index * n_local
        return per_sample[start : start + n_local], per_sample

    def _log_scores(self, result: ScoreResult, logprob_s: float) -> None:
        """Per-step metrics. Weights are reported over the *active* groups (RD > 0) only: the
        ones whose advantages the weights actually scale."""
        m = self._metrics["train"]
        for key, value in score_metrics(result).items():
            m[key].append(value)
        if logprob_s:
            m["gcpo/logprob_s"].append(logprob_s)

    # -- per-completion gradients: the grad_nsr oracle and the live monitor -------------------

    def _init_gradients(
        self, gradients: GradientConfig | dict[str, Any] | None, every: int, window: int
    ) -> None:
        if isinstance(gradients, dict):
            gradients = GradientConfig(**gradients)
        elif gradients is None:
            gradients = GradientConfig()
        elif not isinstance(gradients, GradientConfig):
            raise ValueError(
                f"gradients: expected a GradientConfig or a dict of its fields, got "
                f"{type(gradients).__name__}"
            )
        for name, v, low in (("monitor_every", every, 0), ("monitor_window", window, 1)):
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                raise ValueError(f"{name}: expected an int >= {low}, got {v!r}")
        self.gradient_config = gradients
        self.gcpo_monitor: AlignmentMonitor | None = (
            AlignmentMonitor(every, window) if every else None
        )
        self._gradient_probe: GradientProbe | None = None

    def _steps_per_generation_batch(self) -> int:
        """Optimizer steps one generation batch is used for (TRL regenerates every
        ``steps_per_generation * num_iterations`` micro-batches)."""
        micro = int(getattr(self.args, "steps_per_generation", 1) or 1) * int(self.num_iterations or 1)
        return max(1, micro // max(1, int(self.args.gradient_accumulation_steps)))

    def _monitor_due(self) -> bool:
        """Whether the live monitor measures the batch being scored (the same on every process)."""
        return self.gcpo_monitor is not None and self.gcpo_monitor.due(
            self.state.global_step, self._steps_per_generation_batch()
        )

    def _completion_gradients(
        self, output: dict[str, Any], rewards: torch.Tensor, valid: torch.Tensor
    ) -> torch.Tensor:
        """``[B, G, P]`` gathered per-completion gradients ``g_i = A_i * grad l_i`` (TRL's
        advantages before weighting) of the valid completions of active groups; 0 elsewhere.

        Each process computes its own slice of the batch (a group may straddle processes), one
        forward + backward pass per completion with ``A_i != 0``, then the slices are gathered.
        """
        g = self.num_generations
        assert g is not None and self._gcpo_lengths is not None
        if self._gradient_probe is None:
            assert isinstance(self.model, torch.nn.Module)
            self._gradient_probe = GradientProbe(self.model, self.gradient_config)
        probe = self._gradient_probe
        on = (active_groups(reward_dispersion(rewards, valid)).unsqueeze(1) & valid).reshape(-1)
        adv = output["advantages"].detach().to(torch.float32).cpu().reshape(-1)
        start = self.accelerator.process_index * adv.numel()
        coeffs = adv * on[start : start + adv.numel()].to(adv.dtype)
        rows = torch.nonzero(coeffs != 0).reshape(-1).tolist()
        local = torch.zeros(adv.numel(), probe.dim, dtype=torch.float32)
        if rows:
            seqs, plens = unpadded_sequences(
                output["prompt_ids"],
                output["prompt_mask"],
                output["completion_ids"],
                self._gcpo_lengths,
                rows,
            )
            local[rows] = probe.gradients(seqs, plens, coeffs[rows], self.temperature)
        gathered = self.accelerator.gather(local.to(self.accelerator.device))
        return gathered.to("cpu", torch.float32).view(-1, g, probe.dim)

    def _monitor_observe(self, groups: Groups, result: ScoreResult, gradient_s: float) -> None:
        """Add this step's active groups (V, NSR, every signal by label, the applied weight) to
        the monitor's window and log the running rank correlations."""
        assert self.gcpo_monitor is not None and groups.gradients is not None
        t0 = time.perf_counter()
        variance, _, nsr = gradient_noise_stats(groups.gradients, groups.mask)
        signals = {result.labels.get(n, n): v for n, v in result.signals.items()}
        self.gcpo_monitor.observe(
            signals, variance, nsr, result.active, result.weights, step=self.state.global_step + 1
        )
        m = self._metrics["train"]
        for key, value in self.gcpo_monitor.metrics().items():
            m[key].append(value)
        m["gcpo/monitor_s"].append(gradient_s + time.perf_counter() - t0)

    def _monitor_state_dict(self) -> dict[str, Any] | None:
        return None if self.gcpo_monitor is None else self.gcpo_monitor.state_dict()

    def _load_monitor_state_dict(self, state: dict[str, Any] | None) -> None:
        if self.gcpo_monitor is None:
            return
        if state is None:
            logger.info("gcpo: the checkpoint holds no monitor window; the monitor starts empty")
            return
        self.gcpo_monitor.load_state_dict(state)

