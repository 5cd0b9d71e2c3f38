"""The package's import graph has no cycles: data -> model -> objective -> trainer -> weights -> generate -> app.

Every `import` inside driftin/ counts, including those inside functions (a lazy import still ties two modules
together: they can no longer be understood, tested or moved apart). Parsed with ast, nothing is imported.
"""
from __future__ import annotations

import ast
from pathlib import Path

import pytest

PKG = Path(__file__).resolve().parent.parent / "driftin"


def module_name(path: Path, root: Path = PKG) -> str:
    parts = list(path.relative_to(root.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imported_modules(path: Path, modules: set[str], root: Path = PKG) -> set[str]:
    """The driftin modules `path` imports (at any depth in the file), resolved to names in `modules`."""
    me = module_name(path, root)
    package = me if path.name == "__init__.py" else me.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            # `from pkg import name`: name may be a submodule, else the import is of pkg itself
            targets = [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in modules:  # `import driftin.eval.fd` -> driftin.eval.fd; unknown tails dropped
                t = t.rpartition(".")[0]
            if t and t != me:
                found.add(t)
    return found


def import_graph(root: Path = PKG) -> dict[str, set[str]]:
    files = sorted(root.rglob("*.py"))
    modules = {module_name(f, root) for f in files}
    return {module_name(f, root): imported_modules(f, modules, root) for f in files}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as [a, b, ..., a], or None. A package importing its own submodules (driftin -> driftin.hub)
    is an edge like any other: a submodule importing its package's __init__ back makes a cycle."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    stack: list[str] = []

    def visit(m: str) -> list[str] | None:
        state[m] = 1
        stack.append(m)
        for n in sorted(graph.get(m, ())):
            if state.get(n) == 1:
                return stack[stack.index(n):] + [n]
            if n not in state and (c := visit(n)):
                return c
        stack.pop()
        state[m] = 2
        return None

    for m in sorted(graph):
        if m not in state and (c := visit(m)):
            return c
    return None


def test_no_import_cycles():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle inside driftin/: " + " -> ".join(cycle)


@pytest.mark.parametrize("a_src, b_src", [
    ("from .b import f\n", "def g():\n    from .a import h\n"),          # lazy import inside a function
    ("from . import b\n", "from .a import MARKER\n"),                     # `from . import module`
    ("import pkg.b\n", "if True:\n    from pkg.a import x\n"),           # absolute, nested in a block
])
def test_cycle_detector_sees_lazy_and_relative_imports(tmp_path, a_src, b_src):
    pkg = tmp_path / "pkg"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "a.py").write_text(a_src)
    (pkg / "b.py").write_text(b_src)
    assert find_cycle(import_graph(pkg)) in (["pkg.a", "pkg.b", "pkg.a"], ["pkg.b", "pkg.a", "pkg.b"])
    (pkg / "b.py").write_text("")
    assert find_cycle(import_graph(pkg)) is None


# The import layers of docs/ARCHITECTURE.md, lowest first: a top-level module or package imports only from its own
# layer or lower ones (cycles inside a layer are caught above).
LAYERS = [
    {"paths", "config", "checkpoint", "distributed", "diffusion", "repo_files"},  # foundations
    {"data", "unet"},  # data and model
    {"hub"},  # weights I/O
    {"classifier"},  # trained feature networks, stored through hub
    {"sampling"},  # noise, guidance, DDIM
    {"fast"},  # compiled / CUDA-graph sampling
    {"generate"},  # the sampling API
    {"drift"},  # the drifting objective (its encoder is a classifier)
    {"train"},  # the trainer
    {"demo", "app", "live", "sample", "eval", "bench", "modelcard", "publish", "cli", ""},  # front ends, the package
]


def _unit(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def test_imports_follow_the_layers():
    rank = {u: i for i, layer in enumerate(LAYERS) for u in layer}
    graph = import_graph()
    units = {_unit(m) for m in graph}
    assert units <= set(rank), f"modules without a layer in LAYERS: {sorted(units - set(rank))}"
    upward = [f"{m} -> {n}" for m, deps in graph.items() for n in deps if rank[_unit(n)] > rank[_unit(m)]]
    assert not upward, "imports against the data flow: " + "; ".join(sorted(upward))


def test_sampling_library_reads_no_environment():
    """generate(), sampling and the fast path take their configuration as arguments (FastOptions); only
    FastOptions.from_env(), which the command-line tools call, looks at DRIFTIN_* variables."""
    files = [PKG / "generate.py", PKG / "sampling.py", *sorted((PKG / "fast").glob("*.py"))]
    readers = []
    for f in files:
        if f.name == "options.py":
            continue
        for node in ast.walk(ast.parse(f.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Attribute) and node.attr in ("environ", "getenv"):
                readers.append(f"{f.relative_to(PKG.parent)}:{node.lineno}")
    assert not readers, f"environment read inside the library: {readers}"
