"""The package's imports form no circle (DESIGN.md's floors: a module imports only from
floors below it), counting imports inside functions too: lazy for start-up time, they still
tie modules together. One documented exception: the docs backend reads `registry.BACKENDS`
(the enforcement matrix) and the registry lists docs among the backends; no other module
may join that pair (apparmor once did, for a path helper now in backends/base.py)."""

from __future__ import annotations

import ast
from pathlib import Path

from shared_schemas import REPO

PACKAGE = REPO / "clawpolicy"
ALLOWED = {"clawpolicy.backends.docs", "clawpolicy.backends.registry"}


def _module(path: Path) -> str:
    parts = path.relative_to(REPO).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def edges(package: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the package modules it imports, anywhere in its text."""
    modules = {_module(p): p for p in package.rglob("*.py")}
    graph: dict[str, set[str]] = {}
    for name, path in modules.items():
        targets: set[str] = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                targets |= {a.name for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                targets.add(node.module)
                targets |= {f"{node.module}.{a.name}" for a in node.names}
        graph[name] = {t for t in targets if t in modules and t != name}
    return graph


def circles(graph: dict[str, set[str]]) -> list[set[str]]:
    """The strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    out: list[set[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        for nxt in sorted(graph[node]):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            component = set()
            while True:
                member = stack.pop()
                component.add(member)
                if member == node:
                    break
            if len(component) > 1:
                out.append(component)

    for start in sorted(graph):
        if start not in index:
            visit(start)
    return out


def test_no_import_circle() -> None:
    graph = edges()
    assert "clawpolicy.backends.docs" not in graph["clawpolicy.backends.apparmor"]
    assert [c for c in circles(graph) if c != ALLOWED] == []


def test_the_check_sees_a_circle() -> None:
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}, "e": set()}
    assert circles(graph) == [{"a", "b", "c"}]
