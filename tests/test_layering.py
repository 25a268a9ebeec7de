"""Dependency direction (DESIGN): core/ is pure math; it imports no other segtool package and no
heavy library but torch and numpy. training/ sits below eval/ and pipeline/."""

import ast
from pathlib import Path

CORE = Path(__file__).resolve().parents[1] / "segtool" / "core"
# scikit-learn only for the normaliser's robust line fit (calibration.py: HuberRegressor)
ALLOWED = {"torch", "numpy", "math", "dataclasses", "__future__", "typing", "collections", "sklearn"}


def imported_roots(path: Path) -> set[str]:
    roots = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def test_core_imports_only_torch_numpy_and_stdlib_math():
    files = sorted(CORE.glob("*.py"))
    assert files, "segtool/core has no modules?"
    for path in files:
        bad = imported_roots(path) - ALLOWED
        assert not bad, f"{path.name} imports {sorted(bad)}"


def imported_modules(path: Path) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level == 0:
            modules |= {node.module} | {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            modules |= {alias.name for alias in node.names}
    return modules


def test_training_imports_nothing_above_it():
    above = {"segtool.eval", "segtool.viz", "segtool.pipeline", "segtool.cli"}
    files = sorted((CORE.parent / "training").glob("*.py"))
    assert files, "segtool/training has no modules?"
    for path in files:
        bad = {m for m in imported_modules(path) if ".".join(m.split(".")[:2]) in above}
        assert not bad, f"training/{path.name} imports {sorted(bad)}"


def test_core_relative_imports_stay_inside_core():
    for path in sorted(CORE.glob("*.py")):
        levels = {node.level for node in ast.walk(ast.parse(path.read_text())) if isinstance(node, ast.ImportFrom)}
        assert levels <= {0, 1}, f"{path.name} imports from above core"
