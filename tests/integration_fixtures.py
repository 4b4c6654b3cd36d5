"""tests/integration/conftest.py as a module of its own, for the conftests of tests/e2e and
tests/chaos to re-export its fixtures: two conftest modules cannot both be `conftest`."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

NAME = "unbusy_integration_conftest"


def integration_conftest() -> ModuleType:
    if NAME in sys.modules:  # loaded once, whichever conftest asks first
        return sys.modules[NAME]
    path = Path(__file__).resolve().parent / "integration" / "conftest.py"
    spec = importlib.util.spec_from_file_location(NAME, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[NAME] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module
