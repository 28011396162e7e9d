"""The house keeps its shape (issue 22): the package's imports, read with ``ast`` at every level (module,
function, ``if TYPE_CHECKING:``), form no cycle, and the lower floors never import the upper ones.

Lower floors: ``utils/``, ``payload``, ``exceptions`` (and ``compat``). Upper floors: ``hooks/``,
``operators/``, ``sensors/``, ``triggers/``, ``links/``. A lower module names an upper one's type
through a ``typing.Protocol`` instead, never by importing it, not even for type checking.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

PACKAGE = "airflow_provider_siro"
ROOT = Path(__file__).resolve().parents[1] / PACKAGE
LOWER = ("utils", "payload", "exceptions", "compat")
UPPER = ("hooks", "operators", "sensors", "triggers", "links")


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES = {module_name(path): path for path in ROOT.rglob("*.py")}


def imported_modules(name: str, path: Path) -> Iterator[tuple[str, int]]:
    """The package's modules that ``name`` imports anywhere in its source, with the line."""
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".") if is_package else name.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                stem = ".".join([*base, node.module] if node.module else base)
            else:
                stem = node.module or ""
            # ``from package import module`` imports the module; ``from module import name`` the module.
            targets = [
                f"{stem}.{alias.name}" if f"{stem}.{alias.name}" in MODULES else stem for alias in node.names
            ]
        else:
            continue
        for target in targets:
            while target and target not in MODULES:  # ``import a.b.c`` where c is a name
                target = target.rpartition(".")[0]
            if target.startswith(PACKAGE) and target != name:
                yield target, node.lineno


GRAPH = {
    name: sorted({target for target, _ in imported_modules(name, path)}) for name, path in MODULES.items()
}


def cycles(graph: dict[str, list[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in graph.get(node, []):
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


# Breaches that other parts of issue 22 are removing as this test lands, each named by its owner. A breach
# not listed fails the test at once; once a listed one is gone, delete its line (the lists only shrink).
KNOWN_CYCLES: list[list[str]] = []
KNOWN_UPWARD: set[str] = set()


def floor(name: str) -> str:
    return name.split(".")[1] if "." in name else ""


def test_the_walk_sees_imports_at_every_level():
    # The walk itself: module-level, function-level and TYPE_CHECKING imports are all edges.
    assert "airflow_provider_siro.operators.base" in GRAPH["airflow_provider_siro.operators.siro"]
    assert "airflow_provider_siro.hooks.siro" in GRAPH["airflow_provider_siro.operators.base"]  # in a method
    assert (
        "airflow_provider_siro.utils.ledger" in GRAPH["airflow_provider_siro.operators.base"]
    )  # TYPE_CHECKING
    assert cycles({"a": ["b"], "b": ["c"], "c": ["a"], "d": ["a"]}) == [["a", "b", "c"]]


def test_no_import_cycles_in_the_package():
    new = [cycle for cycle in cycles(GRAPH) if cycle not in KNOWN_CYCLES]
    assert new == []


def test_lower_floors_never_import_upper_ones():
    upward = [
        f"{name} imports {target} (line {line})"
        for name, path in sorted(MODULES.items())
        if floor(name) in LOWER
        for target, line in imported_modules(name, path)
        if floor(target) in UPPER and f"{name} imports {target}" not in KNOWN_UPWARD
    ]
    assert upward == []


def test_the_operators_modules_form_no_cycle_with_anything():
    # This part's own modules are clean today, with no allowance.
    ours = [c for c in cycles(GRAPH) if any(".operators." in m or ".links." in m for m in c)]
    assert ours == []
