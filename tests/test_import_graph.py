"""The import graph of src/gcpo has no cycle and no upward edge between layers (bottom to top:
core, glue = every module no layer names, adapters, recipes, cli; docs/design.md section 9).
Read with ``ast`` from the source: absolute and relative imports, at module level, in functions
and under ``TYPE_CHECKING``, plus a string that is exactly a module's name (the lazy
``importlib.import_module("gcpo.verl.step")`` of a package ``__getattr__``); an edge goes to the
module named, not to packages loaded on the way.
"""

from __future__ import annotations

import ast
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

import gcpo

PACKAGE = Path(gcpo.__file__).resolve().parent
CORE = ("signals", "weighting", "advantages", "peers", "fields", "validation", "barycenter")
LAYERS = (  # bottom to top; the package itself (a version string) is below them all
    ("core", tuple(f"gcpo.{m}" for m in CORE)),
    ("glue", ()),
    ("adapters", ("gcpo.trl", "gcpo.verl")),
    ("recipes", ("gcpo.train", "gcpo.compare", "gcpo.evaluation", "gcpo.diagnostics")),
    ("cli", ("gcpo.cli",)),
    ("main", ("gcpo.__main__",)),
)


def rank(module: str) -> int:
    """Index of ``module``'s layer in LAYERS (-1: the package itself; unnamed: glue)."""
    if module == "gcpo":
        return -1
    for i, (_, names) in enumerate(LAYERS):
        if any(module == n or module.startswith(n + ".") for n in names):
            return i
    return 1


def imported(module: str, path: Path, known: set[str]) -> set[str]:
    """The modules of ``known`` that ``module``'s source (at ``path``) imports."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom):
            source = node.module or ""
            if node.level:  # relative: from the package, up level - 1 packages
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            for a in node.names:  # ``from gcpo import config`` imports the module gcpo.config
                sub = f"{source}.{a.name}"
                names.add(sub if sub in known else source)
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in known:
            names.add(node.value)  # imported by name at run time
    out = set()
    for name in names:
        while name and name not in known:  # a name inside a module: that module
            name = name.rpartition(".")[0]
        if name and name != module:
            out.add(name)
    return out


def import_graph() -> dict[str, set[str]]:
    paths = {}
    for p in PACKAGE.rglob("*.py"):
        parts = p.relative_to(PACKAGE.parent).with_suffix("").parts
        paths[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = p
    return {m: imported(m, p, set(paths)) for m, p in paths.items()}


def cycle(graph: dict[str, set[str]]) -> list[str]:
    """One import cycle of ``graph`` ([] when there is none)."""
    try:
        TopologicalSorter(graph).prepare()
    except CycleError as exc:
        return list(exc.args[1])
    return []


def upward(graph: dict[str, set[str]]) -> list[str]:
    return sorted(f"{a} -> {b}" for a, bs in graph.items() for b in bs if rank(b) > rank(a))


GRAPH = import_graph()


def test_the_graph_sees_every_kind_of_import(tmp_path: Path) -> None:
    assert "gcpo.weighting" in GRAPH["gcpo.scoring"]  # at module level
    assert "gcpo.cli.train" in GRAPH["gcpo.cli"]  # inside a function
    assert "gcpo.fields" in GRAPH["gcpo.verl.step"]  # from gcpo import fields
    assert "gcpo.verl.trainer" in GRAPH["gcpo.verl"]  # a lazy import by name
    source = tmp_path / "m.py"
    source.write_text("from . import io\nfrom ..weighting import group_weights\n")
    known = {"gcpo", "gcpo.io", "gcpo.tasks.io", "gcpo.weighting", "gcpo.tasks.m"}
    assert imported("gcpo.tasks.m", source, known) == {"gcpo.tasks.io", "gcpo.weighting"}


def test_the_checks_find_a_cycle_and_an_upward_edge() -> None:
    graph = {"gcpo.io": {"gcpo.models"}, "gcpo.models": {"gcpo.io", "gcpo.trl.trainer"}}
    assert sorted(cycle(graph)) == ["gcpo.io", "gcpo.io", "gcpo.models"]
    assert upward(graph) == ["gcpo.models -> gcpo.trl.trainer"]
    assert rank("gcpo.cli.train") > rank("gcpo.train.run") > rank("gcpo.trl") > rank("gcpo.io")


def test_no_import_cycle() -> None:
    assert cycle(GRAPH) == []


def test_no_upward_import() -> None:
    assert upward(GRAPH) == []
