"""The operator image `make image` builds (operator/image.sh): a real OCI archive, configured
as operator/Dockerfile says, whose entry point runs from the image's own root filesystem.

umoci (the tool that packed it) unpacks it into a runtime bundle, as a container runtime
would; the entry point then runs chrooted into that root filesystem, in a user namespace as
the image's user, with only the image's environment.
"""

from __future__ import annotations

import json
import shlex
import shutil
import subprocess
import tarfile
import tomllib
from pathlib import Path

import pytest

from missing import require

ROOT = Path(__file__).resolve().parents[2]
IMAGE = ROOT / "dist" / "unbusy.oci.tar"
DOCKERFILE = ROOT / "operator" / "Dockerfile"
TAG = "unbusy"


@pytest.fixture(scope="module")
def archive() -> Path:
    if not IMAGE.exists():
        require(f"{IMAGE.relative_to(ROOT)} is not built: run `make image`")
    return IMAGE


def image_config(archive: Path) -> dict:
    """The OCI image configuration of the tag, read through index.json and the manifest."""
    with tarfile.open(archive) as tar:

        def blob(digest: str) -> dict:
            algorithm, value = digest.split(":")
            return json.load(tar.extractfile(f"./blobs/{algorithm}/{value}"))

        index = json.load(tar.extractfile("./index.json"))
        [entry] = [m for m in index["manifests"] if m["annotations"]["org.opencontainers.image.ref.name"] == TAG]
        return blob(blob(entry["digest"])["config"]["digest"])


def final_stage() -> dict[str, list[str]]:
    """Instruction -> its arguments, for the Dockerfile's last stage (continued lines joined)."""
    lines = [line.strip() for line in DOCKERFILE.read_text().replace("\\\n", " ").splitlines()]
    lines = [line for line in lines if line and not line.startswith("#")]
    last_from = max(i for i, line in enumerate(lines) if line.upper().startswith("FROM "))
    stage: dict[str, list[str]] = {}
    for line in lines[last_from + 1 :]:
        instruction, _, arguments = line.partition(" ")
        stage.setdefault(instruction.upper(), []).append(arguments.strip())
    return stage


def pairs(arguments: list[str]) -> dict[str, str]:
    """ENV / LABEL key=value arguments."""
    return dict(word.split("=", 1) for args in arguments for word in shlex.split(args))


def test_configuration_is_the_dockerfiles(archive: Path) -> None:
    config = image_config(archive)
    stage, image = final_stage(), config["config"]
    assert (config["os"], config["architecture"]) == ("linux", "amd64")
    assert [image["User"]] == stage["USER"]
    assert image["Entrypoint"] == json.loads(stage["ENTRYPOINT"][0])
    assert set(image["ExposedPorts"]) == {f"{port}/tcp" for args in stage["EXPOSE"] for port in args.split()}
    assert dict(variable.split("=", 1) for variable in image["Env"]) == pairs(stage["ENV"])
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert image["Labels"] == pairs(stage["LABEL"]) | {"org.opencontainers.image.version": version}


@pytest.fixture(scope="module")
def bundle(archive: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The image unpacked by umoci into a runtime bundle: config.json and rootfs/."""
    if not shutil.which("umoci") or not shutil.which("unshare"):
        require("umoci and unshare (util-linux) are needed to unpack and run the image")
    work = tmp_path_factory.mktemp("image")
    with tarfile.open(archive) as tar:
        tar.extractall(work / "layout", filter="data")
    # --rootless: no root needed; device nodes become empty files, as the entry point needs none.
    unpack = ["umoci", "unpack", "--rootless", "--image", f"{work / 'layout'}:{TAG}", str(work / "bundle")]
    subprocess.run(unpack, check=True, capture_output=True)
    return work / "bundle"


def in_image(bundle: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run `args` in the image as its runtime configuration says: its user, working directory
    and environment only, chrooted into its root filesystem."""
    process = json.loads((bundle / "config.json").read_text())["process"]
    user = process["user"]
    command = [
        "unshare",
        "--user",
        f"--map-user={user['uid']}",
        f"--map-group={user['gid']}",
        f"--root={bundle / 'rootfs'}",
        f"--wd={process['cwd']}",
        "/usr/bin/env",
        "--ignore-environment",
        *process["env"],
        *args,
    ]
    return subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)


def entry_point(bundle: Path) -> list[str]:
    return json.loads((bundle / "config.json").read_text())["process"]["args"]


def test_entry_point_runs_the_operator_as_the_images_user(bundle: Path) -> None:
    result = in_image(bundle, *entry_point(bundle), "--help")  # `docker run IMAGE --help`
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("usage: unbusy run") and "--prometheus-url" in result.stdout
    assert in_image(bundle, "id", "-u").stdout == "10001\n"


def test_version_is_the_packages(bundle: Path) -> None:
    version = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    result = in_image(bundle, entry_point(bundle)[0], "--version")
    assert (result.returncode, result.stdout) == (0, f"unbusy {version}\n"), result.stderr
