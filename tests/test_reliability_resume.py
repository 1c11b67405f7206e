"""Issue 6, checkpoints: a checkpoint directory appears only when complete; a `gcpo train` run
killed with SIGKILL resumes from its last complete checkpoint with the same data order and a
finite loss, and leaves no half-written files behind."""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[1]


def order_reward(prompts: Any, completions: Any, answer: Any, **kwargs: Any) -> list[float]:
    """TRL reward that records which prompts each optimizer step saw (for the data-order check)
    in $GCPO_ORDER_LOG, and scores the digit fraction of each completion."""
    state = kwargs.get("trainer_state")
    log = os.environ.get("GCPO_ORDER_LOG")
    if log and state is not None:
        row = {"step": state.global_step, "answers": [str(a) for a in answer]}
        with open(log, "a", encoding="utf-8") as f:
            f.write(json.dumps(row) + "\n")
            f.flush()
    out = []
    for c in completions:
        text = c[-1]["content"] if isinstance(c, list) else str(c)
        out.append(sum(ch.isdigit() for ch in text) / max(len(text), 1))
    return out


# -- staging / publishing (no model) --------------------------------------------------------------


def _fake_checkpoint(folder: Path) -> None:
    folder.mkdir(parents=True)
    for name in ("model.safetensors", "optimizer.pt", "trainer_state.json", "gcpo_state.json"):
        (folder / name).write_text(name)


def test_publish_moves_a_complete_checkpoint_in_one_rename(tmp_path: Path) -> None:
    from gcpo.rundir import last_checkpoint
    from gcpo.trl.checkpoint import publish_checkpoint, staging_parent

    staged = Path(staging_parent(tmp_path, 4)) / "checkpoint-4"
    _fake_checkpoint(staged)
    # while staged, the run has no checkpoint
    assert last_checkpoint(tmp_path) is None
    final = publish_checkpoint(tmp_path, 4)
    assert final == tmp_path / "checkpoint-4"
    assert sorted(p.name for p in final.iterdir()) == sorted(
        ["model.safetensors", "optimizer.pt", "trainer_state.json", "gcpo_state.json"]
    )
    assert not Path(staging_parent(tmp_path, 4)).exists()
    assert last_checkpoint(tmp_path) == final
    with pytest.raises(FileNotFoundError, match="step 6"):
        publish_checkpoint(tmp_path, 6)


def test_republishing_a_step_replaces_it(tmp_path: Path) -> None:
    from gcpo.trl.checkpoint import publish_checkpoint, staging_parent

    _fake_checkpoint(tmp_path / "checkpoint-2")
    staged = Path(staging_parent(tmp_path, 2)) / "checkpoint-2"
    _fake_checkpoint(staged)
    (staged / "optimizer.pt").write_text("new")
    publish_checkpoint(tmp_path, 2)
    assert (tmp_path / "checkpoint-2" / "optimizer.pt").read_text() == "new"
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint-2"]


def test_stale_staging_is_removed_and_a_swapped_out_checkpoint_restored(tmp_path: Path) -> None:
    from gcpo.trl.checkpoint import remove_stale_staging, staging_parent

    _fake_checkpoint(Path(staging_parent(tmp_path, 6)) / "checkpoint-6")  # killed mid-save
    _fake_checkpoint(tmp_path / ".old-checkpoint-4")  # killed between the two renames
    _fake_checkpoint(tmp_path / "checkpoint-2")
    removed = remove_stale_staging(tmp_path)
    assert [p.name for p in removed] == [".tmp-checkpoint-6"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["checkpoint-2", "checkpoint-4"]
    assert remove_stale_staging(tmp_path / "missing") == []


def test_last_checkpoint_ignores_incomplete_and_foreign_folders(tmp_path: Path) -> None:
    from gcpo.rundir import last_checkpoint

    _fake_checkpoint(tmp_path / "checkpoint-3")
    (tmp_path / "checkpoint-9").mkdir()  # no trainer_state.json: an HF save cut short
    _fake_checkpoint(tmp_path / ".tmp-checkpoint-12" / "checkpoint-12")
    _fake_checkpoint(tmp_path / "checkpoint-final")
    assert last_checkpoint(tmp_path) == tmp_path / "checkpoint-3"


# -- a save that dies half-way, in process ------------------------------------------------------


def _trainer(out: Path, max_steps: int) -> Any:
    from datasets import Dataset
    from tiny_trl import tiny_grpo_args

    from gcpo.models import load_policy
    from gcpo.tasks.synthetic import make_task
    from gcpo.trl import GCPOTrainer

    model, tok = load_policy("tiny-random")
    args = tiny_grpo_args(
        out, max_steps=max_steps, save_strategy="steps", save_steps=1, save_total_limit=2
    )
    return GCPOTrainer(
        model=model,
        processing_class=tok,
        reward_funcs=[order_reward],
        args=args,
        train_dataset=Dataset.from_list(make_task("arithmetic", 16, seed=0)),
        weighting="gcpo",
        embedder="hashing",
    )


def test_save_failing_half_way_leaves_no_checkpoint_and_resume_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("trl")
    from transformers import Trainer

    from gcpo.rundir import STATE_FILE, last_checkpoint

    out = tmp_path / "out"
    real = Trainer._save_rng_state
    calls = {"n": 0}

    def dies_on_second_save(self: Any, output_dir: str) -> None:
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill after model+optimizer were written")
        real(self, output_dir)

    monkeypatch.setattr(Trainer, "_save_rng_state", dies_on_second_save)
    with pytest.raises(KeyboardInterrupt):
        _trainer(out, max_steps=3).train()
    monkeypatch.setattr(Trainer, "_save_rng_state", real)

    # checkpoint-2 was half written: it exists only in staging, never as checkpoint-2
    assert (out / ".tmp-checkpoint-2" / "checkpoint-2" / "model.safetensors").is_file()
    assert not (out / "checkpoint-2").exists()
    assert last_checkpoint(out) == out / "checkpoint-1"
    assert (out / "checkpoint-1" / STATE_FILE).is_file()

    resumed = _trainer(out, max_steps=3)
    resumed.train(resume_from_checkpoint=str(last_checkpoint(out)))
    assert resumed.state.global_step == 3
    names = sorted(p.name for p in out.iterdir() if "checkpoint" in p.name)
    assert names == ["checkpoint-2", "checkpoint-3"]  # staging gone, save_total_limit=2 kept
    for name in names:
        assert (out / name / "trainer_state.json").is_file()
        assert (out / name / STATE_FILE).is_file()


# -- SIGKILL a real `gcpo train` subprocess and resume ---------------------------------------------

TRAIN_ARGS = [
    "model=tiny-random",
    "embedder=hashing",
    "task=arithmetic",
    "reward=test_reliability_resume:order_reward",
    "num_train_prompts=64",
    "num_eval_prompts=0",
    "num_generations=2",
    "per_device_train_batch_size=4",
    "max_completion_length=8",
    "save_steps=2",
    "save_total_limit=2",
    "plot=false",
    "save_final=false",
    "torch_threads=1",
]
MAX_STEPS = 8


def _env(order_log: Path) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(REPO / "tests"), str(REPO / "src"), env.get("PYTHONPATH", "")]
    )
    env["GCPO_ORDER_LOG"] = str(order_log)
    env["OMP_NUM_THREADS"] = "1"
    return env


def _train_cmd(*extra: str) -> list[str]:
    return [sys.executable, "-m", "gcpo", "train", *extra]


def _order(path: Path) -> list[dict[str, Any]]:
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):  # the line a kill cut short
            rows.append(json.loads(line))
    return rows


@pytest.mark.slow
def test_sigkill_mid_run_then_resume_continues_identically(tmp_path: Path) -> None:
    pytest.importorskip("trl")
    from gcpo.rundir import last_checkpoint

    ref_dir, run_dir = tmp_path / "reference", tmp_path / "run"
    ref_log, run_log = tmp_path / "ref_order.jsonl", tmp_path / "run_order.jsonl"
    args = [*TRAIN_ARGS, f"max_steps={MAX_STEPS}"]
    reference = subprocess.Popen(
        _train_cmd(*args, "--output", str(ref_dir)),
        env=_env(ref_log),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    victim = subprocess.Popen(
        _train_cmd(*args, "--output", str(run_dir)),
        env=_env(run_log),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    # kill once checkpoint-4 is published and step 5 is generating (mid-run, between saves)
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and victim.poll() is None:
        ready = (run_dir / "checkpoint-4").is_dir() and run_log.is_file()
        if ready and any(r["step"] >= 5 for r in _order(run_log)):
            break
        time.sleep(0.05)
    assert victim.poll() is None, "the run finished or died before it could be killed"
    victim.send_signal(signal.SIGKILL)
    victim.wait(timeout=30)
    assert victim.returncode == -signal.SIGKILL

    killed_steps = [r["step"] for r in _order(run_log)]
    checkpoint = last_checkpoint(run_dir)
    assert checkpoint is not None
    resumed_step = int(checkpoint.name.split("-")[1])
    assert resumed_step >= 4 and resumed_step <= max(killed_steps)
    # every folder named checkpoint-N is complete
    for ck in run_dir.glob("checkpoint-*"):
        for name in ("trainer_state.json", "gcpo_state.json", "optimizer.pt", "model.safetensors"):
            assert (ck / name).is_file(), f"{ck.name} lacks {name}"

    n_before = len(_order(run_log))
    resume = subprocess.run(
        _train_cmd("--resume", str(run_dir), "--json"),
        env=_env(run_log),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert resume.returncode == 0, resume.stderr[-3000:]
    _, ref_err = reference.communicate(timeout=300)
    assert reference.returncode == 0, ref_err[-3000:]

    ref = {r["step"]: r["answers"] for r in _order(ref_log)}
    assert sorted(ref) == list(range(MAX_STEPS))
    after = _order(run_log)[n_before:]
    # resumed from the checkpoint's step, then the same prompts in the same order as the
    # uninterrupted run (and the killed run's own steps matched it too)
    assert [r["step"] for r in after] == list(range(resumed_step, MAX_STEPS))
    for r in after + _order(run_log)[:n_before]:
        assert r["answers"] == ref[r["step"]], f"step {r['step']}: data order differs"

    summary = json.loads(resume.stdout[resume.stdout.index("{") :])
    assert summary["steps"] == MAX_STEPS
    assert summary["resumed_from"] == str(checkpoint)
    metrics = [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [m["step"] for m in metrics if "loss" in m]
    assert steps == list(range(1, MAX_STEPS + 1))  # one history, no duplicated steps
    assert all(m["loss"] is not None and math.isfinite(m["loss"]) for m in metrics if "loss" in m)
    assert not list(run_dir.glob(".tmp-*")) and not list(run_dir.glob(".old-*"))
    assert not [p for p in run_dir.rglob("*.tmp")], "a temporary file was left behind"


def test_replace_dir_swaps_a_finished_folder_in(tmp_path: Path) -> None:
    """How `gcpo train` publishes RUN/final: never a mix of old and new files."""
    from gcpo.trl.checkpoint import replace_dir

    (tmp_path / "final").mkdir()
    (tmp_path / "final" / "model.safetensors").write_text("old")
    (tmp_path / "final" / "stale-shard.bin").write_text("old")
    staged = tmp_path / ".tmp-final"
    staged.mkdir()
    (staged / "model.safetensors").write_text("new")
    replace_dir(staged, tmp_path / "final")
    assert [p.name for p in (tmp_path / "final").iterdir()] == ["model.safetensors"]
    assert (tmp_path / "final" / "model.safetensors").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["final"]


WORKER = r"""
import sys
sys.path.insert(0, {tests!r})
from pathlib import Path
from test_reliability_resume import _trainer
out = Path(sys.argv[1])
trainer = _trainer(out, max_steps=int(sys.argv[2]))
ckpt = sys.argv[3] if len(sys.argv) > 3 else None
trainer.train(resume_from_checkpoint=ckpt)
from tiny_trl import exit_worker
exit_worker()  # checkpoints are fsynced and renamed: what the test checks is on disk
"""


@pytest.mark.slow
def test_two_processes_publish_complete_checkpoints(tmp_path: Path) -> None:
    """With 2 processes (gloo), both ranks write into the staging folder and rank 0 renames it
    only after both are done: every checkpoint has both ranks' RNG states; resume works."""
    pytest.importorskip("trl")
    script = tmp_path / "worker.py"
    script.write_text(WORKER.format(tests=str(Path(__file__).parent)))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false"}
    out = tmp_path / "out"

    def launch(*args: str) -> None:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2"]
        # --standalone: a free port per launch, so concurrent test runs cannot collide
        cmd += ["--standalone", str(script), str(out), *args]
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr[-4000:]

    launch("2")
    for step in (1, 2):
        ck = out / f"checkpoint-{step}"
        for name in ("gcpo_state.json", "trainer_state.json", "rng_state_0.pth", "rng_state_1.pth"):
            assert (ck / name).is_file(), f"{ck.name} lacks {name}"
    assert not list(out.glob(".tmp-*"))
    launch("3", str(out / "checkpoint-2"))
    state = json.loads((out / "checkpoint-3" / "trainer_state.json").read_text())
    assert state["global_step"] == 3
    assert sorted(p.name for p in out.glob("checkpoint-*")) == ["checkpoint-2", "checkpoint-3"]
