"""The checks of .ci/resolve.py (the resolution matrix CI runs) on hand-made resolutions: no
pip, no network here; CI runs the real resolutions."""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / ".ci" / "resolve.py"


@pytest.fixture(scope="module")
def resolve() -> Iterator[Any]:
    spec = importlib.util.spec_from_file_location("ci_resolve", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["ci_resolve"] = module  # dataclasses look their module up
    spec.loader.exec_module(module)
    yield module
    sys.modules.pop("ci_resolve", None)


def _scenario(resolve: Any, name: str) -> Any:
    return next(s for s in resolve.SCENARIOS if s.name.startswith(name))


def test_the_2019_hydra_fallback_fails_the_matrix(resolve: Any) -> None:
    s = _scenario(resolve, "gcpo[verl] + verl[vllm]")
    good = {"verl": "0.9.1", "vllm": "0.24.0", "hydra-core": "1.3.8", "omegaconf": "2.3.1"}
    assert resolve.check(s, good) == []
    bad = {**good, "hydra-core": "0.11.3", "omegaconf": "1.4.1"}
    problems = resolve.check(s, bad)
    assert len(problems) == 2 and "hydra-core resolved to 0.11.3" in problems[0]
    assert any("omegaconf resolved to 1.4.1" in p for p in problems)
    missing = {k: v for k, v in good.items() if k != "vllm"}
    assert resolve.check(s, missing) == ["vllm is not in the resolution"]


def test_trls_vllm_span_is_checked_against_its_metadata(resolve: Any) -> None:
    s = _scenario(resolve, "gcpo + trl[vllm]==1.16.0, lowest")
    versions = {"trl": "1.16.0", "vllm": "0.22.0"}
    ok = {**versions, "<trl requires vllm>": 'vllm<=0.31.0,>=0.22.0; extra == "vllm"'}
    assert resolve.check(s, ok) == []
    moved = {**versions, "<trl requires vllm>": 'vllm<=0.33.0,>=0.22.0; extra == "vllm"'}
    assert "update TRL_VLLM_LOWEST / TRL_VLLM_HIGHEST" in resolve.check(s, moved)[0]
    assert resolve.check(s, versions)  # no vllm requirement at all: flagged


def test_release_parsing(resolve: Any) -> None:
    assert resolve._release("2.13.0+cpu") == (2, 13, 0)
    assert resolve._release("1.3.0.dev2") == (1, 3, 0)
    assert resolve._norm("TransferQueue") == "transferqueue"
