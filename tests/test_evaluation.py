"""Evaluation harness: pass@k, summaries/tables, resume, and the ``gcpo eval`` CLI end to end."""

from __future__ import annotations

import csv
import io
import itertools
import json
import math
from pathlib import Path

import pytest
import torch

from gcpo.evaluation import EvalConfig, pass_at_k, results_tables, run_evaluation, summarize
from gcpo.fields import ConfigError

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ------------------------------------------------------------------------------ pass@k


@pytest.mark.parametrize("n", [1, 2, 3, 5, 7])
def test_pass_at_k_matches_subset_enumeration(n: int) -> None:
    for c in range(n + 1):
        outcomes = [1] * c + [0] * (n - c)
        for k in range(1, n + 1):
            subsets = list(itertools.combinations(range(n), k))
            brute = sum(any(outcomes[i] for i in s) for s in subsets) / len(subsets)
            assert pass_at_k(n, c, k) == pytest.approx(brute, abs=1e-12)
            assert pass_at_k(n, c, k) == pytest.approx(1 - math.comb(n - c, k) / math.comb(n, k))


def test_pass_at_k_properties_and_errors() -> None:
    assert pass_at_k(10, 3, 1) == pytest.approx(0.3)
    assert pass_at_k(200, 0, 100) == 0.0 and pass_at_k(200, 200, 1) == 1.0
    assert 0.0 <= pass_at_k(1000, 1, 500) <= 1.0  # no overflow with large n
    for bad in [(3, 4, 1), (3, -1, 1), (3, 1, 0), (3, 1, 4)]:
        with pytest.raises(ValueError, match="need"):
            pass_at_k(*bad)


# ---------------------------------------------------------------------- summary / tables


def _rows() -> list[dict]:
    rows = []
    for s, score in enumerate([1.0, 0.0, 0.0, 1.0]):  # item a: 2 of 4 correct
        rows.append({"model": "m1", "benchmark": "math500", "id": "a", "sample": s, "score": score})
    for s in range(4):  # item b: 0 of 4
        rows.append({"model": "m1", "benchmark": "math500", "id": "b", "sample": s, "score": 0.0})
    rows.append(
        {"model": "m1", "benchmark": "hotpotqa", "id": "h", "sample": 0, "score": 0.5,
         "em": 0.0, "f1": 0.5, "cover_em": 1.0}
    )  # fmt: skip
    rows.append({"model": "m2", "benchmark": "math500", "id": "a", "sample": 0, "score": 1.0})
    return rows


def test_summarize() -> None:
    s = summarize(_rows(), samples=4)
    m = s["m1"]["math500"]
    assert m["items"] == 2 and m["generations"] == 8
    assert m["pass@1"] == pytest.approx((2 / 4 + 0) / 2)
    assert m["pass@4"] == pytest.approx((1.0 + 0.0) / 2)
    assert m["pass@2"] == pytest.approx((pass_at_k(4, 2, 2) + 0) / 2)
    assert s["m1"]["hotpotqa"] == {
        "items": 1,
        "generations": 1,
        "em": 0.0,
        "f1": 0.5,
        "cover_em": 1.0,
    }
    assert s["m2"]["math500"]["pass@1"] == 1.0 and "pass@4" not in s["m2"]["math500"]


def test_results_tables_shape() -> None:
    markdown, csv_text = results_tables(summarize(_rows(), samples=4))
    lines = markdown.splitlines()
    assert lines[0] == "| Model | math500 (pass@1) | hotpotqa (f1) | Avg |"
    assert lines[2] == "| m1 | 25.0 | 50.0 | 37.5 |"
    assert lines[3] == "| m2 | 100.0 | – | 100.0 |"
    table = list(csv.reader(io.StringIO(csv_text)))
    assert table[0][0] == "model" and "math500/pass@1" in table[0] and "hotpotqa/f1" in table[0]
    row = dict(zip(table[0], table[1], strict=True))
    assert row["model"] == "m1" and row["math500/pass@4"] == "50.00"
    assert dict(zip(table[0], table[2], strict=True))["hotpotqa/f1"] == ""


# -------------------------------------------------------------- harness with a fake model


class CharTokenizer:
    """Character-level stand-in for a HF tokenizer (no chat template)."""

    chat_template = None
    eos_token_id = 0
    pad_token_id = 0
    padding_side = "left"

    def __call__(self, texts, return_tensors=None, padding=False, add_special_tokens=True):
        if isinstance(texts, str):
            return {"input_ids": [ord(c) for c in texts]}
        width = max(len(t) for t in texts)
        ids = [[0] * (width - len(t)) + [ord(c) for c in t] for t in texts]
        mask = [[0] * (width - len(t)) + [1] * len(t) for t in texts]
        return {"input_ids": torch.tensor(ids), "attention_mask": torch.tensor(mask)}

    def decode(self, ids, skip_special_tokens=True):
        return "".join(chr(i) for i in ids if i)

    def batch_decode(self, rows, skip_special_tokens=True):
        return [self.decode(r.tolist()) for r in rows]


class AnswerModel(torch.nn.Module):
    """Answers "\\boxed{2}" to math prompts and "Paris" to QA prompts; counts generate calls."""

    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.calls: list[int] = []

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        self.calls.append(input_ids.shape[0])
        outs = []
        for row in input_ids.tolist():
            text = "".join(chr(i) for i in row if i)
            ans = "\\boxed{2}" if "boxed" in text else "Paris\nmore"
            outs.append([ord(c) for c in ans][:max_new_tokens])
        width = max(len(o) for o in outs)
        new = torch.tensor([o + [0] * (width - len(o)) for o in outs])
        return torch.cat([input_ids, new], dim=1)


def _write_data(root: Path) -> Path:
    (root / "math500").mkdir(parents=True)
    with (root / "math500" / "test.jsonl").open("w") as fh:
        for i, ans in enumerate(["2", "3", "\\frac{4}{2}"]):
            fh.write(json.dumps({"problem": f"p{i}", "answer": ans, "unique_id": f"u{i}"}) + "\n")
    (root / "hotpotqa").mkdir()
    with (root / "hotpotqa" / "test.jsonl").open("w") as fh:
        for i, ans in enumerate(["Paris", "London"]):
            ctx = {"title": ["T"], "sentences": [["some text " * 50]]}
            fh.write(
                json.dumps({"id": f"h{i}", "question": "q", "answer": ans, "context": ctx}) + "\n"
            )
    return root


def test_run_evaluation_scores_resumes_and_tabulates(tmp_path: Path) -> None:
    data = _write_data(tmp_path / "data")
    out = tmp_path / "out"
    model, tok = AnswerModel(), CharTokenizer()
    cfg = EvalConfig(
        model="fake", benchmarks=["math500", "hotpotqa"], samples=2, batch_size=2,
        data_dir=str(data), output=str(out), progress=False, max_context_tokens=64,
    )  # fmt: skip
    result = run_evaluation(cfg, model=model, tokenizer=tok)
    rows = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == (3 + 2) * 2 and sum(model.calls) == 10
    assert max(model.calls) <= 2  # batched by batch_size
    math_ok = {r["id"]: r["score"] for r in rows if r["benchmark"] == "math500"}
    assert math_ok == {"u0": 1.0, "u1": 0.0, "u2": 1.0}  # "\frac{4}{2}" == 2 via math-verify
    qa = [r for r in rows if r["benchmark"] == "hotpotqa"]
    assert {r["prediction"] for r in qa} == {"Paris"}
    assert max(r["prompt_tokens"] for r in qa) < 64 + 600  # context truncated to 64 "tokens"
    summary = result["summary"]["fake"]
    assert summary["math500"]["pass@1"] == pytest.approx(2 / 3)
    assert summary["math500"]["pass@2"] == pytest.approx(2 / 3)
    assert summary["hotpotqa"]["em"] == pytest.approx(0.5)
    for name in ("results.md", "results.csv", "summary.json"):
        assert (out / name).is_file()
    assert "| fake | 66.7 | 50.0 | 58.3 |" in (out / "results.md").read_text()

    # resume: nothing left to do -> no generate call, same file
    model.calls.clear()
    run_evaluation(cfg, model=model, tokenizer=tok)
    assert model.calls == [] and len((out / "generations.jsonl").read_text().splitlines()) == 10
    # more samples: only the missing sample indices are generated
    cfg.samples = 3
    again = run_evaluation(cfg, model=model, tokenizer=tok)
    assert sum(model.calls) == 5
    assert again["summary"]["fake"]["math500"]["generations"] == 9
    # a truncated last line (killed run) is skipped, and its item regenerated
    text = (out / "generations.jsonl").read_text()
    (out / "generations.jsonl").write_text(text[:-20])
    model.calls.clear()
    run_evaluation(cfg, model=model, tokenizer=tok)
    assert sum(model.calls) == 1


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="benchmarks"):
        run_evaluation(EvalConfig(benchmarks=["nope"], output=str(tmp_path)))
    with pytest.raises(ConfigError, match="samples"):
        run_evaluation(EvalConfig(samples=0, output=str(tmp_path)))


# ------------------------------------------------------------------------- CLI end to end


def test_cli_reports_data_errors_without_loading_a_model(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from gcpo.cli import main

    argv = [
        "eval",
        "--benchmarks",
        "math500",
        "--data-dir",
        str(tmp_path),
        "--output",
        str(tmp_path / "o"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "data error" in err and "math500" in err and str(tmp_path) in err


@pytest.mark.slow
@pytest.mark.skipif(not DATA.is_dir(), reason=f"benchmark data not found at {DATA}")
def test_cli_eval_end_to_end_and_resume(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from gcpo.cli import main

    out = tmp_path / "eval"
    argv = [
        "eval", "--model", "tiny-random", "--benchmarks", "math500,hotpotqa", "--limit", "2",
        "--max-new-tokens", "8", "--data-dir", str(DATA), "--output", str(out), "--no-progress",
    ]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| tiny-random |" in printed and "items/s" in printed
    rows = [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]
    assert len(rows) == 4
    assert {r["benchmark"] for r in rows} == {"math500", "hotpotqa"}
    assert all(0 <= r["new_tokens"] <= 8 and isinstance(r["generation"], str) for r in rows)
    table = list(csv.reader(io.StringIO((out / "results.csv").read_text())))
    assert table[1][0] == "tiny-random"
    before = (out / "generations.jsonl").read_text()
    assert main(argv) == 0  # re-run: everything already done
    assert (out / "generations.jsonl").read_text() == before
    assert "items/s" not in capsys.readouterr().out  # nothing was generated
    assert main([*argv, "--samples", "2"]) == 0
    assert len((out / "generations.jsonl").read_text().splitlines()) == 8
    assert main(["eval", "--benchmarks", "math500", "--samples", "0"]) == 2  # config error


# ------------------------------------------------------- offline: the hub, a trained run


def test_eval_fails_at_once_in_one_line_when_the_hub_is_unreachable(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import time

    import datasets

    import gcpo.models
    from gcpo.cli import main

    def forbidden(*args, **kwargs):
        raise AssertionError("nothing may be loaded when the hub is unreachable")

    monkeypatch.setattr(datasets, "load_dataset", forbidden)  # no ~25 s of retries either
    monkeypatch.setattr(gcpo.models, "load_policy", forbidden)
    for var in ("GCPO_DATA_DIR", "HF_HUB_OFFLINE", "HF_DATASETS_OFFLINE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens there
    start = time.monotonic()
    rc = main(["eval", "--benchmarks", "math500", "--output", str(tmp_path / "o")])
    elapsed = time.monotonic() - start
    err = capsys.readouterr().err
    assert rc == 2 and elapsed < 5.0, (rc, elapsed)
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("gcpo eval: data error: benchmark 'math500'")
    for part in ("unreachable", "127.0.0.1:9", "--data-dir", "GCPO_DATA_DIR", "HF_HUB_OFFLINE"):
        assert part in err, part


def test_offline_mode_reads_the_cache_and_fails_in_one_line(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import datasets

    from gcpo.io import DataError
    from gcpo.tasks.evalsets import load_benchmark

    calls = []

    def cache_miss(*args, **kwargs):
        calls.append(args)
        raise ConnectionError("Couldn't reach 'x' on the Hub\n(OfflineModeIsEnabled)")

    monkeypatch.setattr(datasets, "load_dataset", cache_miss)
    monkeypatch.delenv("GCPO_DATA_DIR", raising=False)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # no probe: datasets itself answers from its cache
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    with pytest.raises(DataError) as info:
        load_benchmark("aime24")
    assert calls and "\n" not in str(info.value)
    assert "OfflineModeIsEnabled" in str(info.value) and "--data-dir" in str(info.value)


class SumModel(AnswerModel):
    """Answers "What is a + b?" with a + b; records the generation budget it was given."""

    def __init__(self) -> None:
        super().__init__()
        self.budgets: list[int] = []

    def generate(self, input_ids, attention_mask, max_new_tokens, **kwargs):
        import re

        self.budgets.append(max_new_tokens)
        outs = []
        for row in input_ids.tolist():
            a, b = re.search(r"What is (\d+) \+ (\d+)", "".join(chr(i) for i in row if i)).groups()
            outs.append([ord(c) for c in str(int(a) + int(b))])
        width = max(len(o) for o in outs)
        return torch.cat(
            [input_ids, torch.tensor([o + [0] * (width - len(o)) for o in outs])], dim=1
        )


def _fake_run(tmp_path: Path) -> tuple[Path, object]:
    from gcpo.config import dump_yaml
    from gcpo.train.config import TrainConfig

    run = tmp_path / "runs" / "gcpo-arithmetic-1"
    (run / "final").mkdir(parents=True)
    (run / "final" / "config.json").write_text("{}")  # what makes it a model directory
    config = TrainConfig(
        model="tiny-random",
        task="arithmetic",
        task_options={"digits": 1, "terms": 2, "ops": "+"},
        num_train_prompts=40,
        num_eval_prompts=6,
        eval_max_new_tokens=7,
        seed=3,
        output_dir=str(run),
    )
    (run / "config.yaml").write_text(dump_yaml(config))
    return run, config


def test_eval_of_a_trained_run_scores_its_own_held_out_task(tmp_path: Path) -> None:
    from gcpo.train.data import build_data

    run, train_config = _fake_run(tmp_path)
    model = SumModel()
    cfg = EvalConfig(model=str(run / "final"), progress=False, batch_size=4)
    result = run_evaluation(cfg, model=model, tokenizer=CharTokenizer())
    assert Path(result["output"]) == run / "eval"
    assert result["this_model"] == {"arithmetic": {"items": 6, "generations": 6, "pass@1": 1.0}}
    assert set(model.budgets) == {7}  # the run's eval_max_new_tokens
    rows = [json.loads(x) for x in (run / "eval" / "generations.jsonl").read_text().splitlines()]
    _, heldout = build_data(train_config)  # what gcpo train scored before/after training
    questions = {h["prompt"][0]["content"] for h in heldout}
    from gcpo.tasks.evalsets import load_benchmark

    items = load_benchmark("arithmetic", limit=6, seed=3, options=train_config.task_options)
    assert {it.question for it in items} == questions
    assert {r["id"] for r in rows} == {it.id for it in items}
    assert "| " + str(run / "final") + " | 100.0 |" in (run / "eval" / "results.md").read_text()
    # an explicit benchmark list and limit still win; asking for more than the split holds fails
    with pytest.raises(ConfigError, match="cannot draw 500 distinct 'test' problems"):
        run_evaluation(EvalConfig(model=str(run / "final"), limit=500), model=model,
                       tokenizer=CharTokenizer())  # fmt: skip


def test_cli_eval_of_a_run_as_gcpo_train_prints_it(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gcpo eval --model RUN/final` offline: the run's task, held out, no hub, no data dir."""
    import datasets

    import gcpo.models
    from gcpo.cli import main

    run, _ = _fake_run(tmp_path)
    loaded = []

    def load_policy(name, **kwargs):
        loaded.append(name)
        return SumModel(), CharTokenizer()

    def no_hub(*args, **kwargs):
        raise AssertionError("the hub was asked for a synthetic benchmark")

    monkeypatch.setattr(gcpo.models, "load_policy", load_policy)
    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    assert main(["eval", "--model", str(run / "final"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert loaded == [str(run / "final")]
    assert "arithmetic (pass@1)" in out and "100.0" in out and str(run / "eval") in out


# ------------------------------------- issue 18: stale generations, bad --model, plugins, progress


def _model_dir(root: Path, weights: str = "w1") -> Path:
    """A stand-in model directory: what identifies it is its files, not their content."""
    root.mkdir(parents=True, exist_ok=True)
    (root / "config.json").write_text("{}")
    (root / "model.safetensors").write_text(weights)
    return root


def test_a_rerun_made_another_way_generates_again_instead_of_reusing(tmp_path: Path) -> None:
    data = _write_data(tmp_path / "data")
    model_dir = _model_dir(tmp_path / "m")
    out = tmp_path / "out"
    model, tok = AnswerModel(), CharTokenizer()

    def run(**changes):
        cfg = EvalConfig(model=str(model_dir), benchmarks=["math500"], data_dir=str(data),
                         output=str(out), progress=False, max_new_tokens=8, device="cpu")  # fmt: skip
        for k, v in changes.items():
            setattr(cfg, k, v)
        model.calls.clear()
        return run_evaluation(cfg, model=model, tokenizer=tok)

    def rows() -> list[dict]:
        return [json.loads(x) for x in (out / "generations.jsonl").read_text().splitlines()]

    assert run()["replaced"] is None and sum(model.calls) == 3
    assert run()["replaced"] is None and model.calls == []  # same settings: reused
    # another generation budget: regenerated, the old rows kept aside, one reason given
    again = run(max_new_tokens=16)
    assert sum(model.calls) == 3 and again["replaced"]["rows"] == 3
    assert "max_new_tokens 8 -> 16" in again["replaced"]["reason"]
    assert len(rows()) == 3 and {r["setting"]["max_new_tokens"] for r in rows()} == {16}
    assert len((out / "generations.replaced.jsonl").read_text().splitlines()) == 3
    # another model copied to the same path (RUN/final after --resume max_steps=N)
    (model_dir / "model.safetensors").write_text("other weights")
    again = run(max_new_tokens=16)
    assert sum(model.calls) == 3 and "model files changed" in again["replaced"]["reason"]
    # sampling settings and seed count when sampling
    run(samples=2, max_new_tokens=16)
    assert sum(model.calls) == 6
    assert run(samples=2, max_new_tokens=16, temperature=0.9)["replaced"]["rows"] == 6
    assert run(samples=2, max_new_tokens=16, temperature=0.9, seed=1)["replaced"]["rows"] == 6
    # an edited data file (same id, other question): only that item is generated again
    lines = (data / "math500" / "test.jsonl").read_text().splitlines()
    first = json.loads(lines[0])
    first["problem"] = "another problem"
    (data / "math500" / "test.jsonl").write_text("\n".join([json.dumps(first), *lines[1:]]) + "\n")
    again = run(samples=2, max_new_tokens=16, temperature=0.9, seed=1)
    assert again["replaced"]["rows"] == 2 and sum(model.calls) == 2
    # rows written before settings were recorded cannot be trusted either
    legacy = [{k: v for k, v in r.items() if k not in ("setting", "item")} for r in rows()]
    (out / "generations.jsonl").write_text("".join(json.dumps(r) + "\n" for r in legacy))
    again = run(samples=2, max_new_tokens=16, temperature=0.9, seed=1)
    assert again["replaced"]["rows"] == 6 and "older gcpo" in again["replaced"]["reason"]


def test_cli_says_a_rerun_was_made_another_way(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gcpo.models
    from gcpo.cli import main

    data = _write_data(tmp_path / "data")
    model_dir = _model_dir(tmp_path / "m")
    monkeypatch.setattr(gcpo.models, "load_policy", lambda name, **kw: (AnswerModel(), CharTokenizer()))
    argv = ["eval", "--model", str(model_dir), "--benchmarks", "math500", "--data-dir", str(data),
            "--output", str(tmp_path / "o"), "--no-progress", "--max-new-tokens", "8"]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    assert main([*argv[:-1], "9"]) == 0
    err = capsys.readouterr().err
    assert "3 earlier generations" in err and "max_new_tokens 8 -> 9" in err, err


@pytest.mark.parametrize("case", ["missing", "missing-with-data", "run-dir", "not-a-model", "hub"])
def test_cli_eval_names_a_bad_model_in_one_line(
    case: str, tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import datasets

    from gcpo.cli import main

    def no_hub(*args, **kwargs):
        raise AssertionError("the benchmark was loaded for a model that cannot be loaded")

    monkeypatch.setattr(datasets, "load_dataset", no_hub)
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # read at import
    data = _write_data(tmp_path / "data")
    with_data = ["--data-dir", str(data), "--benchmarks", "math500", "--output", str(tmp_path / "o")]
    run, _ = _fake_run(tmp_path)
    argv, expected = {
        "missing": (["--model", "/nonexistent"], ["'/nonexistent' does not exist", "final/"]),
        "missing-with-data": (["--model", "/nonexistent", *with_data], ["does not exist"]),
        "run-dir": (["--model", str(run)], ["is a gcpo train run directory",
                                            f"--model {run / 'final'}"]),
        "not-a-model": (["--model", str(data), *with_data], ["without config.json", "hub id"]),
        "hub": (["--model", "no-such-org/no-such-model", *with_data],
                ["'no-such-org/no-such-model': not a built-in name", "hub id"]),
    }[case]  # fmt: skip
    assert main(["eval", *argv, "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert err.startswith("gcpo eval: configuration error: model: ")
    assert "benchmark" not in err.split("model: ", 1)[1].split(";")[0]
    for part in expected:
        assert part in err, (part, err)


def test_cli_eval_of_a_plugin_run_imports_the_runs_plugins(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`gcpo eval --model RUN/final` of a run trained with `--plugin FILE` (its own signal)."""
    import gcpo.models
    from gcpo.cli import main

    plugin = tmp_path / "my_eval_signal_plugin.py"
    plugin.write_text(
        "from gcpo.signals import register_signal\n"
        "@register_signal('eval_plugin_spread', needs=('rewards',), bound=1.0, description='x')\n"
        "def spread(rewards, mask):\n    return rewards.std(dim=1)\n"
    )
    run, _ = _fake_run(tmp_path)
    text = (run / "config.yaml").read_text()
    assert "signal: cosine_dispersion" in text
    (run / "config.yaml").write_text(
        text.replace("signal: cosine_dispersion", "signal: eval_plugin_spread")
    )
    (run / "plugins.json").write_text(json.dumps([str(plugin)]))
    monkeypatch.setattr(gcpo.models, "load_policy", lambda name, **kw: (SumModel(), CharTokenizer()))
    assert main(["eval", "--model", str(run / "final"), "--no-progress"]) == 0, capsys.readouterr()
    assert "arithmetic (pass@1)" in capsys.readouterr().out


class StreamingModel(SumModel):
    """Calls the streamer as transformers' generate does: the prompt, then one put per step."""

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[int] = []

    def generate(self, input_ids, attention_mask, max_new_tokens, streamer=None, **kwargs):
        if streamer is not None:
            streamer.put(input_ids)
            for _ in range(3):  # every sequence ends after 3 of its max_new_tokens
                streamer.put(input_ids[:, :1])
                self.seen.append(streamer.bar.bar.n)
            streamer.end()
        return super().generate(input_ids, attention_mask, max_new_tokens, **kwargs)


def test_eval_progress_moves_per_token_step_and_hints_on_cpu(
    tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    import gcpo.evaluation as ev

    bars: list = []
    real = ev._Progress
    monkeypatch.setattr(ev, "_Progress", lambda *a: bars.append(real(*a)) or bars[-1])
    run, _ = _fake_run(tmp_path)
    model = StreamingModel()
    cfg = EvalConfig(model=str(run / "final"), batch_size=4, max_new_tokens=1024)
    run_evaluation(cfg, model=model, tokenizer=CharTokenizer())
    (bar,) = bars
    # 6 held-out prompts in batches of 4 and 2: the bar advanced within each batch
    assert model.seen == [4, 8, 12, 4 * 1024 + 2, 4 * 1024 + 4, 4 * 1024 + 6]
    assert bar.bar.n == bar.bar.total == 6 * 1024 and bar.done == 6
    err = capsys.readouterr().err
    assert "up to 1024 new tokens per generation on CPU" in err and "--max-new-tokens 256" in err
