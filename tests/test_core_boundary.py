"""The core boundary: gcpo.signals, gcpo.weighting and gcpo.advantages (and the gcpo modules they
import) load no YAML, file system, model, task, TRL, verl or transformers code (docs/design.md,
section 9). Checked twice: by what a fresh interpreter has in ``sys.modules`` after importing the
core, and statically on the core's source (imports anywhere in a module, file-access calls)."""

from __future__ import annotations

import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

import gcpo

CORE = ("gcpo.signals", "gcpo.weighting", "gcpo.advantages", "gcpo.peers")
# every gcpo module the core may import (the core itself and its helpers)
CORE_CLOSURE = frozenset(
    CORE + ("gcpo", "gcpo.validation", "gcpo.barycenter", "gcpo.fields")
)
# third-party packages (and their submodules) the core must not load
FORBIDDEN_PACKAGES = (
    "yaml",
    "trl",
    "transformers",
    "verl",
    "accelerate",
    "datasets",
    "sentence_transformers",
)
# gcpo modules above the core (and their submodules)
FORBIDDEN_GCPO = (
    "gcpo.config",
    "gcpo.presets",
    "gcpo.tasks",
    "gcpo.models",
    "gcpo.embedders",
    "gcpo.scoring",
    "gcpo.io",
)
SRC = Path(gcpo.__file__).resolve().parent.parent


def _is_under(module: str, packages: tuple[str, ...]) -> bool:
    return any(module == p or module.startswith(p + ".") for p in packages)


def _modules_after_import(*names: str) -> set[str]:
    """``sys.modules`` of a fresh interpreter after ``import`` of ``names``."""
    code = (
        "import json, sys\n"
        + "".join(f"import {n}\n" for n in names)
        + "print(json.dumps(sorted(sys.modules)))\n"
    )
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(SRC), env.get("PYTHONPATH")]))
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300
    )
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


def _forbidden(modules: set[str]) -> list[str]:
    return sorted(
        m for m in modules if _is_under(m, FORBIDDEN_PACKAGES) or _is_under(m, FORBIDDEN_GCPO)
    )


def test_importing_the_core_loads_nothing_above_it() -> None:
    modules = _modules_after_import(*CORE)
    assert set(CORE) <= modules
    assert _forbidden(modules) == []
    gcpo_modules = {m for m in modules if m == "gcpo" or m.startswith("gcpo.")}
    assert gcpo_modules <= CORE_CLOSURE, sorted(gcpo_modules - CORE_CLOSURE)


def test_the_import_check_sees_what_is_above_the_core() -> None:
    # control for the test above: the presets module (above the core) reads YAML files
    found = _forbidden(_modules_after_import("gcpo.presets"))
    assert {"yaml", "gcpo.config", "gcpo.presets"} <= set(found)


def _source(module: str) -> tuple[Path, ast.Module]:
    rel = module.split(".")[1:]
    path = SRC.joinpath("gcpo", *rel).with_suffix(".py") if rel else SRC / "gcpo" / "__init__.py"
    return path, ast.parse(path.read_text(encoding="utf-8"), filename=str(path))


def _imports(tree: ast.Module) -> set[str]:
    """Every module named by an import statement anywhere in ``tree`` (function bodies too)."""
    out: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            # ``from gcpo import config`` imports the module gcpo.config
            out.update(f"{node.module}.{a.name}" for a in node.names if node.module == "gcpo")
    return out


@pytest.mark.parametrize("module", sorted(CORE_CLOSURE))
def test_core_sources_import_only_the_core(module: str) -> None:
    _, tree = _source(module)
    imported = _imports(tree)
    assert [m for m in imported if _is_under(m, FORBIDDEN_PACKAGES)] == []
    gcpo_imports = {m for m in imported if m == "gcpo" or m.startswith("gcpo.")}
    assert gcpo_imports <= CORE_CLOSURE, sorted(gcpo_imports - CORE_CLOSURE)


FILE_ACCESS_NAMES = {"open", "Path", "PurePath"}
FILE_ACCESS_METHODS = {
    "open",
    "read_text",
    "read_bytes",
    "write_text",
    "write_bytes",
    "glob",
    "iterdir",
    "is_file",
    "exists",
    "load",  # yaml.load / json.load / torch.load / np.load on a file
}


def _file_access_calls(tree: ast.Module) -> list[str]:
    found = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name) and func.id in FILE_ACCESS_NAMES:
            found.append(f"line {node.lineno}: {func.id}(")
        elif isinstance(func, ast.Attribute) and func.attr in FILE_ACCESS_METHODS | FILE_ACCESS_NAMES:
            found.append(f"line {node.lineno}: .{func.attr}(")
    return found


@pytest.mark.parametrize("module", sorted(CORE_CLOSURE))
def test_core_sources_do_not_touch_files(module: str) -> None:
    path, tree = _source(module)
    assert _file_access_calls(tree) == [], path


def test_the_file_access_check_finds_file_access() -> None:
    # control for the test above, on a module above the core that reads files
    _, tree = _source("gcpo.presets")
    assert _file_access_calls(tree) != []
    _, tree = _source("gcpo.config")
    assert any("read_text" in c for c in _file_access_calls(tree))
