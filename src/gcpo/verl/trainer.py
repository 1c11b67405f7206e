"""verl's synchronous v1 trainer with GCPO group weights: ``trainer.v1.trainer_mode=gcpo``.

:class:`GCPOTrainer` is verl's own ``PPOTrainerSync`` with three methods extended, nothing
replaced:

- ``_compute_advantage``: verl computes its GRPO advantages and writes them to TransferQueue
  (KL-in-reward, rollout correction and multi-turn sessions all as usual); then the trainer
  reads ``uid``, ``responses``, the scores GRPO used (``rm_scores``, or ``token_level_rewards``
  with ``algorithm.use_kl_in_reward``) and the advantages back, computes one weight per uid with
  :class:`gcpo.verl.step.GCPOAdvantageStep` (decoded texts -> ``gcpo.scoring``), multiplies every
  row of the group by it and writes ``advantages`` / ``returns`` back. The ``gcpo/*`` metrics go
  to verl's logger with the step's other metrics.
- ``_save_checkpoint`` / ``_load_checkpoint``: the rank-normalisation window is saved as
  ``global_step_N/gcpo_state.json`` (written before verl marks the checkpoint complete) and
  restored on resume.

Rows verl added as padding (tag ``is_padding``) are left alone. In multi-turn runs a trajectory
key is ``{uid}_{session}_{turn}``; the last turn of each session is the completion that is scored
(the one verl's GRPO scores) and the weight applies to every row of the uid.

verl compares ``trainer_mode`` with the literal ``"sync"`` in several places (replay buffer,
checkpointing of in-flight prompts); this trainer *is* the sync trainer, so it reports
``"sync"`` there and reads its settings from ``trainer.v1.gcpo``.
"""

from __future__ import annotations

import json
import logging
import os
import time
from typing import Any

import torch
from omegaconf import DictConfig, OmegaConf
from tensordict import TensorDict
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from gcpo.fields import ConfigError, from_dict
from gcpo.verl.step import GCPOAdvantageStep, VerlGCPOConfig

__all__ = ["TRAINER_MODE", "GCPOTrainer", "register", "settings_from_verl_config"]

TRAINER_MODE = "gcpo"
STATE_FILE = "gcpo_state.json"

logger = logging.getLogger(__name__)


def settings_from_verl_config(config: Any) -> VerlGCPOConfig:
    """:class:`VerlGCPOConfig` from ``config.trainer.v1.gcpo`` (missing = all defaults)."""
    section = OmegaConf.select(config, "trainer.v1.gcpo", default=None)
    if section is None:
        data: dict[str, Any] = {}
    elif isinstance(section, DictConfig):
        data = OmegaConf.to_container(section, resolve=True)  # type: ignore[assignment]
    else:
        raise ConfigError(f"trainer.v1.gcpo: expected a mapping, got {section!r}")
    return from_dict(VerlGCPOConfig, data, prefix="trainer.v1.gcpo.")


def _sessions(keys: list[str]) -> list[str]:
    """Session key of each row: ``{uid}_{session}`` of ``{uid}_{session}_{turn}`` (verl's v1
    layout), else the row's own key."""
    out = []
    for key in keys:
        parts = key.rsplit("_", 2)
        out.append(f"{parts[0]}_{parts[1]}" if len(parts) == 3 and parts[2].isdigit() else key)
    return out


def _final_rows(keys: list[str], tags: list[dict[str, Any]]) -> list[int]:
    """Index of the last turn of every non-padding session, in order of first appearance."""
    last: dict[str, tuple[int, int]] = {}
    for i, (key, session) in enumerate(zip(keys, _sessions(keys), strict=True)):
        if tags[i].get("is_padding", False):
            continue
        parts = key.rsplit("_", 2)
        turn = int(parts[2]) if len(parts) == 3 and parts[2].isdigit() else 0
        if session not in last or last[session][0] < turn:
            last[session] = (turn, i)
    return [i for _, i in last.values()]


class GCPOTrainer(PPOTrainerSync):
    """``PPOTrainerSync`` whose GRPO advantages are weighted per group by GCPO."""

    # verl tests ``trainer_mode == "sync"``; keep the requested name for messages only.
    @property  # type: ignore[override]
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:
        self._requested_trainer_mode = value

    def __init__(self, config: DictConfig) -> None:
        estimator = str(OmegaConf.select(config, "algorithm.adv_estimator", default=""))
        if estimator != "grpo":
            raise ConfigError(
                f"algorithm.adv_estimator: got {estimator!r}; trainer.v1.trainer_mode=gcpo "
                "weighs verl's GRPO advantages, set algorithm.adv_estimator=grpo"
            )
        self.gcpo_settings = settings_from_verl_config(config)
        # Built (and so validated: preset, overrides, signals) before any worker starts; the
        # tokenizer is attached once verl has loaded it.
        self.gcpo = GCPOAdvantageStep(self.gcpo_settings, tokenizer=None)
        super().__init__(config)

    def _init_tokenizer(self) -> None:
        super()._init_tokenizer()
        self.gcpo.tokenizer = self.tokenizer
        # load / build / re-index the embedder now: errors show before the workers start and
        # the first training step does not pay for it
        self.gcpo.prepare()

    def _gcpo_step(self) -> GCPOAdvantageStep:
        if self.gcpo.tokenizer is None:  # trainers built without _setup (tests)
            self.gcpo.tokenizer = self.tokenizer
        return self.gcpo

    # -- advantages ---------------------------------------------------------------------------

    def _compute_advantage(self, batch: Any, metrics: dict) -> Any:
        batch = super()._compute_advantage(batch, metrics)
        return self.apply_gcpo(batch, metrics)

    def apply_gcpo(self, batch: Any, metrics: dict) -> Any:
        """Multiply the advantages stored for ``batch`` by their group's GCPO weight."""
        import transfer_queue as tq

        t0 = time.perf_counter()
        step = self._gcpo_step()
        use_kl = bool(OmegaConf.select(self.config, "algorithm.use_kl_in_reward", default=False))
        score_field = "token_level_rewards" if use_kl else "rm_scores"
        fields = ["uid", "responses", "advantages", score_field]
        if step.needs_logprobs:
            fields += ["old_log_probs", "response_mask"]
        keys = list(batch.keys)
        tags = list(batch.tags)
        t = time.perf_counter()
        data = tq.kv_batch_get(keys=keys, partition_id=batch.partition_id, select_fields=fields)
        tq_get_s = time.perf_counter() - t
        uids = [str(u) for u in list(data["uid"])]
        advantages = data["advantages"]
        offsets = advantages.offsets()
        lengths = offsets.diff()

        rows = _final_rows(keys, tags)
        responses = data["responses"].unbind()
        scores = data[score_field].to_padded_tensor(0.0).sum(dim=-1)
        logprobs = None
        if step.needs_logprobs:
            lp = data["old_log_probs"].to_padded_tensor(0.0).to(torch.float64)
            mask = data["response_mask"].to_padded_tensor(0).to(torch.float64)
            logprobs = (lp * mask).sum(-1) / mask.sum(-1).clamp_min(1.0)
        result = step.score(
            [uids[i] for i in rows],
            [responses[i] for i in rows],
            scores[rows],
            None if logprobs is None else logprobs[rows],
        )
        padding = [bool(t.get("is_padding", False)) for t in tags]
        w_rows = torch.tensor(
            [
                1.0 if pad else result.weights.get(u, 1.0)
                for u, pad in zip(uids, padding, strict=True)
            ],
            dtype=advantages.values().dtype,
        )
        values = advantages.values() * torch.repeat_interleave(w_rows, lengths)
        weighted = torch.nested.nested_tensor_from_jagged(values, offsets)
        # verl's GRPO sets returns = advantages (its metrics log both); keep that true
        t = time.perf_counter()
        out = TensorDict({"advantages": weighted, "returns": weighted}, batch_size=len(keys))
        batch = tq.kv_batch_put(keys=keys, partition_id=batch.partition_id, fields=out)
        metrics.update(result.metrics)
        metrics["gcpo/tq_get_s"] = tq_get_s
        metrics["gcpo/tq_put_s"] = time.perf_counter() - t
        metrics["gcpo/total_s"] = time.perf_counter() - t0
        return batch

    # -- checkpoints --------------------------------------------------------------------------

    def _save_checkpoint(self) -> None:
        folder = os.path.join(
            self.config.trainer.default_local_dir, f"global_step_{self.global_steps}"
        )
        os.makedirs(folder, exist_ok=True)
        path = os.path.join(folder, STATE_FILE)
        tmp = f"{path}.tmp"
        with open(tmp, "w") as f:
            json.dump(self._gcpo_step().state_dict(), f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        # verl writes latest_checkpointed_iteration.txt last, so a checkpoint it calls complete
        # has the gcpo state too.
        super()._save_checkpoint()

    def _resume_folder(self) -> str | None:
        trainer = self.config.trainer
        if trainer.resume_mode == "disable" or self.global_steps <= 0:
            return None
        if trainer.resume_mode == "resume_path":
            folder = str(trainer.resume_from_path)
        else:
            folder = os.path.join(trainer.default_local_dir, f"global_step_{self.global_steps}")
        return folder if os.path.isabs(folder) else os.path.join(os.getcwd(), folder)

    def _load_checkpoint(self) -> None:
        super()._load_checkpoint()
        folder = self._resume_folder()
        if folder is None:
            return
        path = os.path.join(folder, STATE_FILE)
        if not os.path.isfile(path):
            logger.warning(
                "gcpo: %s has no %s (not saved by the gcpo trainer); the rank window starts empty",
                folder,
                STATE_FILE,
            )
            return
        with open(path) as f:
            self._gcpo_step().load_state_dict(json.load(f))
        logger.info("gcpo: restored the rank window from %s", path)


def register() -> None:
    """Register :class:`GCPOTrainer` as verl trainer mode ``"gcpo"`` (idempotent)."""
    if TRAINER_REGISTRY.get(TRAINER_MODE) is not GCPOTrainer:
        register_trainer(TRAINER_MODE)(GCPOTrainer)
