"""What a test does when a real part it needs is missing: fail, saying how to install it.

`make test` installs and builds every real part (CI runs it on a clean machine), so a missing
one is a broken install step, never a reason to run fewer tests.
"""

from __future__ import annotations

import pytest


def require(reason: str) -> None:
    pytest.fail(f"missing real part: {reason}", pytrace=False)
