"""Go modules the tests read, at the versions pinned in testbed/versions.env.

They are fetched by the testbed's own client (testbed/modfiles.py: `go mod download` through
the Go module proxy, checksum-verified against sum.golang.org) into the Go module cache,
outside the repository, and read straight from the module zip.
"""

from __future__ import annotations

import importlib.util
import zipfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pinned_versions() -> dict[str, str]:
    lines = (ROOT / "testbed" / "versions.env").read_text().splitlines()
    return dict(line.split("=", 1) for line in lines if "=" in line and not line.startswith("#"))


class ModuleUnavailable(Exception):
    """The module could not be fetched (no `go`, no network, or the proxy refused the version)."""


@dataclass(frozen=True)
class ModuleSource:
    module: str
    version: str
    zip_path: Path

    def read(self, path: str) -> str:
        """A file of the module, by its path from the module root."""
        with zipfile.ZipFile(self.zip_path) as archive:
            return archive.read(f"{self.module}@{self.version}/{path}").decode()


def _modfiles():
    spec = importlib.util.spec_from_file_location("testbed_modfiles", ROOT / "testbed" / "modfiles.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def module_source(module: str, version: str) -> ModuleSource:
    try:
        zip_path = _modfiles().module_zip(f"{module}@{version}")
    except FileNotFoundError as error:  # no `go` on PATH (nor /usr/local/go/bin)
        raise ModuleUnavailable(f"{module}@{version}: {error}") from None
    except SystemExit as error:  # modfiles reports a failed download this way, with the reason
        raise ModuleUnavailable(str(error)) from None
    return ModuleSource(module, version, zip_path)
