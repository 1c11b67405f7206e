"""Installing gcpo prints no packaging warnings of its own."""

from __future__ import annotations

import warnings
from pathlib import Path

import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


def test_setuptools_reads_pyproject_without_deprecation_warnings() -> None:
    pyprojecttoml = pytest.importorskip("setuptools.config.pyprojecttoml")
    from setuptools.dist import Distribution

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        pyprojecttoml.apply_configuration(Distribution(), str(PYPROJECT))
    messages = [str(w.message) for w in caught if "deprecat" in str(w.message).lower()]
    assert not messages, messages[0][:300]
