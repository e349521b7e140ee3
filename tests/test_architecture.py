"""The package's shape: import direction, no cycles, module and parameter-list sizes, public API.

The rules are the ones docs/architecture.md states; this is the check that keeps them true.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import pytest

import gatekeeper

PACKAGE = Path(gatekeeper.__file__).parent
DOCS = PACKAGE.parent / "docs" / "architecture.md"
HTTP_LIBRARIES = frozenset({"aiohttp", "httptools", "uvicorn", "starlette", "httpx"})
MAX_LINES = 400
MAX_PARAMETERS = 5
# Layers from the bottom up: a module may import its own layer and the ones below it only.
LAYERS: tuple[tuple[str, ...], ...] = (
    ("errors", "clock", "ids", "asgi", "logs", "verdicts", "clients", "enqueue"),
    ("config",),
    ("store", "metrics"),
    ("core",),
    ("proxy",),
    ("web",),
    ("gate",),
    ("app",),
    ("response_cycle", "server", "supervisor"),
    ("cli", "operator_cli", "__main__", "__init__"),
)
FORBIDDEN = {  # a folder, and the parts of the package it must not import
    "proxy": ("store", "core", "gate", "web"),
    "config": ("store", "gate", "core", "web", "proxy"),
    "store": ("core", "gate", "web", "proxy"),
    "core": ("gate", "web", "proxy"),
}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        name = ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
        found[name] = path
    return found


MODULES = _modules()


def _imports(name: str, path: Path) -> Iterator[str]:
    """Every module `name` imports (TYPE_CHECKING and function-level imports included)."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[: len(anchor) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            yield base
            for alias in node.names:  # `from gatekeeper.store import memory`
                if f"{base}.{alias.name}" in MODULES:
                    yield f"{base}.{alias.name}"


def _own(name: str) -> str | None:
    """The package module an import names (the deepest one), or None for another library."""
    while name and name not in MODULES:
        name = name.rpartition(".")[0]
    return name or None


GRAPH = {
    name: {own for imported in _imports(name, path) if (own := _own(imported)) and own != name}
    for name, path in MODULES.items()
}


def _part(module: str) -> str:
    """The top-level part of the package a module belongs to ("store", "gate", "app", ...)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else "__init__"


def _layer(module: str) -> int:
    part = _part(module)
    for level, names in enumerate(LAYERS):
        if part in names:
            return level
    raise AssertionError(f"{module}: not in any layer of LAYERS; add it to one")


def test_every_module_is_in_a_layer() -> None:
    for module in MODULES:
        _layer(module)


def test_imports_only_go_down() -> None:
    upward = [
        f"{module} -> {imported}"
        for module, targets in GRAPH.items()
        for imported in targets
        if _layer(imported) > _layer(module)
    ]
    assert upward == []


def test_no_import_cycle() -> None:
    cycles: list[list[str]] = []
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(module: str) -> None:
        state[module] = 1
        stack.append(module)
        for imported in sorted(GRAPH[module]):
            if state.get(imported) == 1:
                cycles.append([*stack[stack.index(imported) :], imported])
            elif imported not in state:
                visit(imported)
        stack.pop()
        state[module] = 2

    for module in sorted(GRAPH):
        if module not in state:
            visit(module)
    assert cycles == []


@pytest.mark.parametrize("folder", sorted(FORBIDDEN))
def test_forbidden_imports(folder: str) -> None:
    bad = [
        f"{module} -> {imported}"
        for module, targets in GRAPH.items()
        if _part(module) == folder
        for imported in targets
        if _part(imported) in FORBIDDEN[folder]
    ]
    assert bad == []


@pytest.mark.parametrize("folder", ["store", "core"])
def test_no_http_library_below_the_faces(folder: str) -> None:
    bad = [
        f"{module} imports {imported}"
        for module, path in MODULES.items()
        if _part(module) == folder
        for imported in _imports(module, path)
        if imported.partition(".")[0] in HTTP_LIBRARIES
    ]
    assert bad == []


def test_no_module_over_the_size_budget() -> None:
    sizes = {m: len(p.read_text(encoding="utf-8").splitlines()) for m, p in MODULES.items()}
    assert {m: n for m, n in sizes.items() if n > MAX_LINES} == {}


def test_no_long_parameter_lists() -> None:
    long = []
    for module, path in MODULES.items():
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                a = node.args
                names = [x.arg for x in (*a.posonlyargs, *a.args, *a.kwonlyargs)]
                names = [n for n in names if n not in ("self", "cls")]
                if len(names) > MAX_PARAMETERS:
                    long.append(f"{module}.{node.name}({', '.join(names)})")
    assert long == []


def test_the_rule_checker_sees_imports() -> None:
    # Guards the checker itself: a graph without edges would pass every rule above.
    assert "gatekeeper.gate.admission" in GRAPH["gatekeeper.gate.middleware"]
    assert "gatekeeper.store.base" in GRAPH["gatekeeper.store.memory"]


def _documented_names() -> list[str]:
    text = DOCS.read_text(encoding="utf-8")
    section = text.split("## Public API", 1)[1].split("\n## ", 1)[0]
    return sorted(re.findall(r"^- `([A-Za-z_][A-Za-z0-9_]*)`", section, flags=re.MULTILINE))


def test_public_api_is_exactly_the_documented_names() -> None:
    assert sorted(gatekeeper.__all__) == _documented_names()


def test_public_names_resolve() -> None:
    for name in gatekeeper.__all__:
        assert getattr(gatekeeper, name) is not None


def test_the_gate_middleware_is_dispatch_and_lifespan() -> None:
    # Everything else a request needs lives in its own module of gate/ (admission, routes,
    # forwarding, responses, auth_request); the middleware only hands requests to them.
    tree = ast.parse(MODULES["gatekeeper.gate.middleware"].read_text(encoding="utf-8"))
    gate = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Gate")
    methods = {n.name for n in gate.body if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)}
    dispatch = {"__init__", "__call__", "_gate", "cookie_name"}
    lifespan = {"_lifespan", "__aenter__", "__aexit__"}
    assert methods <= dispatch | lifespan
