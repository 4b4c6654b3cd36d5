"""The commands docs/getting-started.md and README.md show, run as a reader runs them.

Every `$ command` of a ```console block in getting-started runs in a shell at the repository's
root, with the virtualenv's `unbusy` first on PATH, and prints what the page shows after it:
exactly, except a simulation's figures (they move whenever the policy or a profile does; the
lines and their labels are checked). The ```sh blocks need the testbed and are run elsewhere:
`make demo` by tests/e2e/test_demo.py, `kubectl get infsvc` by tests/integration/test_kubectl.py.
README's InferenceService is rendered as `kubectl apply` would get it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from builders import ROOT

from unbusy.api import load
from unbusy.render import render_all

PAGE = ROOT / "docs" / "getting-started.md"
FIGURE = re.compile(r"-?[0-9][0-9,]*(\.[0-9]+)?")


def console_commands(text: str) -> list[tuple[str, list[str]]]:
    """(command, the lines shown after it) of every `$ ` line in the ```console blocks."""
    found: list[tuple[str, list[str]]] = []
    for block in re.findall(r"^```console\n(.*?)^```", text, re.MULTILINE | re.DOTALL):
        for line in block.splitlines():
            if line.startswith("$ "):
                found.append((line[2:], []))
            else:
                found[-1][1].append(line)
    return found


COMMANDS = console_commands(PAGE.read_text())


def test_the_page_shows_commands():
    assert [command.split()[:2] for command, _ in COMMANDS] == [
        ["unbusy", "render"],
        ["unbusy", "simulate"],
    ]


@pytest.mark.parametrize(("command", "shown"), COMMANDS, ids=[command for command, _ in COMMANDS])
def test_each_command_prints_what_the_page_shows(command: str, shown: list[str]):
    path = f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"
    result = subprocess.run(
        ["bash", "-o", "pipefail", "-c", command],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env=dict(os.environ, PATH=path),
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    printed = result.stdout.splitlines()
    if command.startswith("unbusy simulate"):
        assert [FIGURE.sub("N", line) for line in printed] == [FIGURE.sub("N", line) for line in shown]
    else:
        assert printed == shown


def readme_inference_service() -> dict:
    [block] = [
        b for b in re.findall(r"^```yaml\n(.*?)^```", (ROOT / "README.md").read_text(), re.M | re.S) if "kind:" in b
    ]
    return yaml.safe_load(block)


def test_the_readme_inference_service_is_routed_by_gateway_api():
    document = readme_inference_service()
    document["metadata"].setdefault("namespace", "default")  # as kubectl apply does
    manifests = render_all(load(document))
    [route] = [m for m in manifests if m["kind"] == "HTTPRoute"]
    assert route["spec"]["parentRefs"][0]["kind"] == "Gateway"
    assert not [m for m in manifests if m["kind"] == "Ingress"]
