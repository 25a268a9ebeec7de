"""The import structure of segtool: the layers contract in pyproject.toml holds (no module imports
from a layer above its own), and no import cycle exists between segtool's packages or between its
modules. Imports inside functions count as much as module-level ones, and outside segtool/cli only
optional dependencies are imported inside functions, so the module headers show the whole graph."""

from __future__ import annotations

import ast
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import grimp
import pytest

PYPROJECT = Path(__file__).resolve().parents[1] / "pyproject.toml"
SEGTOOL = PYPROJECT.parent / "segtool"

# Imported inside the function that needs them, which reports a missing package as a clear error.
OPTIONAL = {
    "deepspeed": "data-parallel training (the deepspeed extra)",
    "gguf": "GGUF model files (the gguf extra)",
    "accelerate": "GGUF model files (the gguf extra)",
    "vllm": "generation backend",
    "wtpsplit": "sentence segmentation",
    "openai": "HTTP judge client",
    "anthropic": "HTTP judge client",
    "wandb": "ppo.log_to = wandb",
    "torch.utils.tensorboard": "ppo.log_to = tensorboard (needs the tensorboard package)",
    "yaml": "PyYAML is not a declared dependency (transformers and datasets bring it)",
}
# Required packages that stay lazy all the same: (file under segtool/, imported module) -> why.
LAZY = {
    ("inputs/readers.py", "datasets"): "hub sources only, resolved per call (the tests stand a fake in sys.modules)",
    ("models/varlen.py", "transformers.masking_utils"): "new in transformers 4.53; pyproject allows 4.50",
    ("models/compiling.py", "transformers.modeling_layers"): "newer than transformers 4.50, which pyproject allows",
    ("distributed/__init__.py", "torch"): "`segtool status` reads the run directory without loading torch (0.2 s, not 1.5 s)",
}


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


def guarded(node: ast.AST, parents: dict) -> bool:
    """Inside ``try: ... except ImportError`` or ``if TYPE_CHECKING:``."""
    while (node := parents.get(node)) is not None:
        if isinstance(node, ast.Try) and any(
                h.type is not None and re.search(r"\b(ImportError|ModuleNotFoundError)\b", ast.unparse(h.type))
                for h in node.handlers):
            return True
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test):
            return True
    return False


def function_imports(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every unguarded import inside a function body of ``path``."""
    tree = ast.parse(path.read_text())
    parents = {child: node for node in ast.walk(tree) for child in ast.iter_child_nodes(node)}
    found = set()
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, ast.Import) and not guarded(node, parents):
                    found |= {(node.lineno, alias.name) for alias in node.names}
                elif isinstance(node, ast.ImportFrom) and not guarded(node, parents):
                    found.add((node.lineno, "." * node.level + (node.module or "")))
    return sorted(found)


def optional(module: str) -> bool:
    return any(module == name or module.startswith(name + ".") for name in OPTIONAL)


def test_functions_outside_cli_import_only_optional_dependencies():
    """Module-level imports everywhere but segtool/cli (lazy so that `segtool --help` is instant)."""
    hidden = []
    for path in sorted(SEGTOOL.rglob("*.py")):
        rel = path.relative_to(SEGTOOL).as_posix()
        if rel.startswith("cli/"):
            continue
        hidden += [f"segtool/{rel}:{line} imports {module}" for line, module in function_imports(path)
                   if not optional(module) and (rel, module) not in LAZY]
    assert not hidden, "move these imports to the top of their module (or justify them in LAZY):\n" + "\n".join(hidden)


def test_lazy_exceptions_are_still_needed():
    for rel, module in LAZY:
        assert any(m == module for _, m in function_imports(SEGTOOL / rel)), f"LAZY lists {module} in {rel}: drop it"


def test_optional_dependencies_are_not_required_ones():
    declared = tomllib.loads(PYPROJECT.read_text())["project"]["dependencies"]
    required = {re.split(r"[<>=!~\[; ]", dep, maxsplit=1)[0].lower().replace("-", "_") for dep in declared}
    required = {"sklearn" if name == "scikit_learn" else name for name in required}
    assert not required & set(OPTIONAL), "a required dependency is imported at module level, not lazily"


def test_run_directory_commands_load_no_torch():
    """`segtool status` stays instant: the registry and the status stage import no torch."""
    code = "import sys, segtool.pipeline.status; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "False"
