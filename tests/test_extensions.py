"""A signal and a weight function defined outside gcpo work everywhere by name: scoring, the
core weighting, the TRL trainer (with checkpointed state), `gcpo signals` and `gcpo analyze`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"


@pytest.fixture()
def plugin(monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """The example module, imported fresh; its registrations are removed afterwards so other
    tests see the built-in registry only."""
    import importlib
    import sys

    from gcpo.signals import SIGNALS

    before = set(SIGNALS)
    monkeypatch.syspath_prepend(str(EXAMPLES))
    sys.modules.pop("custom_weighting", None)
    module = importlib.import_module("custom_weighting")
    yield module
    for name in set(SIGNALS) - before:
        del SIGNALS[name]
    sys.modules.pop("custom_weighting", None)


def test_registered_signal_is_scored_by_name(plugin) -> None:  # type: ignore[no-untyped-def]
    from gcpo.presets import preset
    from gcpo.scoring import Groups, GroupScorer
    from gcpo.signals import get_signal
    from gcpo.weighting import WeightingConfig, group_weights, initial_state

    spec = get_signal("answer_spread")
    assert spec.needs == ("clusters",) and spec.bound_value(8, 0.5) == 1.0
    groups = Groups.from_lists(
        ["a", "b"],
        [["x 4", "y 4", "z 5"], ["4", "4", "4"]],
        [[1, 1, 0], [1, 1, 1]],
        answers=[["4", "4", "5"], ["4", "4", "4"]],
    )
    config = preset("gcpo", {"signal": "answer_spread", "normalization": "bound", "calibration": "product"})
    assert isinstance(config, WeightingConfig) and config.signal == "answer_spread"
    scorer = GroupScorer(config, "hashing")
    result = scorer.score(groups)
    assert result.uncertainty.tolist() == pytest.approx([0.5, 0.0])
    assert result.rows()[0]["answer_spread"] == pytest.approx(0.5)
    # the same weights as the core applied to the signal's values
    expected = group_weights(
        result.uncertainty,
        result.reward_dispersion,
        config,
        initial_state(config),
        group_size=groups.group_sizes,
        rewards=groups.rewards,
        mask=groups.mask,
    )
    torch.testing.assert_close(result.weights, expected)
    with pytest.raises(ValueError, match="already registered"):
        from gcpo.signals import register_signal

        register_signal("answer_spread", needs=(), bound=1.0, description="")(lambda mask: mask)
    with pytest.raises(ValueError, match="needs: unknown input"):
        register_signal("other", needs=("texts",), bound=1.0, description="")


def test_weight_function_trains_with_checkpointed_state(plugin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("trl")
    from test_trl_trainer import Recording, make_trainer

    from gcpo.rundir import STATE_FILE

    trainer = make_trainer(
        tmp_path,
        cls=Recording,
        weighting=plugin.pass_rate_weight,
        max_steps=2,
        save_strategy="steps",
        save_steps=1,
    )
    trainer.extra_signals = ["answer_spread", "cd"]
    trainer.train()
    for rec in trainer.records:
        expected = plugin.pass_rate_weight(rec["groups"], {}).float().repeat_interleave(2)
        torch.testing.assert_close(rec["weights"], expected)
        torch.testing.assert_close(rec["final"], rec["base"] * rec["weights"])
    assert trainer.gcpo_state == {"batches": 2}
    row = trainer.state.log_history[0]
    assert "gcpo/signal/answer_spread" in row and "gcpo/active_groups" in row
    saved = json.loads((tmp_path / "out" / "checkpoint-1" / STATE_FILE).read_text())
    assert saved["function_state"] == {"batches": 1}
    resumed = make_trainer(
        tmp_path, cls=Recording, weighting=plugin.pass_rate_weight, max_steps=3,
        save_strategy="steps", save_steps=1,
    )
    resumed.train(resume_from_checkpoint=str(tmp_path / "out" / "checkpoint-2"))
    assert resumed.gcpo_state == {"batches": 3}  # continued from the checkpoint's count


def test_registered_signal_as_the_trainers_weighting(plugin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("trl")
    from test_trl_trainer import make_trainer

    from gcpo.weighting import WeightingConfig

    config = WeightingConfig(signal="answer_spread", normalization="rank")
    trainer = make_trainer(tmp_path, weighting=config, max_steps=1)
    trainer.train()
    assert "gcpo/signal/answer_spread" in trainer.state.log_history[0]


def test_cli_signals_and_analyze_load_the_plugin(plugin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from gcpo.cli import main

    groups = EXAMPLES / "groups.jsonl"
    out = tmp_path / "s.csv"
    rc = main(["signals", "--plugin", "custom_weighting", "-i", str(groups), "--embedder",
               "hashing", "--signals", "answer_spread,cd", "-q", "-o", str(out)])  # fmt: skip
    assert rc == 0
    header = out.read_text().splitlines()[0].split(",")
    assert "answer_spread" in header and "cd" in header
    assert main(["signals", "--plugin", "no_such_module_xyz", "-i", str(groups)]) == 2


def test_train_records_its_plugin_and_resume_imports_it(plugin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    """A run whose weighting is a plugin's signal resumes with a bare ``--resume``."""
    pytest.importorskip("trl")
    import sys

    from test_train_cli import TINY

    from gcpo.cli import main
    from gcpo.signals import SIGNALS

    run = tmp_path / "run"
    rc = main(["train", "--plugin", "custom_weighting", "--output", str(run), *TINY,
               "weighting.signal=answer_spread", "max_steps=1", "save_steps=1", "--json"])  # fmt: skip
    assert rc == 0
    assert json.loads((run / "plugins.json").read_text()) == ["custom_weighting"]
    # a new process: the plugin's registration is gone until something imports it again
    del SIGNALS["answer_spread"]
    sys.modules.pop("custom_weighting", None)
    assert main(["train", "--resume", str(run), "max_steps=2", "--json"]) == 0
    assert "answer_spread" in SIGNALS
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if "gcpo/signal/answer_spread" in r] == [1, 2]


@pytest.mark.slow
def test_analyze_reports_a_registered_signal(plugin, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    pytest.importorskip("trl")
    from gcpo.cli import main

    rc = main(["analyze", "--plugin", "custom_weighting", "signals=[answer_spread]",
               "model=tiny-random", "task=arithmetic", "prompts=3", "group_size=3",
               "max_new_tokens=4", f"output={tmp_path / 'a'}", "embedder=hashing",
               "progress=false", "bootstrap=10"])  # fmt: skip
    assert rc == 0
    rows = (tmp_path / "a" / "groups.csv").read_text().splitlines()
    assert "answer_spread" in rows[0].split(",")
    assert "answer_spread" in (tmp_path / "a" / "correlations.md").read_text()


def test_docs_show_the_example_that_runs_here() -> None:
    """The weight function printed in docs/training.md is the one these tests train with."""
    import re

    docs = (Path(__file__).resolve().parents[1] / "docs" / "training.md").read_text()
    example = (EXAMPLES / "custom_weighting.py").read_text()
    body = example[example.index("def pass_rate_weight") :]
    code = re.sub(r'    """.*?"""\n', "", body, flags=re.S).strip()
    assert code in docs


@pytest.fixture()
def clean_registry():  # type: ignore[no-untyped-def]
    """Signals registered by the test are removed afterwards, and the example module unloaded."""
    import sys

    from gcpo.signals import SIGNALS

    before = set(SIGNALS)
    sys.modules.pop("custom_weighting", None)
    yield
    for name in set(SIGNALS) - before:
        del SIGNALS[name]
    sys.modules.pop("custom_weighting", None)


def test_plugin_as_a_file_path_from_the_repository_root(
    clean_registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:  # type: ignore[no-untyped-def]
    import sys

    from gcpo.cli import main
    from gcpo.plugins import load_plugins

    monkeypatch.chdir(EXAMPLES.parent)
    # as the `gcpo` script runs: the current directory is not on sys.path
    root = str(EXAMPLES.parent)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", ".", root)])
    out = tmp_path / "s.csv"
    rc = main(["signals", "--plugin", "examples/custom_weighting.py", "-i", "examples/groups.jsonl",
               "--embedder", "hashing", "--signals", "answer_spread,cd", "-q", "-o", str(out)])  # fmt: skip
    assert rc == 0, capsys.readouterr().err
    assert "answer_spread" in out.read_text().splitlines()[0].split(",")
    # importing the same file again (e.g. a run's recorded plugins) registers nothing twice
    assert load_plugins(["examples/custom_weighting.py"], entry_points=False) == [
        str(EXAMPLES / "custom_weighting.py")
    ]
    capsys.readouterr()
    # the dotted module name is not importable from the root: say what to do, in one line
    assert main(["signals", "--plugin", "examples.custom_weighting", "-i", "examples/groups.jsonl"]) == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1, err
    assert "PYTHONPATH" in err and "--plugin examples/custom_weighting.py" in err
    assert main(["signals", "--plugin", "examples/nope.py", "-i", "examples/groups.jsonl"]) == 2
    assert "examples/nope.py: no such file" in capsys.readouterr().err


def test_a_plugin_signal_that_embeds_gets_the_embedder_everywhere() -> None:
    # the registry's needs decide whether the embedder is used (scoring, gcpo train --check,
    # the verl step), not a list of built-in signal names
    from gcpo.scoring import GroupScorer
    from gcpo.signals import SIGNALS, register_signal
    from gcpo.train.check import _locate_embedder
    from gcpo.train.config import TrainConfig
    from gcpo.weighting import WeightingConfig

    register_signal("embed_norm", needs=("embeddings",), bound=1.0, description="")(
        lambda embeddings, mask: embeddings.norm(dim=-1).mean(-1)
    )
    try:
        assert GroupScorer(WeightingConfig(signal="embed_norm")).uses_embedder()
        assert not GroupScorer(WeightingConfig(signal="none")).uses_embedder()
        assert GroupScorer(WeightingConfig(signal="none")).uses_embedder(["embed_norm"])
        used = TrainConfig(embedder="hashing", weighting={"signal": "embed_norm"})
        assert _locate_embedder(used) == "hashing (model-free)"
        unused = TrainConfig(embedder="hashing", preset="grpo")
        assert _locate_embedder(unused) == "hashing (not used by this preset)"
    finally:
        del SIGNALS["embed_norm"]
