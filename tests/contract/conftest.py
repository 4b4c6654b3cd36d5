"""Fixtures for the contract tests: a real `tritonserver` on the CPU, from the PyPI wheel `nvidia-pytriton`.

The `triton` fixture (session scope) starts the server the wheel carries with two small
Python-backend models written to a temporary model repository, waits until both are ready,
and stops it at the end of the session:

- `add_sub` (OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1): dynamic batching up to 4,
  a bounded queue of 32, 50 ms per batch, so a burst of concurrent requests queues up;
- `slow`: the same model with batches of 1, a queue of 1, a queue timeout of 100 ms and 400 ms
  per batch: in a burst of concurrent requests one runs, one waits in the queue until its
  timeout rejects it, and Triton refuses the rest at once because the queue is full. Both
  refusals are Triton's HTTP 503 "server busy".

How it runs on the CPU (DESIGN.md, "Real parts"): the wheel's own libraries go on
LD_LIBRARY_PATH, GPU metrics are off, and the Python backend gets the stub built for the
running Python. The backend is copied into a temporary backend directory with the stub put
next to it -- as pytriton itself does in its workspace -- rather than into site-packages:
site-packages may be read-only (a system or CI-cached environment), and a test must not leave
a file behind in an installed package that pip does not know about.

Where the wheel is not installed the tests fail, saying so; `make install` installs it
(`.venv/bin/pip install nvidia-pytriton`).

Environment:
  TRITON_CONTRACT_VERBOSE=1   print the server's log at the end of the session.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import signal
import socket
import subprocess
import sys
import sysconfig
import textwrap
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from missing import require

START_TIMEOUT_S = 45
STOP_TIMEOUT_S = 10


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "contract: needs a real tritonserver (tests/contract)")


@dataclass(frozen=True)
class ModelSpec:
    """One model of the test repository: its batching, its queue bound and its time per batch."""

    name: str
    max_batch_size: int
    max_queue_size: int
    delay_s: float
    queue_timeout_us: int = 0  # with a timeout, a request queued longer is rejected (timeout_action REJECT)


ADD_SUB = ModelSpec("add_sub", max_batch_size=4, max_queue_size=32, delay_s=0.05)
SLOW = ModelSpec("slow", max_batch_size=1, max_queue_size=1, delay_s=0.4, queue_timeout_us=100_000)
MODELS = (ADD_SUB, SLOW)
MODEL_VERSION = "1"

# Inputs and outputs are FP32 vectors of this length (per batch item).
VECTOR_LEN = 4

MODEL_PY = textwrap.dedent(
    '''
    """add_sub for the contract tests: OUTPUT0 = INPUT0 + INPUT1, OUTPUT1 = INPUT0 - INPUT1, slowly."""

    import json
    import time

    import triton_python_backend_utils as pb_utils


    class TritonPythonModel:
        def initialize(self, args):
            config = json.loads(args["model_config"])
            self.delay_s = float(config["parameters"]["delay_s"]["string_value"])

        def execute(self, requests):
            time.sleep(self.delay_s)  # once per batch: what a GPU kernel would take
            responses = []
            for request in requests:
                a = pb_utils.get_input_tensor_by_name(request, "INPUT0").as_numpy()
                b = pb_utils.get_input_tensor_by_name(request, "INPUT1").as_numpy()
                out0 = pb_utils.Tensor("OUTPUT0", a + b)
                out1 = pb_utils.Tensor("OUTPUT1", a - b)
                responses.append(pb_utils.InferenceResponse(output_tensors=[out0, out1]))
            return responses
    '''
).lstrip()


def model_config(spec: ModelSpec) -> str:
    """config.pbtxt: FP32 vectors in and out, one CPU instance, dynamic batching with a bounded queue."""
    queue_policy = f"max_queue_size: {spec.max_queue_size}"
    if spec.queue_timeout_us:
        queue_policy += f" default_timeout_microseconds: {spec.queue_timeout_us} timeout_action: REJECT"
    tensors = (("input", "INPUT0"), ("input", "INPUT1"), ("output", "OUTPUT0"), ("output", "OUTPUT1"))
    lines = [
        f'name: "{spec.name}"',
        'backend: "python"',
        f"max_batch_size: {spec.max_batch_size}",
        *(f'{kind} [ {{ name: "{name}" data_type: TYPE_FP32 dims: [ {VECTOR_LEN} ] }} ]' for kind, name in tensors),
        "instance_group [ { count: 1 kind: KIND_CPU } ]",
        f"dynamic_batching {{ max_queue_delay_microseconds: 2000 default_queue_policy {{ {queue_policy} }} }}",
        f'parameters {{ key: "delay_s" value: {{ string_value: "{spec.delay_s}" }} }}',
    ]
    return "\n".join(lines) + "\n"


@dataclass(frozen=True)
class TritonServer:
    """A running tritonserver: its ports on 127.0.0.1 and where its log goes."""

    http_port: int
    grpc_port: int
    metrics_port: int
    log: Path
    models: tuple[ModelSpec, ...] = MODELS
    model_version: str = MODEL_VERSION  # every model has this one version
    vector_len: int = VECTOR_LEN  # FP32 inputs and outputs of this length per batch item

    def model(self, name: str) -> ModelSpec:
        return next(spec for spec in self.models if spec.name == name)

    @property
    def http_url(self) -> str:
        """host:port, the form tritonclient.http expects (no scheme)."""
        return f"127.0.0.1:{self.http_port}"

    @property
    def metrics_url(self) -> str:
        return f"http://127.0.0.1:{self.metrics_port}/metrics"

    def scrape(self) -> str:
        """The Prometheus text of /metrics, as a scrape would read it."""
        with urllib.request.urlopen(self.metrics_url, timeout=5) as response:
            return response.read().decode()


def _free_ports(count: int) -> list[int]:
    """Ports free on 127.0.0.1 now (held open together, so that they differ)."""
    sockets = [socket.socket(socket.AF_INET, socket.SOCK_STREAM) for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind(("127.0.0.1", 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


def _pytriton_dir() -> Path | None:
    found = importlib.util.find_spec("pytriton")
    if found is None or not found.submodule_search_locations:
        return None
    return Path(next(iter(found.submodule_search_locations)))


def _write_models(repository: Path) -> None:
    for spec in MODELS:
        version_dir = repository / spec.name / MODEL_VERSION
        version_dir.mkdir(parents=True)
        (version_dir / "model.py").write_text(MODEL_PY)
        (repository / spec.name / "config.pbtxt").write_text(model_config(spec))


def _backends(dist: Path, into: Path) -> Path:
    """A backend directory whose python backend carries the stub for the running Python."""
    python_version = f"{sys.version_info.major}.{sys.version_info.minor}"
    stub = dist / "python_backend_stubs" / python_version / "triton_python_backend_stub"
    if not stub.is_file():
        require(f"tritonserver: nvidia-pytriton has no Python-backend stub for Python {python_version} ({stub})")
    backends = into / "backends"
    shutil.copytree(dist / "backends", backends, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy2(stub, backends / "python" / stub.name)
    return backends


def _server_env(libs: Path) -> dict[str, str]:
    env = dict(os.environ)
    # The stub embeds Python: give it the libpython, the standard library and the packages
    # (numpy) of the interpreter running the tests, whatever libpython3.x the system has.
    libdir = sysconfig.get_config_var("LIBDIR") or ""
    library_path = [libdir, str(libs), env.get("LD_LIBRARY_PATH", "")]
    env["LD_LIBRARY_PATH"] = ":".join(part for part in library_path if part)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    return env


def _ready(server: TritonServer) -> bool:
    paths = ["/v2/health/ready"] + [f"/v2/models/{spec.name}/ready" for spec in server.models]
    try:
        for path in paths:
            with urllib.request.urlopen(f"http://{server.http_url}{path}", timeout=2) as response:
                if response.status != 200:
                    return False
    except OSError:
        return False
    return True


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is not None:
        return
    process.send_signal(signal.SIGINT)  # tritonserver's graceful shutdown (unloads models, stops stubs)
    try:
        process.wait(timeout=STOP_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(timeout=STOP_TIMEOUT_S)


@pytest.fixture(scope="session")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TritonServer]:
    pytriton = _pytriton_dir()
    if pytriton is None:
        require("tritonserver: the nvidia-pytriton wheel is not installed (pip install nvidia-pytriton)")
    dist = pytriton / "tritonserver"
    binary = dist / "bin" / "tritonserver"
    libs = pytriton.parent / "nvidia_pytriton.libs"
    if not binary.is_file() or not libs.is_dir():
        require(f"tritonserver: nvidia-pytriton carries no tritonserver binary and libraries ({binary}, {libs})")

    work = tmp_path_factory.mktemp("triton")
    repository = work / "models"
    _write_models(repository)
    backends = _backends(dist, work)
    http_port, grpc_port, metrics_port = _free_ports(3)
    server = TritonServer(http_port, grpc_port, metrics_port, work / "tritonserver.log")
    command = [
        str(binary),
        f"--model-repository={repository}",
        f"--backend-directory={backends}",
        f"--cache-directory={dist / 'caches'}",
        "--allow-gpu-metrics=false",
        "--allow-cpu-metrics=false",
        "--http-address=127.0.0.1",
        f"--http-port={http_port}",
        "--grpc-address=127.0.0.1",
        f"--grpc-port={grpc_port}",
        "--metrics-address=127.0.0.1",
        f"--metrics-port={metrics_port}",
        # The alert rules query latency quantiles; Triton exports them only with this (deployment.py sets it too).
        "--metrics-config=summary_latencies=true",
        "--strict-readiness=true",
        "--exit-on-error=true",
    ]
    with server.log.open("wb") as log:
        process = subprocess.Popen(
            command, stdout=log, stderr=subprocess.STDOUT, env=_server_env(libs), start_new_session=True
        )
    try:
        deadline = time.monotonic() + START_TIMEOUT_S
        while not _ready(server):
            if process.poll() is not None or time.monotonic() > deadline:
                # The wheel is there, so a failing start is a real failure, never a skip.
                why = f"exited {process.returncode}" if process.poll() is not None else "not ready in time"
                pytest.fail(f"tritonserver {why}; its log:\n{server.log.read_text()[-6000:]}", pytrace=False)
            time.sleep(0.2)
        yield server
    finally:
        _stop(process)
        if os.environ.get("TRITON_CONTRACT_VERBOSE"):
            print(server.log.read_text())
