"""The fuzz tests at the benchmark's size: 1,000 generated InferenceServices through the real API
server and the operator, 2,000 through `unbusy render` (tests/fuzz_specs.py, UNBUSY_FUZZ=bench).

    .venv/bin/python bench/fuzz.py

Needs the testbed (tests/integration brings it up). Prints pytest's summary and the split of the
API-server cases: refused at admission, InvalidSpec, valid and reconciled.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TESTS = ["tests/unit/test_fuzz_render.py", "tests/integration/test_fuzz.py"]


def main() -> int:
    env = dict(os.environ, UNBUSY_FUZZ="bench")
    # One pytest run per suite: the integration conftest must not load before the unit one's imports.
    codes = [subprocess.call([sys.executable, "-m", "pytest", "-q", "-s", test], cwd=ROOT, env=env) for test in TESTS]
    return max(codes)


if __name__ == "__main__":
    sys.exit(main())
