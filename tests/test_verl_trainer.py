"""gcpo.verl against verl's own trainer code (verl 0.9, CPU, local Ray + TransferQueue).

These tests need the separate verl environment that ``.ci/verl.sh`` builds (verl pins an older
transformers than gcpo's main environment). Elsewhere they skip, except under
``GCPO_REQUIRE_VERL=1`` (set by .ci/verl.sh), where a missing verl is an error.

What runs for real: verl's default trainer config, ``GCPOVerlTrainer.__init__`` (the replay buffer
it builds), verl's ``PPOTrainer._compute_advantage`` (GRPO, multi-turn sessions, TransferQueue
reads and writes) followed by gcpo's weighting, verl's ``_save_checkpoint`` /
``_load_checkpoint`` with a stub actor worker group and data loader (no model, no rollout
engine: verl cannot roll out on CPU), and the ``verl.plugins`` entry point in a fresh process.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest

if importlib.util.find_spec("verl") is None:
    if os.environ.get("GCPO_REQUIRE_VERL") == "1":
        raise RuntimeError("GCPO_REQUIRE_VERL=1 but verl is not importable in this environment")
    pytest.skip(
        "verl is not installed in this environment; .ci/verl.sh runs these tests in one",
        allow_module_level=True,
    )

import torch  # noqa: E402
from test_verl import TEXTS  # noqa: E402  (one set of sample responses for both files)
from tiny_tokenizer import tiny_bpe, tiny_wordpiece  # noqa: E402

from gcpo.fields import ConfigError  # noqa: E402
from gcpo.scoring import Groups, GroupScorer  # noqa: E402
from gcpo.weighting import initial_state  # noqa: E402


@pytest.fixture(scope="module")
def tq() -> Any:
    """Local Ray + TransferQueue (TQ needs more logical CPUs than this 2-core machine has)."""
    import ray
    import transfer_queue

    ray.init(num_cpus=8, include_dashboard=False, log_to_driver=False)
    transfer_queue.init()
    yield transfer_queue
    transfer_queue.close()
    ray.shutdown()


@pytest.fixture(scope="module")
def static_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A random static model in model2vec layout (the format get_embedder loads by path)."""
    from safetensors.torch import save_file

    out = tmp_path_factory.mktemp("static")
    wp = tiny_wordpiece()
    gen = torch.Generator().manual_seed(0)
    save_file(
        {"embeddings": torch.randn(wp.get_vocab_size(), 24, generator=gen)},
        str(out / "model.safetensors"),
    )
    wp.save(str(out / "tokenizer.json"))
    return out


def verl_config(gcpo: dict[str, Any] | None = None, **trainer: Any) -> Any:
    """verl's own default PPO config, set up for GRPO with the gcpo trainer mode."""
    import verl
    from omegaconf import OmegaConf

    path = Path(verl.__file__).parent / "trainer" / "config" / "_generated_ppo_trainer.yaml"
    config = OmegaConf.load(path)
    config.algorithm.adv_estimator = "grpo"
    config.trainer.v1.trainer_mode = "gcpo"
    config.actor_rollout_ref.rollout.n = 3
    for key, value in trainer.items():
        config.trainer[key] = value
    if gcpo is not None:
        config.trainer.v1.gcpo = gcpo
    return config


def make_trainer(config: Any) -> Any:
    from verl.trainer.ppo.v1 import get_trainer_cls

    trainer = get_trainer_cls("gcpo")(config)
    trainer.tokenizer = tiny_bpe()  # _setup() (workers, rollout servers) is not run on CPU
    trainer.global_steps = 1
    return trainer


def _uid(gen: torch.Generator) -> str:
    """A uid drawn from the batch's generator: the same batch (seed) gets the same uids, so a
    test's weights do not depend on random uid strings (each batch has its own partition)."""
    return uuid.UUID(int=int(torch.randint(2**62, (1,), generator=gen))).hex


def put_batch(
    tq: Any, seed: int, with_logprobs: bool = True, with_ref: bool = False
) -> tuple[Any, dict[str, Any]]:
    """A batch in TransferQueue, shaped like verl's v1 rollout output.

    Groups straddle batch order (rows shuffled), ``lone`` has a single response, ``const`` has
    constant rewards, ``multi`` has a two-turn session, and one padding row is added like
    ``upsample_batch_to_divisible_size`` does.
    """
    from tensordict import TensorDict
    from tensordict.tensorclass import NonTensorData, NonTensorStack
    from transfer_queue import KVBatchMeta

    gen = torch.Generator().manual_seed(seed)
    tok = tiny_bpe()
    plan = [("a", 3), ("b", 3), ("const", 3), ("lone", 1), ("c", 2)]
    rows: list[dict[str, Any]] = []
    names = {}
    for name, n in plan:
        uid = _uid(gen)
        names[uid] = name
        for s in range(n):
            text = TEXTS[int(torch.randint(len(TEXTS), (1,), generator=gen))]
            score = 1.0 if name == "const" else float(torch.randint(0, 2, (1,), generator=gen))
            rows.append({"key": f"{uid}_{s}_0", "uid": uid, "text": text, "score": score})
    uid = _uid(gen)
    names[uid] = "multi"
    for s, turns in enumerate([2, 1, 1]):
        for t in range(turns):
            text = TEXTS[int(torch.randint(len(TEXTS), (1,), generator=gen))]
            rows.append({"key": f"{uid}_{s}_{t}", "uid": uid, "text": text, "score": float(s == 0)})
    order = torch.randperm(len(rows), generator=gen).tolist()
    rows = [rows[i] for i in order]
    pad_uid = f"pad{_uid(gen)}"
    rows.append({"key": f"{pad_uid}_0_0", "uid": pad_uid, "text": "", "score": 0.0, "pad": True})

    def jagged(values: list[torch.Tensor]) -> torch.Tensor:
        return torch.nested.as_nested_tensor(values, layout=torch.jagged)

    ids = [
        torch.tensor(tok.encode(r["text"], add_special_tokens=False) or [tok.eos_token_id])
        for r in rows
    ]
    ids = [torch.cat([i, torch.tensor([tok.eos_token_id])]) for i in ids]  # responses end in EOS
    masks = [
        torch.ones_like(i) if not r.get("pad") else torch.zeros_like(i)
        for i, r in zip(ids, rows, strict=True)
    ]
    scores = []
    for i, r in zip(ids, rows, strict=True):
        s = torch.zeros(len(i))
        s[-1] = r["score"]
        scores.append(s)
    fields = {
        "uid": NonTensorStack(*[NonTensorData(r["uid"]) for r in rows]),
        "responses": jagged(ids),
        "response_mask": jagged(masks),
        "rm_scores": jagged(scores),
    }
    if with_logprobs:
        fields["old_log_probs"] = jagged([-torch.rand(len(i), generator=gen) for i in ids])
    if with_ref:  # the reference policy's log-probs (KL-in-reward)
        fields["ref_log_prob"] = jagged([-torch.rand(len(i), generator=gen) for i in ids])
    partition = f"test-{uuid.uuid4().hex}"
    keys = [r["key"] for r in rows]
    tags = [{"seq_len": 8, "is_padding": bool(r.get("pad"))} for r in rows]
    tq.kv_batch_put(
        keys=keys,
        partition_id=partition,
        fields=TensorDict(fields, batch_size=len(rows)),
        tags=tags,
    )
    meta = KVBatchMeta(partition_id=partition, keys=keys, tags=tags)
    info = {"rows": rows, "names": names, "ids": ids, "logprobs": fields.get("old_log_probs")}
    return meta, info


def copy_batch(tq: Any, meta: Any) -> Any:
    """The same rows in a fresh partition (for verl's plain GRPO on identical data)."""
    from transfer_queue import KVBatchMeta

    data = tq.kv_batch_get(keys=meta.keys, partition_id=meta.partition_id)
    partition = f"test-{uuid.uuid4().hex}"
    tq.kv_batch_put(keys=meta.keys, partition_id=partition, fields=data, tags=meta.tags)
    return KVBatchMeta(partition_id=partition, keys=meta.keys, tags=meta.tags)


def advantages(tq: Any, meta: Any) -> list[torch.Tensor]:
    data = tq.kv_batch_get(
        keys=meta.keys, partition_id=meta.partition_id, select_fields=["advantages", "returns"]
    )
    adv, ret = list(data["advantages"].unbind()), list(data["returns"].unbind())
    assert all(torch.equal(a, r) for a, r in zip(adv, ret, strict=True))  # GRPO: returns = adv
    return adv


def expected_weights(trainer: Any, info: dict[str, Any], state: Any) -> dict[str, float]:
    """GroupScorer on the decoded final turns of every uid with two or more sessions."""
    rows = info["rows"]
    tok = trainer.tokenizer
    last: dict[str, int] = {}
    for i, r in enumerate(rows):
        if r.get("pad"):
            continue
        uid, s, t = r["key"].rsplit("_", 2)
        k = f"{uid}_{s}"
        if k not in last or int(rows[last[k]]["key"].rsplit("_", 2)[2]) < int(t):
            last[k] = i
    by_uid: dict[str, list[int]] = {}
    for i in last.values():
        by_uid.setdefault(rows[i]["uid"], []).append(i)
    multi = [u for u, m in by_uid.items() if len(m) > 1]
    texts = tok.batch_decode(
        [info["ids"][i].tolist() for i in range(len(rows))], skip_special_tokens=True
    )
    step = trainer.gcpo
    lp = None
    if step.needs_logprobs:
        lp_rows = [float(v.mean()) for v in info["logprobs"].unbind()]
        lp = [[lp_rows[i] for i in by_uid[u]] for u in multi]
    groups = Groups.from_lists(
        multi,
        [[texts[i] for i in by_uid[u]] for u in multi],
        [[rows[i]["score"] for i in by_uid[u]] for u in multi],
        logprobs=lp,
    )
    result = GroupScorer(step.weighting, embedder=step.embedder).score(groups, state)
    return dict(zip(multi, result.weights.tolist(), strict=True))


def run_both(
    tq: Any, trainer: Any, seed: int
) -> tuple[list[torch.Tensor], list[torch.Tensor], dict[str, Any], dict]:
    """verl's plain GRPO advantages and the gcpo trainer's, on the same batch."""
    from verl.trainer.ppo.v1 import PPOTrainerSync

    meta, info = put_batch(tq, seed)
    plain_meta = copy_batch(tq, meta)
    PPOTrainerSync._compute_advantage(trainer, plain_meta, {})
    metrics: dict[str, Any] = {}
    trainer._compute_advantage(meta, metrics)
    return advantages(tq, plain_meta), advantages(tq, meta), info, metrics


@pytest.mark.parametrize("preset", ["gcpo", "gcpo-bot", "seed-grpo", "grpo"])
def test_advantages_are_grpo_times_gcpo_scoring_weights(
    tq: Any, static_dir: Path, preset: str
) -> None:
    trainer = make_trainer(verl_config({"preset": preset, "embedder": str(static_dir)}))
    state = initial_state(trainer.gcpo.weighting)
    plain, ours, info, metrics = run_both(tq, trainer, seed=1)
    w = expected_weights(trainer, info, state)
    assert set(info["names"][u] for u in w) == {"a", "b", "const", "c", "multi"}
    for row, p, o in zip(info["rows"], plain, ours, strict=True):
        weight = w.get(row["uid"], 1.0)  # lone and padding rows: exactly verl's advantage
        assert torch.allclose(o, p * weight, atol=1e-6), (info["names"].get(row["uid"]), weight)
    lone = [i for i, r in enumerate(info["rows"]) if info["names"].get(r["uid"]) == "lone"]
    assert torch.equal(ours[lone[0]], plain[lone[0]])  # bug 8: raw score, untouched
    assert plain[lone[0]][0] == pytest.approx(info["rows"][lone[0]]["score"] / (1 + 1e-6))
    if preset != "grpo":
        assert any(abs(v - 1.0) > 1e-3 for v in w.values())  # the weighting acts
    assert metrics["gcpo/groups"] == 5 and metrics["gcpo/single_response_groups"] == 1
    assert "gcpo/active_groups" in metrics and metrics["timing_s/gcpo"] > 0
    assert any(k.startswith("gcpo/signal/") for k in metrics) == (preset != "grpo")


def test_responses_read_ahead_leave_verls_read_alone_and_weigh_the_same(
    tq: Any, static_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import threading

    import transfer_queue

    reads: list[tuple[str, tuple[str, ...]]] = []
    hooked = transfer_queue.kv_batch_get

    def spy(*args: Any, **kwargs: Any) -> Any:
        fields = tuple(kwargs.get("select_fields") or ())
        reads.append((threading.current_thread().name, fields))
        return hooked(*args, **kwargs)

    monkeypatch.setattr(transfer_queue, "kv_batch_get", spy)
    config = verl_config({"preset": "gcpo", "embedder": str(static_dir)})
    ahead, inline, stale = make_trainer(config), make_trainer(config), make_trainer(config)
    meta, _ = put_batch(tq, seed=3)
    metas = [meta, copy_batch(tq, meta), copy_batch(tq, meta)]
    other, _ = put_batch(tq, seed=4)
    reads.clear()
    ahead.read_ahead(metas[0])  # what _compute_old_log_prob does before verl's pass
    got: list[dict[str, Any]] = [{}, {}, {}]
    ahead._compute_advantage(metas[0], got[0])
    verl_read = [f for name, f in reads if "uid" in f]
    assert [name for name, f in reads if f == ("responses",)][0].startswith("gcpo-read")
    assert len(verl_read) == 1 and "responses" not in verl_read[0]  # verl's fields only
    assert got[0]["timing_s/gcpo_read_ahead"] > 0
    inline._compute_advantage(metas[1], got[1])  # nothing read ahead: responses with verl's read
    stale.read_ahead(other)  # read ahead for another batch: not used
    stale._compute_advantage(metas[2], got[2])
    assert "timing_s/gcpo_read_ahead" not in got[1] and "timing_s/gcpo_read_ahead" not in got[2]
    base = advantages(tq, metas[0])
    for m in metas[1:]:
        assert all(torch.equal(a, b) for a, b in zip(base, advantages(tq, m), strict=True))
    assert got[0]["gcpo/weight_std"] > 0 and got[0]["gcpo/weight_std"] == got[2]["gcpo/weight_std"]


class _FakeWorkerGroup:
    def __init__(self) -> None:
        self.saved: list[str] = []

    def save_checkpoint(self, local_path: str, *args: Any, **kwargs: Any) -> None:
        os.makedirs(local_path, exist_ok=True)
        self.saved.append(local_path)

    def load_checkpoint(self, local_path: str, **kwargs: Any) -> None:
        assert os.path.isdir(local_path)


class _FakeLoader:
    def state_dict(self) -> dict[str, int]:
        return {"position": 7}

    def load_state_dict(self, state: dict[str, int]) -> None:
        assert state == {"position": 7}


def test_rank_window_survives_checkpoint_save_and_restore(
    tq: Any, static_dir: Path, tmp_path: Path
) -> None:
    settings = {"preset": "gcpo", "embedder": str(static_dir)}
    ckpt = str(tmp_path / "ckpt")
    first = make_trainer(verl_config(settings, default_local_dir=ckpt, resume_mode="auto"))
    first.actor_rollout_wg, first.train_dataloader = _FakeWorkerGroup(), _FakeLoader()
    run_both(tq, first, seed=3)  # fills the rank window
    first._save_checkpoint()
    saved = json.loads((tmp_path / "ckpt" / "global_step_1" / "gcpo_state.json").read_text())
    assert len(saved["rank_state"]["values"]) == 5
    assert (tmp_path / "ckpt" / "latest_checkpointed_iteration.txt").read_text() == "1"

    resumed = make_trainer(verl_config(settings, default_local_dir=ckpt, resume_mode="auto"))
    resumed.actor_rollout_wg, resumed.train_dataloader = _FakeWorkerGroup(), _FakeLoader()
    resumed._load_checkpoint()
    assert resumed.global_steps == 1
    assert resumed.gcpo.state.values == first.gcpo.state.values

    fresh = make_trainer(verl_config(settings))
    meta, _ = put_batch(tq, seed=4)
    copies = [copy_batch(tq, meta) for _ in range(2)]
    first._compute_advantage(meta, {})
    resumed._compute_advantage(copies[0], {})
    fresh._compute_advantage(copies[1], {})
    a, b, c = advantages(tq, meta), advantages(tq, copies[0]), advantages(tq, copies[1])
    assert all(torch.equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(torch.allclose(x, z) for x, z in zip(a, c, strict=True))  # the window matters


def test_resume_from_a_checkpoint_without_gcpo_state_starts_empty(
    tmp_path: Path, caplog: Any
) -> None:
    folder = tmp_path / "global_step_2"
    (folder / "actor").mkdir(parents=True)
    trainer = make_trainer(verl_config({}, default_local_dir=str(tmp_path), resume_mode="auto"))
    trainer.actor_rollout_wg, trainer.train_dataloader = _FakeWorkerGroup(), _FakeLoader()
    (tmp_path / "latest_checkpointed_iteration.txt").write_text("2")
    trainer._load_checkpoint()
    assert trainer.global_steps == 2 and len(trainer.gcpo.state) == 0


def test_the_trainer_is_verls_sync_trainer_and_checks_its_config() -> None:
    from verl.trainer.ppo.v1 import PPOTrainerSync
    from verl.trainer.ppo.v1.replay_buffer import ReplayBuffer, ReplayBufferAsync

    trainer = make_trainer(verl_config())
    assert isinstance(trainer, PPOTrainerSync) and trainer.trainer_mode == "sync"
    assert type(trainer.replay_buffer) is ReplayBuffer  # not the async buffer a new mode name gets
    assert not isinstance(trainer.replay_buffer, ReplayBufferAsync)
    assert trainer.gcpo_settings.embedder == "static-minilm"
    config = verl_config()
    config.algorithm.adv_estimator = "gae"
    with pytest.raises(ConfigError, match="set algorithm.adv_estimator=grpo"):
        make_trainer(config)
    with pytest.raises(ConfigError, match="trainer.v1.gcpo.nope: unknown key"):
        make_trainer(verl_config({"nope": 1}))
    with pytest.raises(ConfigError, match="trainer.v1.gcpo.preset"):
        make_trainer(verl_config({"preset": "nope"}))
    with pytest.raises(ConfigError, match="trainer.v1.gcpo.weighting.alpha"):
        make_trainer(verl_config({"weighting": {"alpha": -1}}))


def test_entry_point_registers_the_mode_lazily_in_a_fresh_process() -> None:
    code = (
        "import sys, verl\n"
        "assert 'gcpo.verl.plugin' in sys.modules, 'entry point not loaded by import verl'\n"
        "assert 'verl.trainer.ppo.v1' not in sys.modules and 'gcpo.verl.trainer' not in sys.modules\n"
        "from verl.trainer.ppo.v1 import get_trainer_cls\n"
        "print(get_trainer_cls('gcpo').__module__)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "gcpo.verl.trainer"


RECIPES = Path(__file__).resolve().parents[1] / "configs/recipes/verl"


def compose_gcpo_trainer(overrides: list[str]) -> Any:
    """gcpo's gcpo_trainer.yaml (defaults: [ppo_trainer, _self_]) composed by Hydra, as
    ``verl.trainer.main_ppo --config-path=CONFIG_DIR --config-name=gcpo_trainer`` does."""
    from hydra import compose, initialize_config_dir
    from omegaconf import OmegaConf

    import gcpo.verl

    with initialize_config_dir(config_dir=gcpo.verl.CONFIG_DIR, version_base=None):
        config = compose(config_name="gcpo_trainer", overrides=overrides)
    OmegaConf.resolve(config)
    return config


def test_gcpo_trainer_config_is_verls_with_every_gcpo_setting() -> None:
    from omegaconf import OmegaConf

    from gcpo import fields
    from gcpo.verl import VerlGCPOConfig

    config = compose_gcpo_trainer(["trainer.v1.gcpo.preset=gcpo-bot"])  # no "+" needed
    assert config.trainer.v1.trainer_mode == "gcpo" and config.algorithm.adv_estimator == "grpo"
    section = OmegaConf.to_container(config.trainer.v1.gcpo)
    assert section == {**fields.to_dict(VerlGCPOConfig()), "preset": "gcpo-bot"}
    assert "actor_rollout_ref" in config and config.trainer.use_v1  # verl's own ppo_trainer
    trainer = make_trainer(config)
    assert trainer.gcpo.weighting.signal == "barycentric_transport"


@pytest.mark.parametrize(
    ("script", "env"),
    [
        ("qwen2.5-math-1.5b-math.sh", {}),
        ("qwen2.5-math-7b-math-multinode.sh", {"NNODES": "2"}),
    ],
)
def test_verl_recipe_composes_with_verls_config_and_builds_the_trainer(
    tmp_path: Path, script: str, env: dict[str, str]
) -> None:
    """The recipes' overrides on gcpo_trainer.yaml and ``validate_config`` (what
    ``verl.trainer.main_ppo`` does before starting)."""
    from verl.trainer.ppo.utils import need_critic, need_reference_policy
    from verl.trainer.ppo.v1 import get_trainer_cls
    from verl.utils.config import validate_config

    run_env = dict(os.environ, DATA_DIR=str(tmp_path), PYTHON=sys.executable, **env)
    out = subprocess.run(
        ["bash", str(RECIPES / script), "--print-overrides"],
        capture_output=True,
        text=True,
        env=run_env,
        check=True,
    )
    overrides = out.stdout.splitlines()
    assert not [o for o in overrides if o.startswith("+trainer")]  # gcpo_trainer has them all
    config = compose_gcpo_trainer(overrides)
    validate_config(
        config=config,
        use_reference_policy=need_reference_policy(config),
        use_critic=need_critic(config),
    )
    assert config.trainer.v1.trainer_mode == "gcpo" and config.algorithm.adv_estimator == "grpo"
    assert config.actor_rollout_ref.rollout.name == "vllm"
    assert config.reward.custom_reward_function.path.endswith("gcpo/verl/reward.py")
    assert config.trainer.nnodes == int(env.get("NNODES", "1"))
    if env:
        assert config.ray_kwargs.ray_init.address == "auto"
        assert config.actor_rollout_ref.rollout.tensor_model_parallel_size == 2
    trainer = get_trainer_cls("gcpo")(config)
    assert trainer.gcpo.weighting.signal == "cosine_dispersion"
    assert trainer.gcpo.extra_signals == ["semantic_entropy"]


def test_kl_in_reward_weights_use_the_penalised_rewards(tq: Any, static_dir: Path) -> None:
    """``algorithm.use_kl_in_reward=True``: verl penalises the rewards by the KL to the
    reference policy, GRPO runs on those, and GCPO's reward dispersion reads the same."""
    config = verl_config({"preset": "gcpo", "embedder": str(static_dir)})
    config.algorithm.use_kl_in_reward = True
    config.algorithm.kl_ctrl.kl_coef = 0.5
    trainer = make_trainer(config)
    meta, info = put_batch(tq, seed=6, with_ref=True)
    plain_meta = copy_batch(tq, meta)
    from verl.trainer.ppo.v1 import PPOTrainerSync

    PPOTrainerSync._compute_advantage(trainer, plain_meta, {})
    metrics: dict[str, Any] = {}
    trainer._compute_advantage(meta, metrics)
    plain, ours = advantages(tq, plain_meta), advantages(tq, meta)
    penalised = tq.kv_batch_get(
        keys=plain_meta.keys, partition_id=plain_meta.partition_id,
        select_fields=["token_level_rewards"],
    )["token_level_rewards"].unbind()  # fmt: skip
    raw = [r["score"] for r in info["rows"]]
    sums = [float(t.sum()) for t in penalised]
    assert any(abs(a - b) > 1e-3 for a, b in zip(sums, raw, strict=True))  # the KL acts
    info_kl = {**info, "rows": [{**r, "score": s} for r, s in zip(info["rows"], sums, strict=True)]}
    w = expected_weights(trainer, info_kl, initial_state(trainer.gcpo.weighting))
    for row, p, o in zip(info["rows"], plain, ours, strict=True):
        assert torch.allclose(o, p * w.get(row["uid"], 1.0), atol=1e-5)
    assert any(abs(v - 1.0) > 1e-3 for v in w.values())
    assert metrics["gcpo/reward_dispersion"] > 0 and "actor/reward_kl_penalty" in metrics


def test_legacy_trainer_path_refuses_gcpo_in_one_line(tmp_path: Path) -> None:
    """``trainer.use_v1=false`` (verl's legacy RayPPOTrainer) ignores trainer_mode: verl's own
    entry point must stop before Ray starts, naming the setting, instead of training GRPO."""
    from verl.utils.config import validate_config

    from gcpo.verl.plugin import check_trainer_path

    config = compose_gcpo_trainer(["trainer.use_v1=false"])
    with pytest.raises(ConfigError, match="trainer.use_v1=false") as info:
        validate_config(config=config, use_reference_policy=False, use_critic=False)
    assert "\n" not in str(info.value)
    check_trainer_path(compose_gcpo_trainer([]))  # the v1 path passes
    with pytest.raises(ConfigError, match="trainer.v1.gcpo.device: got 'cuda'.*only 'cpu'"):
        validate_config(
            config=compose_gcpo_trainer(["trainer.v1.gcpo.device=cuda"]),
            use_reference_policy=False,
            use_critic=False,
        )
    plain = verl_config()
    plain.trainer.v1.trainer_mode = "sync"
    plain.trainer.use_v1 = False
    check_trainer_path(plain)  # a legacy run that does not ask for GCPO is verl's business

    import gcpo.verl

    out = subprocess.run(
        [
            sys.executable, "-m", "verl.trainer.main_ppo",
            f"--config-path={gcpo.verl.CONFIG_DIR}", "--config-name=gcpo_trainer",
            "trainer.use_v1=false", f"data.train_files={tmp_path}/x.parquet",
        ],
        capture_output=True, text=True, timeout=600, env=dict(os.environ, HYDRA_FULL_ERROR="0"),
    )  # fmt: skip
    assert out.returncode != 0
    errors = [ln for ln in out.stderr.splitlines() if ln.startswith("gcpo.fields.ConfigError: ")]
    assert len(errors) == 1, out.stderr[-3000:]  # Hydra prints the exception's one line
    assert "trainer.use_v1=false" in errors[0] and "set trainer.use_v1=true" in errors[0]
    assert "ray init kwargs" not in out.stdout  # refused before Ray starts
