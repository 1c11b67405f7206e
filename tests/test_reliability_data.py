"""Issue 6, data and resources: bad dataset rows stop `gcpo train` with one line naming file and
line (or are skipped and counted with --skip-bad-rows); the embedder works in bounded chunks and
an out-of-memory error names the setting to lower."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest
import torch

from gcpo.cli import main


def flaky_reward(prompts: Any, completions: Any, answer: Any, **kwargs: Any) -> list[Any]:
    """Scores 1.0/0.0 by exact answer, but returns None / NaN / inf for every 4th completion."""
    out: list[Any] = []
    for i, (c, a) in enumerate(zip(completions, answer, strict=True)):
        text = c[-1]["content"] if isinstance(c, list) else str(c)
        out.append([None, math.nan, math.inf][i // 4 % 3] if i % 4 == 0 else float(a in text))
    return out


GOOD = [{"prompt": f"What is {i} + 1?", "answer": str(i + 1)} for i in range(12)]


def _write(path: Path, lines: list[bytes]) -> Path:
    path.write_bytes(b"\n".join(lines) + b"\n")
    return path


def _good_lines(n: int = 12) -> list[bytes]:
    return [json.dumps(r).encode() for r in GOOD[:n]]


@pytest.fixture
def no_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any attempt to load a policy fails the test: data errors must come first."""

    def boom(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("a model was loaded before the data was validated")

    import gcpo.models

    monkeypatch.setattr(gcpo.models, "load_policy", boom)


BAD_ROWS = [
    (b'{"prompt": "What is 1 + 1?", "answer": "2"', "data.jsonl:3: malformed JSON"),
    (b'{"prompt": "caf\xe9", "answer": "2"}', "data.jsonl:3: not valid UTF-8"),
    (b'{"prompt": "What is 1 + 1?"}', "data.jsonl:3: missing field(s) 'answer'"),
    (b'{"question": "x", "answer": "2"}', "data.jsonl:3: missing field(s) 'prompt'"),
    (b'["prompt", "answer"]', "data.jsonl:3: expected a JSON object, got list"),
    (b'{"prompt": 5, "answer": "2"}', "row 3: prompt must be a string or a list of chat"),
]


@pytest.mark.parametrize("line, message", BAD_ROWS, ids=[m.split(": ", 1)[1] for _, m in BAD_ROWS])
def test_bad_row_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None, line: bytes, message: str
) -> None:
    data = _write(tmp_path / "data.jsonl", [*_good_lines(2), line, *_good_lines(9)[2:]])
    base = ["train", "model=tiny-random", "embedder=hashing", "num_eval_prompts=2"]
    for extra in (["--check"], ["max_steps=1", f"output_dir={tmp_path / 'run'}"]):
        rc = main([*base, f"dataset={data}", *extra])
        err = capsys.readouterr().err
        assert rc == 2
        assert message in err
        assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "run" / "checkpoint-1").exists()


def test_empty_dataset_and_all_rows_bad(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    empty = _write(tmp_path / "empty.jsonl", [b"", b"  "])
    assert main(["train", f"dataset={empty}", "--check"]) == 2
    assert "empty.jsonl: no rows found" in capsys.readouterr().err
    bad = _write(tmp_path / "bad.jsonl", [b"{", b"[1]"])
    assert main(["train", f"dataset={bad}", "--skip-bad-rows", "--check"]) == 2
    assert "no rows found (2 bad rows skipped)" in capsys.readouterr().err
    missing = tmp_path / "missing.jsonl"
    assert main(["train", f"dataset={missing}", "--check"]) == 2
    assert "missing.jsonl: file does not exist" in capsys.readouterr().err


def test_skip_bad_rows_counts_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], no_model: None
) -> None:
    lines = _good_lines() + [line for line, _ in BAD_ROWS]
    data = _write(tmp_path / "data.jsonl", lines)
    rc = main(
        ["train", f"dataset={data}", "model=tiny-random", "embedder=hashing", "num_eval_prompts=2"]
        + ["--skip-bad-rows", "--check", "--json"]
    )
    out = capsys.readouterr().out
    assert rc == 0, out
    report = json.loads(out)
    assert report["skipped_rows"] == len(BAD_ROWS)
    assert report["train_prompts"] + report["heldout_prompts"] == len(GOOD)
    assert any("data.jsonl:13" in r for r in report["skipped_reasons"])


@pytest.mark.slow
def test_training_with_bad_rows_and_unscorable_rewards_records_counts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """End to end: --skip-bad-rows count and unscorable completions in metrics.jsonl and
    summary.json, finite loss."""
    pytest.importorskip("trl")
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    data = _write(tmp_path / "data.jsonl", _good_lines() + [BAD_ROWS[0][0], BAD_ROWS[1][0]])
    run = tmp_path / "run"
    rc = main(
        [
            "train",
            f"dataset={data}",
            "model=tiny-random",
            "embedder=hashing",
            "reward=test_reliability_data:flaky_reward",
            "num_eval_prompts=0",
            "num_generations=2",
            "per_device_train_batch_size=8",
            "max_steps=2",
            "max_completion_length=4",
            "save_steps=0",
            "plot=false",
            "save_final=false",
            f"output_dir={run}",
            "--skip-bad-rows",
        ]
    )
    assert rc == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in rows if "loss" in r]
    assert len(steps) == 2
    for r in steps:
        assert r["data/skipped_rows"] == 2
        # completions 0 and 4 of 8 are unscorable in every batch
        assert r["gcpo/unscorable_frac/flaky_reward"] == pytest.approx(2 / 8)
        assert math.isfinite(r["loss"]) and math.isfinite(r["gcpo/active_groups"])
        assert all(math.isfinite(v) for k, v in r.items() if k.startswith("gcpo/weight_"))
    summary = json.loads((run / "summary.json").read_text())
    assert summary["data_skipped_rows"] == 2
    stats = summary["reward_stats"]
    assert stats["completions"] == 16 and stats["unscorable"] == 4
    assert stats["none"] + stats["non_finite"] == 4 and stats["errors"] == 0


def test_reward_fail_fast_stops_with_the_function_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    data = _write(tmp_path / "data.jsonl", _good_lines())
    rc = main(
        ["train", f"dataset={data}", "reward=test_reliability_data:flaky_reward"]
        + ["reward_fail_fast=true", "num_eval_prompts=2", "--check"]
    )
    err = capsys.readouterr().err
    assert rc == 2
    assert "reward error: reward function 'flaky_reward'" in err and "fail_fast" in err


# -- resources: bounded embedding chunks and a clear out-of-memory message ------------------------


class _SpyModel:
    """Stands in for a SentenceTransformer: records each encode() call; can raise OOM."""

    def __init__(self, real: Any, oom: bool = False) -> None:
        self.real, self.oom, self.calls = real, oom, []
        self.tokenizer, self.max_seq_length = real.tokenizer, real.max_seq_length

    def encode(self, windows: list[str], batch_size: int, **kw: Any) -> torch.Tensor:
        self.calls.append(
            (len(windows), batch_size, max(len(self.tokenizer(w)["input_ids"]) for w in windows))
        )
        if self.oom:
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 20.00 GiB")
        return self.real.encode(windows, batch_size=batch_size, **kw)


@pytest.fixture(scope="module")
def minilm() -> Any:
    from gcpo.embedders import SentenceEmbedder

    try:
        emb = SentenceEmbedder(batch_size=8, max_seq_length=64, max_windows=4)
        _ = emb.model
    except (OSError, ImportError, FileNotFoundError) as exc:
        pytest.skip(f"offline MiniLM not available: {exc}")
    return emb


def test_long_completions_and_large_groups_embed_in_bounded_chunks(minilm: Any) -> None:
    spy = _SpyModel(minilm.model)
    minilm._model = spy
    try:
        huge = "step one is to add. " * 10_000  # ~200k chars
        texts = [huge] + [f"completion {i} says {i * 7}" for i in range(63)]  # G = 64
        out = minilm.embed(texts)
    finally:
        minilm._model = spy.real
    assert out.shape == (64, minilm._dim()) and torch.isfinite(out).all()
    n_windows, batch_size, longest = spy.calls[0]
    assert batch_size == 8  # the encoder sees at most 8 windows per forward pass
    assert n_windows == 63 + 4  # the huge text is cut to max_windows=4 windows
    assert longest <= 64  # each window fits max_seq_length tokens (with [CLS]/[SEP])


def test_embedder_out_of_memory_names_the_setting(minilm: Any) -> None:
    from gcpo.embedders import EmbedderMemoryError

    spy = _SpyModel(minilm.model, oom=True)
    minilm._model = spy
    try:
        with pytest.raises(EmbedderMemoryError, match="lower embedder.batch_size") as info:
            minilm.embed(["a", "b"])
    finally:
        minilm._model = spy.real
    assert "batch_size=8" in str(info.value)


def test_gcpo_train_reports_embedder_oom_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from gcpo.embedders import EmbedderMemoryError
    from gcpo.train import run as run_module

    def oom(*args: Any, **kwargs: Any) -> None:
        raise EmbedderMemoryError("embedder 'all-MiniLM-L6-v2' ran out of memory ... batch_size=64")

    monkeypatch.setattr(run_module, "_train", oom)
    rc = main(["train", "model=tiny-random", f"output_dir={tmp_path / 'run'}"])
    err = capsys.readouterr().err
    assert rc == 3
    assert "out of memory" in err and "embedder.batch_size=N" in err
    assert "Traceback" not in err


class _OomEmbedder:
    """An embedder whose every call runs out of memory."""

    def embed(self, texts: Any) -> torch.Tensor:
        from gcpo.embedders import EmbedderMemoryError

        raise EmbedderMemoryError(
            f"embedder ran out of memory on {len(texts)} texts: lower embedder.batch_size"
        )

    def segments(self, text: str, max_segments: int | None = None) -> list[str]:
        return [text]


def test_embedder_oom_inside_training_reaches_the_caller_unchanged(tmp_path: Path) -> None:
    """TRL does not swallow or wrap the error: `gcpo train` can print its one-line message."""
    pytest.importorskip("trl")
    from datasets import Dataset
    from tiny_trl import tiny_grpo_args

    from gcpo.embedders import EmbedderMemoryError
    from gcpo.models import load_policy
    from gcpo.tasks.registry import trl_reward
    from gcpo.tasks.synthetic import make_task
    from gcpo.trl import GCPOTrainer

    model, tok = load_policy("tiny-random")
    trainer = GCPOTrainer(
        model=model,
        processing_class=tok,
        reward_funcs=[trl_reward("arithmetic")],
        args=tiny_grpo_args(tmp_path / "out", max_steps=1),
        train_dataset=Dataset.from_list(make_task("arithmetic", 8, seed=0)),
        weighting="gcpo",
        embedder=_OomEmbedder(),
    )
    with pytest.raises(EmbedderMemoryError, match="on 4 texts: lower embedder.batch_size"):
        trainer.train()
