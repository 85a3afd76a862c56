"""optx's modules import each other without cycles, function-level imports included.

Every module under ``optx/`` is parsed with ``ast``; each ``import`` and ``from ... import``
anywhere in it (module level, functions, ``if TYPE_CHECKING`` blocks) is an edge to the module it
names. ``from pkg import name`` is an edge to ``pkg.name`` when that is a module and to ``pkg``
(its ``__init__``) otherwise; relative imports are resolved against the importing module.
Importing ``a.b.c`` is an edge to ``a.b.c`` only: the parent packages' ``__init__`` run first,
but an edge to them would make every submodule depend on ``optx/__init__``.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = "optx"


def _modules() -> dict[str, Path]:
    out = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = path
    return out


def _edges(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: set[str] = set()

    def add(target: str) -> None:
        # The deepest existing module that ``target`` names (``optx.a.b.func`` -> ``optx.a.b``).
        while target and target not in modules:
            target = target.rpartition(".")[0]
        if target and target != name:
            found.add(target)

    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.split(".")[0] == PACKAGE:
                    add(alias.name)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - (node.level - 1)]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] != PACKAGE:
                continue
            for alias in node.names:
                full = f"{source}.{alias.name}"
                add(full if full in modules else source)
    return found


def _graph() -> dict[str, set[str]]:
    modules = _modules()
    return {name: _edges(name, path, modules) for name, path in modules.items()}


def _find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """A cycle as a list of modules (first == last), or None; iterative DFS, three colours."""
    state: dict[str, int] = {}  # 1: on the stack, 2: done
    for root in sorted(graph):
        if state.get(root):
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        state[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                stack.pop()
                path.pop()
                state[node] = 2
            elif state.get(child) == 1:
                return path[path.index(child):] + [child]
            elif not state.get(child):
                state[child] = 1
                path.append(child)
                stack.append((child, iter(sorted(graph[child]))))
    return None


def test_graph_sees_every_kind_of_import():
    graph = _graph()
    assert "optx.optim" in graph["optx"]  # `from optx import optim`
    assert "optx.hyperparams" in graph["optx.torch_optimizer"]  # `from optx import hyperparams`
    assert "optx.transformation" in graph["optx.optimizers.sgd"]  # `from optx.x import name`
    assert "optx.optim.optimizer" in graph["optx.optim"]  # package __init__
    cyclic = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert _find_cycle(cyclic) in (["a", "b", "c", "a"], ["b", "c", "a", "b"])
    assert _find_cycle({"a": {"b"}, "b": set()}) is None


def test_package_imports_are_acyclic():
    cycle = _find_cycle(_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_module_level_imports_are_runtime_dependencies():
    """Importing optx needs only pyproject's dependencies: a test-only library (flax, equinox,
    optax, torch) is imported inside the function that needs it, if at all."""
    import re
    import sys

    deps = re.search(r"^dependencies = \[(.*)\]$", (ROOT / "pyproject.toml").read_text(), re.M)
    assert deps
    allowed = {re.split(r"[<>=!~ ]", d.strip(' "'))[0] for d in deps.group(1).split(",")}
    allowed |= set(sys.stdlib_module_names) | {PACKAGE}
    bad = []
    for name, path in _modules().items():
        for node in ast.parse(path.read_text()).body:  # module level only
            if isinstance(node, ast.Import):
                roots = [a.name.split(".")[0] for a in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            bad += [f"{name}: {r}" for r in roots if r not in allowed]
    assert allowed >= {"jax", "jaxlib", "chex", "numpy"} and not bad, bad
