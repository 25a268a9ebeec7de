"""The import structure of segtool: the layers contract in pyproject.toml holds (no module imports
from a layer above its own), and no import cycle exists between segtool's packages or between its
modules. Imports inside functions count as much as module-level ones."""

from __future__ import annotations

from pathlib import Path

import grimp
import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"


@pytest.fixture(scope="module")
def graph() -> grimp.ImportGraph:
    return grimp.build_graph("segtool", cache_dir=None)


def test_layers_contract_holds(capsys):
    import importlinter.api  # noqa: F401  (sets up import-linter's adapters)
    from importlinter.application import use_cases

    passed = use_cases.lint_imports(config_filename=str(PYPROJECT), cache_dir=None, no_logo=True)
    assert passed, capsys.readouterr().out


def strongly_connected(nodes, edges_of) -> list[list[str]]:
    """The components of more than one node (Tarjan): each holds a cycle."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in edges_of(v):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(nodes):
        if node not in index:
            visit(node)
    return found


def package_of(module: str) -> str:
    return ".".join(module.split(".")[:2])  # segtool.<package> (or the top-level module itself)


def test_no_import_cycle_between_modules(graph):
    cycles = strongly_connected(graph.modules, graph.find_modules_directly_imported_by)
    assert not cycles, f"modules importing each other in a circle: {cycles}"


def test_no_import_cycle_between_packages(graph):
    edges: dict[str, set[str]] = {}
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if package_of(module) != package_of(imported):
                edges.setdefault(package_of(module), set()).add(package_of(imported))
    packages = {package_of(m) for m in graph.modules}
    cycles = strongly_connected(packages, lambda p: sorted(edges.get(p, ())))
    assert not cycles, f"packages importing each other in a circle: {cycles}"
