"""The dependency rules of docs/architecture.md, checked over the import graph.

Read from the source with `ast` (nothing is imported), so a rule broken anywhere,
even in a function-level import, fails here with the file and the import named.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("services", "schemas", "infra", "bench")
# The pure core: venue math, pricing and routing, the order state machine, the contract.
PURE = (
    "schemas",
    "services.domain",
    "services.venues",
    "services.pricing",
    "services.market.walk",
    "services.market.flow",
    "services.market.simulate",
    "services.market.trades",
    "services.market.commands",
    "services.triggers.book",
    "services.triggers.core",
    "services.triggers.snipers",
)
IO_LIBRARIES = ("psycopg", "psycopg_pool", "aiokafka", "faust", "fastapi", "httpx", "aiohttp")


def _module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _modules() -> dict[str, Path]:
    return {
        _module_name(path): path
        for package in PACKAGES
        for path in (ROOT / package).rglob("*.py")
        if "lib" not in path.relative_to(ROOT).parts
    }


MODULES = _modules()


def _imports(module: str, path: Path) -> Iterator[tuple[str, int]]:
    """Every module `module` imports, absolute, with the line of the import."""
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            for alias in node.names:
                # `from pkg import module` names a module; `from module import name` does not.
                candidate = f"{base}.{alias.name}"
                yield (candidate if candidate in MODULES else base), node.lineno


GRAPH = {m: sorted(set(_imports(m, p))) for m, p in MODULES.items()}


def _within(name: str, prefixes: tuple[str, ...]) -> bool:
    return any(name == p or name.startswith(p + ".") for p in prefixes)


def _project_edges(module: str) -> set[str]:
    return {target for target, _ in GRAPH[module] if target in MODULES and target != module}


def test_the_graph_is_read() -> None:
    # A rule over an empty or unparsed graph would pass vacuously.
    assert "services.pricing.routing" in MODULES
    assert "services.venues.pool" in _project_edges("services.pricing.routing")


@pytest.mark.parametrize("module", sorted(m for m in MODULES if _within(m, PURE)))
def test_a_pure_module_imports_no_io_library_even_indirectly(module: str) -> None:
    seen, todo, broken = {module}, [module], []
    while todo:
        current = todo.pop()
        for target, line in GRAPH[current]:
            if _within(target, IO_LIBRARIES):
                broken.append(f"{MODULES[current].relative_to(ROOT)}:{line} imports {target}")
            elif target in MODULES and target not in seen:
                seen.add(target)
                todo.append(target)
    assert not broken, f"{module} reaches I/O: {broken}"


def test_the_api_imports_nothing_of_the_router_or_the_projector() -> None:
    crossing = [
        f"{module} -> {target}"
        for module in MODULES
        if _within(module, ("services.api",))
        for target in _project_edges(module)
        if _within(target, ("services.router", "services.projector"))
    ]
    assert not crossing


def test_there_is_no_import_loop() -> None:
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    loops: list[list[str]] = []

    def visit(node: str) -> None:  # Tarjan's strongly connected components
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in _project_edges(node):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                loops.append(sorted(component))

    for module in MODULES:
        if module not in index:
            visit(module)
    assert not loops
