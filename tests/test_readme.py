"""The README's Python snippets run as written."""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def _snippet(marker: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)
    (code,) = [b for b in blocks if marker in b]
    return code


@pytest.mark.slow
def test_readme_gcpo_trainer_snippet_trains_with_weights_on_cpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("trl")
    from gcpo.trl import OneGroupPerBatchWarning

    monkeypatch.chdir(tmp_path)  # output_dir="out"
    scope: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("error", OneGroupPerBatchWarning)
        exec(compile(_snippet("GCPOTrainer("), str(README), "exec"), scope)
    trainer = scope["trainer"]
    assert trainer.state.global_step == 2
    assert trainer.gcpo_counts["one_group_per_batch"] == 0
    assert trainer.args.generation_batch_size // trainer.num_generations >= 2
    assert [r for r in trainer.state.log_history if "gcpo/active_groups" in r]


def _quickstart_facts() -> tuple[str, str]:
    """What the docs must say about the quickstart, from configs/quickstart.yaml itself."""
    from gcpo.train.config import QUICKSTART, load_train_config

    c = load_train_config(QUICKSTART)
    size = (
        f"{c.max_steps} steps of {c.per_device_train_batch_size // c.num_generations} prompts x "
        f"{c.num_generations} completions"
    )
    run_dir = c.output_dir.format(preset=c.preset, task=c.task, time="<time>")
    return size, run_dir


def test_docs_describe_the_quickstart_that_runs() -> None:
    """docs/training.md and the README describe configs/quickstart.yaml as it is, and quote the
    measured run the README's benchmark table reports (one source for the numbers)."""
    import re

    size, run_dir = _quickstart_facts()
    readme = README.read_text(encoding="utf-8")
    training = (README.parent / "docs" / "training.md").read_text(encoding="utf-8")
    assert size in training and size.replace(" x ", " × ") in readme
    assert run_dir in training and run_dir in readme
    row = re.search(r"^\| gcpo \| ([\d.]+) min \|.*?\| ([\d.]+ -> [\d.]+) \|", readme, flags=re.M)
    assert row is not None, "the README's quickstart benchmark table"
    wall, heldout = row.groups()
    assert f"| gcpo | {wall} min |" in training and heldout in training
    assert f"from {heldout.replace(' -> ', ' to ')}" in training
    for stale in ("30 steps", "0.267", "3 min 40 s", "runs/gcpo-arithmetic-<time>", "one-digit operands"):
        assert stale not in training, stale


def test_readme_lists_every_subcommand() -> None:
    from gcpo.cli import subcommands

    readme = README.read_text(encoding="utf-8")
    assert f"(`gcpo {' | '.join(subcommands())}`)" in readme
    for name in subcommands():
        assert f"| `gcpo {name}` |" in readme, name
