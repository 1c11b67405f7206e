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
