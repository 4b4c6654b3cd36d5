"""The operator's rooms read the serving model from serving/, never from the simulator (issue 22)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[2] / "operator" / "unbusy"
OPERATOR_ROOMS = ("controller", "scaling", "render", "kube", "traffic", "serving")


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


@pytest.mark.parametrize("room", OPERATOR_ROOMS)
def test_room_imports_nothing_from_the_simulator(room):
    found = {
        f"{path.relative_to(PACKAGE)}: {name}"
        for path in (PACKAGE / room).rglob("*.py")
        for name in _imports(path)
        if name == "unbusy.sim" or name.startswith("unbusy.sim.")
    }
    assert not found, f"{room}/ imports the simulator: {sorted(found)}"
