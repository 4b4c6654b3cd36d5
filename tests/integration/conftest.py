"""Fixtures for tests that need a real Kubernetes API server: the local testbed.

The `testbed` fixture (session scope) brings the testbed up once through the same
script as `make testbed-up`, points KUBECONFIG at it, puts its binaries (kubectl and
helm of the same version among them) first on PATH, and tears it down at the end of
the session -- but only if this session started it. A testbed that was already running
(say from `make testbed-up` in another terminal) is reused and left running.

Where a prerequisite is missing (no Go to build the control plane, no openssl/curl/flock)
the tests fail, saying what to install: `make test` installs everything they need.

Environment:
  TESTBED_KEEP=1   leave a testbed this session started running afterwards.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from builders import CRD

from missing import require

REPO_ROOT = Path(__file__).resolve().parents[2]
TESTBED_DIR = REPO_ROOT / "testbed"
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kubectl", "kwok", "helm", "traefik")
UP_TIMEOUT_S = 3600  # a first run builds Kubernetes from source: ~15 minutes on 2 cores


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "integration: needs the local Kubernetes testbed (tests/integration)")


@dataclass(frozen=True)
class Testbed:
    """A running testbed: where its kubeconfig is, and helpers to talk to it."""

    kubeconfig: Path
    bin_dir: Path  # etcd, kube-apiserver, kube-controller-manager, kube-scheduler, kubectl, kwok, helm, traefik
    started_here: bool

    @property
    def helm(self) -> Path:
        return self.bin_dir / "helm"

    @property
    def kubectl_path(self) -> Path:
        """The kubectl built with the control plane (same version as the API server)."""
        return self.bin_dir / "kubectl"

    def kubectl(
        self,
        *args: str,
        check: bool = True,
        input: str | None = None,
        timeout: float = 120,
    ) -> subprocess.CompletedProcess[str]:
        """Run kubectl against the testbed; raises with stderr shown when check fails."""
        cmd = [str(self.kubectl_path), "--kubeconfig", str(self.kubeconfig), *args]
        proc = subprocess.run(
            cmd,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if check and proc.returncode != 0:
            raise AssertionError(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stderr}{proc.stdout}")
        return proc

    def kubectl_json(self, *args: str) -> dict:
        return json.loads(self.kubectl(*args, "-o", "json").stdout)

    def wait(self, *args: str, timeout: float = 60) -> None:
        """`kubectl wait ARGS`, with the subprocess timeout a little above kubectl's own."""
        self.kubectl("wait", *args, f"--timeout={int(timeout)}s", timeout=timeout + 15)

    def apply(self, manifest: str | dict, namespace: str | None = None) -> None:
        """kubectl apply a manifest given as YAML text or as a dict."""
        text = manifest if isinstance(manifest, str) else json.dumps(manifest)
        ns = ["-n", namespace] if namespace else []
        self.kubectl("apply", *ns, "-f", "-", input=text)


def _run_script(name: str, *args: str, timeout: float) -> subprocess.CompletedProcess[str]:
    # stderr streams through to pytest's captured output; stdout carries the result.
    return subprocess.run(
        [str(TESTBED_DIR / name), *args],
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
        check=False,
    )


def _bin_dir() -> Path:
    env = {}
    for line in (TESTBED_DIR / "versions.env").read_text().splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            env[key.strip()] = value.strip()
    cache = Path(os.environ.get("UNBUSY_TESTBED_CACHE", Path.home() / ".cache/unbusy-testbed"))
    return cache / env["K8S_VERSION"] / "bin"


def _missing_prerequisites(bin_dir: Path) -> list[str]:
    """What this machine lacks to bring the testbed up (empty when all is there)."""
    missing = [tool for tool in ("openssl", "curl", "flock") if not shutil.which(tool)]
    built = all((bin_dir / b).exists() for b in BINARIES)
    if not built and not (shutil.which("go") or Path("/usr/local/go/bin/go").exists()):
        missing.append(f"go (to build the control plane into {bin_dir})")
    return missing


def _already_running() -> bool:
    proc = subprocess.run([str(TESTBED_DIR / "status.sh")], capture_output=True, text=True, check=False)
    return proc.returncode == 0


@pytest.fixture(scope="session")
def testbed() -> Iterator[Testbed]:
    bin_dir = _bin_dir()
    missing = _missing_prerequisites(bin_dir)
    if missing:
        require("testbed: missing " + ", ".join(missing))

    started_here = not _already_running()
    proc = _run_script("up.sh", timeout=UP_TIMEOUT_S)
    if proc.returncode != 0:
        # Prerequisites were there, so a failing start is a real failure, never a skip.
        pytest.fail(
            f"testbed/up.sh exited {proc.returncode}; logs in {REPO_ROOT / '.testbed/logs'}",
            pytrace=False,
        )
    bed = Testbed(
        kubeconfig=Path(proc.stdout.strip().splitlines()[-1]),
        bin_dir=bin_dir,
        started_here=started_here,
    )

    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("KUBECONFIG", str(bed.kubeconfig))
        # kubectl and helm of the testbed's version first on PATH for anything tests run.
        mp.setenv("PATH", f"{bin_dir}{os.pathsep}{os.environ.get('PATH', '')}")
        try:
            yield bed
        finally:
            if started_here and os.environ.get("TESTBED_KEEP") != "1":
                _run_script("down.sh", timeout=120)


def fresh_namespace(testbed: Testbed, request: pytest.FixtureRequest, free_gpus: bool = True) -> Iterator[str]:
    """A namespace named after the test. Afterwards, with `free_gpus`, its pods are deleted and waited
    for, so the next test finds every fake GPU free again; the namespace itself goes away in the
    background (the namespace controller takes ~5 s, which tests need not wait for)."""
    slug = re.sub(r"[^a-z0-9]+", "-", request.node.name.lower()).strip("-")[:40].strip("-")
    name = f"t-{slug}-{secrets.token_hex(3)}"
    testbed.kubectl("create", "namespace", name)
    try:
        yield name
    finally:
        # Terminating first: the namespace then admits no new pods, so no ReplicaSet
        # can replace the pods deleted next.
        testbed.kubectl("delete", "namespace", name, "--wait=false", check=False)
        if free_gpus:
            testbed.kubectl("delete", "pods", "--all", "-n", name, "--wait=true", "--timeout=60s", check=False)


@pytest.fixture
def namespace(testbed: Testbed, request: pytest.FixtureRequest) -> Iterator[str]:
    """A fresh namespace per test, its pods gone (their GPUs free) when the test is done."""
    yield from fresh_namespace(testbed, request)


@pytest.fixture(scope="session")
def crd(testbed: Testbed) -> None:
    """The InferenceService CRD of this checkout, installed and established."""
    testbed.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(CRD))
    testbed.wait("--for", "condition=Established", "crd/inferenceservices.serving.unbusy.dev")
