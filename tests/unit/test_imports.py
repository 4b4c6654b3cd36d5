"""The house's walls (docs/architecture.md): which room may import which, read from the source.

A room is a folder of operator/unbusy/ (api, render, scaling ...) or a module beside them
(health, series, timestamps, cli). Every import counts, inside a function or under
TYPE_CHECKING too: an arrow is an arrow even when Python would not trip over it.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "unbusy"

# The operator and the pure rooms under it never import the simulator: what they share with it
# (the serving model of a replica) lives in serving/, below both.
SIM_FREE = ("api", "gpu", "render", "kube", "scaling", "traffic", "serving", "controller")

# Data flows one way: manifest -> api -> render -> kube -> cluster, and cluster + Prometheus ->
# scaling/traffic -> children -> kube. A room never imports one to its right in that flow, nor
# the simulator and the demo built on top of everything.
ABOVE_ALL = {"controller", "sim", "demo", "cli"}
FORBIDDEN: dict[str, set[str]] = {
    "api": {"gpu", "render", "kube", "scaling", "traffic", "serving", "triton", "health"} | ABOVE_ALL,
    "gpu": {"render", "kube", "scaling", "traffic", "serving", "triton", "health"} | ABOVE_ALL,
    "serving": {"render", "kube", "scaling", "traffic", "triton", "health"} | ABOVE_ALL,
    "render": {"kube", "scaling", "traffic", "triton", "health"} | ABOVE_ALL,
    "scaling": {"kube"} | ABOVE_ALL,
    "traffic": {"kube"} | ABOVE_ALL,
    "triton": {"kube"} | ABOVE_ALL,
    "kube": ABOVE_ALL,
    "health": {"kube"} | ABOVE_ALL,
    "controller": {"demo", "cli"},  # and sim: test_the_operator_never_imports_the_simulator
    "sim": {"controller", "kube", "demo", "cli"},
}


def modules() -> dict[str, Path]:
    """Every module of the package by dotted name (a package by its own name)."""
    found = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = ("unbusy", *path.relative_to(PACKAGE).with_suffix("").parts)
        found[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    return found


MODULES = modules()


def imported(module: str, path: Path) -> Iterator[str]:
    """The package's modules that `module` imports, anywhere in it."""
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            assert not node.level, f"{module}: a relative import; the package imports by absolute name"
            base = node.module or ""
            # `from unbusy.render import meta` imports the module render.meta; `from unbusy.api
            # import load` the package unbusy.api.
            names = [f"{base}.{a.name}" if f"{base}.{a.name}" in MODULES else base for a in node.names]
        else:
            continue
        yield from (name for name in names if name in MODULES and name != module)


def room(module: str) -> str:
    return module.split(".")[1] if "." in module else module


EDGES = {module: set(imported(module, path)) for module, path in MODULES.items()}


def arrows(frm: str, to: set[str]) -> list[str]:
    """The imports from a module of room `frm` into a module of the rooms `to`."""
    return sorted(
        f"{module} -> {target}"
        for module, targets in EDGES.items()
        if room(module) == frm
        for target in targets
        if room(target) in to
    )


def test_the_graph_is_read():
    # A guard for the reader above: imports of every kind are found.
    assert "unbusy.render.meta" in EDGES["unbusy.render.keda"]  # from unbusy.render import meta
    assert "unbusy.api" in EDGES["unbusy.render.keda"]  # from unbusy.api import InferenceService
    assert "unbusy.controller.handlers" in EDGES["unbusy.cli"]  # inside a function


@pytest.mark.parametrize("frm", SIM_FREE)
def test_the_operator_never_imports_the_simulator(frm):
    assert not arrows(frm, {"sim"})


@pytest.mark.parametrize("frm", sorted(FORBIDDEN))
def test_no_room_imports_one_to_its_right(frm):
    assert not arrows(frm, FORBIDDEN[frm])


def _cycle(graph: dict[str, set[str]]) -> list[str]:
    """A cycle of `graph`, or [] where it has none (depth-first, three colours)."""
    state: dict[str, int] = {}  # 1: on the current path, 2: done
    path: list[str] = []

    def visit(node: str) -> list[str]:
        state[node] = 1
        path.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return [*path[path.index(nxt) :], nxt]
            if nxt not in state and (found := visit(nxt)):
                return found
        state[node] = 2
        path.pop()
        return []

    for node in sorted(graph):
        if node not in state and (found := visit(node)):
            return found
    return []


def test_no_cycle_between_rooms():
    rooms: dict[str, set[str]] = {}
    for module, targets in EDGES.items():
        rooms.setdefault(room(module), set()).update(room(t) for t in targets if room(t) != room(module))
    assert not _cycle(rooms), " -> ".join(_cycle(rooms))


def test_no_cycle_between_modules():
    # A package's __init__ gathers its modules; a module importing a name from its own package
    # is how Python reads `from unbusy.render import RenderContext`, not a circle of the design.
    graph = {m: {t for t in ts if not m.startswith(t + ".")} for m, ts in EDGES.items()}
    assert not _cycle(graph), " -> ".join(_cycle(graph))


def test_the_cycle_finder_finds_one():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) == []
