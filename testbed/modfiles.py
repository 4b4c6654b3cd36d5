#!/usr/bin/env python3
"""Extract data files (CRDs, kwok stages) from a Go module zip fetched from the proxy.

Usage: modfiles.py MODULE@VERSION OUT_DIR GLOB [GLOB...]

`go mod download` fetches and checksum-verifies the module zip through the ordinary Go
client (GOPROXY + sum.golang.org). We read files straight from the zip instead of the
extracted module directory because the extraction step refuses modules whose go.mod
asks for a newer Go than the local toolchain (sigs.k8s.io/gateway-api v1.7.0 wants
go 1.27), although the YAML files inside are all we need.
"""

from __future__ import annotations

import fnmatch
import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path


def module_zip(module_at_version: str) -> Path:
    """Download (or find in the module cache) the verified zip of one module version."""
    env = dict(os.environ, GOFLAGS="-mod=mod")
    env["PATH"] = env.get("PATH", "") + ":/usr/local/go/bin"
    proc = subprocess.run(
        ["go", "mod", "download", "-json", module_at_version],
        capture_output=True,
        text=True,
        env=env,
        check=False,
    )
    # A non-zero exit with a "requires go >= X" error still leaves a verified zip.
    info = json.loads(proc.stdout or "{}")
    zip_path = Path(info.get("Zip", ""))
    if not info.get("Zip") or not zip_path.is_file():
        sys.exit(f"modfiles: cannot download {module_at_version}: {proc.stderr or info}")
    return zip_path


def extract(zip_path: Path, module_at_version: str, out_dir: Path, globs: list[str]) -> int:
    """Copy files matching any glob (relative to the module root) into out_dir, flat."""
    prefix = module_at_version + "/"
    out_dir.mkdir(parents=True, exist_ok=True)
    count = 0
    with zipfile.ZipFile(zip_path) as zf:
        for name in sorted(zf.namelist()):
            rel = name.removeprefix(prefix)
            if any(fnmatch.fnmatch(rel, g) for g in globs):
                (out_dir / Path(rel).name).write_bytes(zf.read(name))
                count += 1
    return count


def main() -> None:
    if len(sys.argv) < 4:
        sys.exit(__doc__)
    module_at_version, out_dir, *globs = sys.argv[1:]
    n = extract(module_zip(module_at_version), module_at_version, Path(out_dir), globs)
    if n == 0:
        sys.exit(f"modfiles: no files in {module_at_version} match {globs}")
    print(f"modfiles: {n} files from {module_at_version} -> {out_dir}", file=sys.stderr)


if __name__ == "__main__":
    main()
