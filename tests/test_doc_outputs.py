"""Every command output printed in the docs is what the command prints now (tests/doc_outputs.py
regenerates them: `python tests/doc_outputs.py`)."""

from __future__ import annotations

import pytest
from doc_outputs import blocks, run


def test_docs_mark_their_printed_outputs() -> None:
    assert {b.command.split()[1] for b in blocks()} >= {"signals"}


@pytest.mark.slow
@pytest.mark.parametrize("block", blocks(), ids=lambda b: f"{b.page.name}:{b.command}")
def test_documented_output_is_what_the_command_prints(block) -> None:  # type: ignore[no-untyped-def]
    assert run(block.command) == block.documented, (
        f"{block.page.name}: the output of `{block.command}` changed; "
        "regenerate the docs with `python tests/doc_outputs.py`"
    )
