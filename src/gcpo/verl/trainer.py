"""verl's synchronous v1 trainer with GCPO group weights: ``trainer.v1.trainer_mode=gcpo``.

:class:`GCPOVerlTrainer` is verl's own ``PPOTrainerSync`` with four methods extended, nothing
replaced:

- ``_compute_old_log_prob``: when a signal needs the responses' token ids, gcpo starts reading
  ``responses`` from TransferQueue in a background thread before verl's old-log-prob pass, so
  the read runs while the workers compute (``timing_s/gcpo_read_ahead``), not in the advantage
  step.
- ``_compute_advantage``: verl's own code runs (KL-in-reward, rollout correction, multi-turn
  sessions, GRPO) with the GCPO weights applied inside it, so the batch is read from and written
  to TransferQueue once, by verl. For the duration of the call (a context variable; outside it
  both hooks pass straight through) two hooks installed by :func:`register` act: TransferQueue's
  ``kv_batch_get`` adds ``responses`` to verl's advantage read when a signal needs the token ids
  and they were not read ahead for this batch (verl gets back exactly the fields it asked
  for), and verl's
  ``compute_advantage_for_multi_trajectories`` multiplies the padded advantages (and returns)
  row by row by the group's weight from :class:`gcpo.verl.step.GCPOAdvantageStep`, scoring the
  final turns with the rewards GRPO used (``token_level_rewards``, KL-penalised with
  ``algorithm.use_kl_in_reward``). The ``gcpo/*`` metrics (the TRL trainer's names) and
  ``timing_s/gcpo`` go to verl's logger with the step's other metrics.
- ``_save_checkpoint`` / ``_load_checkpoint``: the scorer's state (the rank window) is saved as
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

import contextvars
import functools
import logging
import os
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import torch
import transfer_queue as tq
from omegaconf import DictConfig, OmegaConf
from verl.trainer.ppo.v1 import trainer_base
from verl.trainer.ppo.v1.trainer_base import TRAINER_REGISTRY, register_trainer
from verl.trainer.ppo.v1.trainer_sync import PPOTrainerSync

from gcpo.advantages import weight_advantages
from gcpo.fields import ConfigError, from_dict
from gcpo.rundir import STATE_FILE, read_state, write_state
from gcpo.verl.step import GCPOAdvantageStep, PackedIds, VerlGCPOConfig

__all__ = ["TRAINER_MODE", "GCPOVerlTrainer", "register", "settings_from_verl_config"]

TRAINER_MODE = "gcpo"

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


# The advantage step of the GCPOVerlTrainer call in progress (in this thread / task), or None:
# outside such a call the two hooks below pass straight through to verl / TransferQueue.
_ACTIVE: contextvars.ContextVar[_Call | None] = contextvars.ContextVar("gcpo_verl", default=None)
# verl's advantage read asks for these (trainer_base.PPOTrainer._compute_advantage)
_VERL_ADVANTAGE_READ = {"uid", "response_mask", "rm_scores"}


class _Call:
    """State of one ``GCPOVerlTrainer._compute_advantage`` call."""

    def __init__(
        self,
        trainer: GCPOVerlTrainer,
        step: GCPOAdvantageStep,
        batch: Any,
        read_ahead: Future[tuple[Any, float]] | None = None,
    ) -> None:
        self.trainer = trainer
        self.step = step
        self.keys = list(batch.keys)
        self.tags = list(batch.tags)
        # the responses: read ahead (GCPOVerlTrainer.read_ahead), else with verl's own read
        self.read_ahead = read_ahead if step.needs_token_ids else None
        self.extra_fields = ["responses"] if step.needs_token_ids and read_ahead is None else []
        self.fetched: dict[str, Any] = {}
        self.applied = False
        self.metrics: dict[str, float] = {}
        self.timings: dict[str, float] = {}

    def extend_read(self, select_fields: list[str]) -> list[str] | None:
        """The fields to read instead of verl's, if this is verl's advantage read."""
        if self.applied or self.fetched or not set(select_fields) >= _VERL_ADVANTAGE_READ:
            return None
        extra = [f for f in self.extra_fields if f not in select_fields]
        return [*select_fields, *extra] if extra else None

    def apply(self, data: Any, batch_keys: list[str]) -> None:
        """Multiply verl's GRPO advantages (padded ``[N, T]`` in ``data.batch``) by the group
        weights, before verl writes them to TransferQueue."""
        t0 = time.perf_counter()
        if list(batch_keys) != self.keys:
            raise RuntimeError("gcpo: verl's advantage step saw other keys than its batch")
        step = self.step
        uids = [str(u) for u in data.non_tensor_batch["uid"]]
        mask = data.batch["response_mask"]
        # the scores verl's GRPO uses: token_level_rewards (KL-penalised with use_kl_in_reward)
        scores = data.batch["token_level_rewards"].sum(dim=-1)
        rows = _final_rows(self.keys, self.tags)
        token_ids = None
        if step.needs_token_ids:
            if self.read_ahead is not None:
                t = time.perf_counter()
                responses, read_s = self.read_ahead.result()
                self.timings["read_ahead_wait_s"] = time.perf_counter() - t
                self.timings["read_ahead_s"] = read_s
            else:
                responses = self.fetched.get("responses")
            if responses is None:
                raise RuntimeError("gcpo: the responses were not read with verl's batch")
            packed = PackedIds.from_jagged(responses)
            token_ids = packed if rows == list(range(len(packed))) else packed.select(rows)
        logprobs = None
        if step.needs_logprobs:
            lp = data.batch["old_log_probs"].to(torch.float64)
            m = mask.to(torch.float64)
            logprobs = ((lp * m).sum(-1) / m.sum(-1).clamp_min(1.0))[rows]
        result = step.score([uids[i] for i in rows], token_ids, scores[rows], logprobs)
        w = torch.tensor(
            [
                1.0 if tag.get("is_padding", False) else result.weights.get(u, 1.0)
                for u, tag in zip(uids, self.tags, strict=True)
            ],
            dtype=data.batch["advantages"].dtype,
        )
        same = data.batch["returns"] is data.batch["advantages"]
        weighted = weight_advantages(data.batch["advantages"], w)
        data.batch["advantages"] = weighted
        # verl's GRPO sets returns = advantages (its metrics log both); keep that true
        data.batch["returns"] = weighted if same else weight_advantages(data.batch["returns"], w)
        self.applied = True
        self.metrics = dict(result.metrics)
        self.metrics["timing_s/gcpo"] = time.perf_counter() - t0
        if "read_ahead_s" in self.timings:  # spent beside verl's old-log-prob pass
            self.metrics["timing_s/gcpo_read_ahead"] = self.timings["read_ahead_s"]
        self.timings = {**self.timings, **result.timings}


def _hooked_kv_batch_get(original: Any) -> Any:
    @functools.wraps(original)
    def kv_batch_get(*args: Any, **kwargs: Any) -> Any:
        call = _ACTIVE.get()
        select = list(kwargs.get("select_fields") or [])
        fields = call.extend_read(select) if call is not None and select else None
        if call is None or fields is None:
            return original(*args, **kwargs)
        data = original(*args, **{**kwargs, "select_fields": fields})
        for name in fields[len(select) :]:
            call.fetched[name] = data.pop(name)
        return data

    kv_batch_get.__gcpo_original__ = original  # type: ignore[attr-defined]
    return kv_batch_get


def _hooked_advantage(original: Any) -> Any:
    @functools.wraps(original)
    def compute_advantage_for_multi_trajectories(
        data: Any, batch_keys: Any, *a: Any, **k: Any
    ) -> Any:
        out = original(data, batch_keys, *a, **k)
        call = _ACTIVE.get()
        if call is not None and not call.applied:
            call.apply(out, list(batch_keys))
        return out

    compute_advantage_for_multi_trajectories.__gcpo_original__ = original  # type: ignore[attr-defined]
    return compute_advantage_for_multi_trajectories


def _install_hooks() -> None:
    """Wrap TransferQueue's ``kv_batch_get`` and verl's ``compute_advantage_for_multi_trajectories``
    (as ``trainer_base`` calls them) once; both pass through unless a GCPOVerlTrainer call is
    active."""
    if not hasattr(tq, "kv_batch_get") or not hasattr(
        trainer_base, "compute_advantage_for_multi_trajectories"
    ):
        raise ImportError(
            "gcpo: this verl / TransferQueue has no kv_batch_get or "
            "compute_advantage_for_multi_trajectories; gcpo[verl] needs verl 0.9"
        )
    if not hasattr(tq.kv_batch_get, "__gcpo_original__"):
        tq.kv_batch_get = _hooked_kv_batch_get(tq.kv_batch_get)
    fn = trainer_base.compute_advantage_for_multi_trajectories
    if not hasattr(fn, "__gcpo_original__"):
        trainer_base.compute_advantage_for_multi_trajectories = _hooked_advantage(fn)


class GCPOVerlTrainer(PPOTrainerSync):
    """``PPOTrainerSync`` whose GRPO advantages are weighted per group by GCPO."""

    # verl tests ``trainer_mode == "sync"`` to pick its loop, and its base class assigns the
    # configured name ("gcpo") to this attribute; the loop that runs is verl's sync one.
    @property  # type: ignore[override]
    def trainer_mode(self) -> str:
        return "sync"

    @trainer_mode.setter
    def trainer_mode(self, value: str) -> None:
        del value  # the configured name is not needed after dispatch

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
        self._reader: ThreadPoolExecutor | None = None
        self._read_ahead: tuple[str, list[str], Future[tuple[Any, float]]] | None = None
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

    def _compute_old_log_prob(self, batch: Any, metrics: dict) -> Any:
        """verl's old-log-prob pass, with gcpo's read of the responses started beside it."""
        self.read_ahead(batch)
        return super()._compute_old_log_prob(batch, metrics)

    def read_ahead(self, batch: Any) -> None:
        """Start reading ``batch``'s ``responses`` from TransferQueue in a background thread,
        when a signal needs them: the read then runs while the workers compute the old (and
        reference) log-probs, instead of lengthening the advantage step, which takes the
        result if its batch has the same keys (else it adds ``responses`` to verl's read)."""
        if not self._gcpo_step().needs_token_ids:
            return
        keys, partition = list(batch.keys), str(batch.partition_id)

        def read() -> tuple[Any, float]:
            t = time.perf_counter()
            data = tq.kv_batch_get(keys=keys, partition_id=partition, select_fields=["responses"])
            return data["responses"], time.perf_counter() - t

        if self._reader is None:
            self._reader = ThreadPoolExecutor(max_workers=1, thread_name_prefix="gcpo-read")
        self._read_ahead = (partition, keys, self._reader.submit(read))

    def _compute_advantage(self, batch: Any, metrics: dict) -> Any:
        """verl's own advantage step with the group weights applied inside it (see the module
        docstring): verl's one TransferQueue read (plus ``responses`` when a signal needs them
        and :meth:`read_ahead` has not read them) and verl's one write."""
        step = self._gcpo_step()
        pending, self._read_ahead = self._read_ahead, None
        ahead = None
        if pending is not None:
            if pending[0] == str(batch.partition_id) and pending[1] == list(batch.keys):
                ahead = pending[2]
            else:  # another batch's: verl's read fetches this one's responses
                pending[2].cancel()
        call = _Call(self, step, batch, ahead)
        token = _ACTIVE.set(call)
        try:
            out = super()._compute_advantage(batch, metrics)
        finally:
            _ACTIVE.reset(token)
        if not call.applied:
            raise RuntimeError(
                "gcpo: verl's _compute_advantage did not call "
                "compute_advantage_for_multi_trajectories, so no GCPO weight was applied; this "
                "verl version is not supported (gcpo[verl] needs verl 0.9)"
            )
        metrics.update(call.metrics)
        self.gcpo_timings = {**call.timings, "apply_s": call.metrics["timing_s/gcpo"]}
        return out

    # -- checkpoints --------------------------------------------------------------------------

    def _save_checkpoint(self) -> None:
        folder = os.path.join(
            self.config.trainer.default_local_dir, f"global_step_{self.global_steps}"
        )
        write_state(folder, self._gcpo_step().state_dict())
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
        saved = read_state(folder)
        if saved is None:
            logger.warning(
                "gcpo: %s has no %s (not saved by the gcpo trainer); the rank window starts empty",
                folder,
                STATE_FILE,
            )
            return
        self._gcpo_step().load_state_dict(saved)
        logger.info("gcpo: restored the rank window from %s", os.path.join(folder, STATE_FILE))


def register() -> None:
    """Register :class:`GCPOVerlTrainer` as verl trainer mode ``"gcpo"`` (idempotent)."""
    _install_hooks()
    if TRAINER_REGISTRY.get(TRAINER_MODE) is not GCPOVerlTrainer:
        register_trainer(TRAINER_MODE)(GCPOVerlTrainer)
