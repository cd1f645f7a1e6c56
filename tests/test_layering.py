"""The import graph's direction, read from the source with ``ast``: ``rdio_core`` imports neither
``rdio_tasks`` nor ``rdio_api``, ``rdio_tasks`` never imports ``rdio_api``, and no two ``rdio_core``
modules import each other in a circle (``jobs`` and ``alerts`` did, for one enum).

Every import counts, also those inside functions and under ``TYPE_CHECKING``: a deferred import is
still an arrow (``rdio_core.alerts.publish`` reached ``rdio_tasks`` from inside a function).
"""

from __future__ import annotations

import ast
from pathlib import Path

from tests.helpers import REPO

PACKAGES = ("rdio_core", "rdio_tasks", "rdio_api")
#: Which package may not import which.
FORBIDDEN = {"rdio_core": ("rdio_tasks", "rdio_api"), "rdio_tasks": ("rdio_api",)}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imported(path: Path, modules: set[str]) -> set[str]:
    """The project modules ``path`` imports (``from a import b`` counts ``a.b`` when it is a module)."""
    name = module_name(path)
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names if f"{base}.{alias.name}" in modules)
    return {m for m in found if m.split(".")[0] in PACKAGES and m != name}


def import_graph() -> dict[str, set[str]]:
    files = [p for pkg in PACKAGES for p in (REPO / pkg).rglob("*.py") if "migrations" not in p.parts]
    modules = {module_name(p) for p in files}
    graph = {module_name(p): imported(p, modules) for p in files}
    # `import a.b.c` also runs a/__init__ and a/b/__init__: the arrow goes to the module named.
    return {m: {t for t in targets if t in modules} for m, targets in graph.items()}


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan's algorithm)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, ()):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_layers_import_one_way():
    arrows = [
        f"{source} -> {target}"
        for source, targets in sorted(import_graph().items())
        for target in sorted(targets)
        if target.split(".")[0] in FORBIDDEN.get(source.split(".")[0], ())
    ]
    assert arrows == []


def test_no_import_circle_inside_rdio_core():
    """A package's ``__init__`` importing its own modules is no circle; anything else is."""
    graph = {
        source: {t for t in targets if t.startswith("rdio_core") and not source.startswith(t + ".")}
        for source, targets in import_graph().items()
        if source.startswith("rdio_core")
    }
    assert cycles(graph) == []


def test_the_checker_sees_an_arrow_and_a_circle():
    """The two checks above can fail: a made-up graph with a circle and a forbidden arrow."""
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    graph = import_graph()
    assert "rdio_core.models" in graph["rdio_core.jobs"]  # real arrows are read
    assert "rdio_core.outbox.lease" in graph["rdio_core.jobs"]
