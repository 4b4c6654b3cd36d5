"""Lay out the calibration's model repository from InferenceService specs, with Unbusy's own renderer.

Runs here (it needs the unbusy package); the device machine only runs what it writes. For each
spec: <out>/models/<model>/config.pbtxt exactly as render/model_config.py writes it for the
spec, the network (model.py) as version 1, the environment the model reads (the spec's
`bench.unbusy.dev/env` annotation) and a line saying what is measured (the spec's first comment).
Also fetches the nvidia-pytriton wheel for the device's Python into <out>, unless it is there.

    python bench/calibrate/prepare.py --out .calibrate bench/calibrate/specs/resnet50.yaml ...
    python bench/calibrate/prepare.py --out .calibrate --cpu bench/calibrate/specs/synthetic.yaml

--cpu changes the instance group to KIND_CPU, for the harness's own check on a machine without a GPU.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

from unbusy.api import load
from unbusy.gpu.request import gpu_request
from unbusy.render.model_config import Token, model_config, to_pbtxt

HERE = Path(__file__).resolve().parent
ENV_ANNOTATION = "bench.unbusy.dev/env"
WHEEL = "nvidia-pytriton<0.8"


def prepare(spec: Path, models: Path, cpu: bool) -> str:
    document = yaml.safe_load(spec.read_text())
    isvc = load(document)
    variant = isvc.spec.effective_variants()[0]
    config = model_config(isvc, variant, gpu_request(isvc.spec.gpu, isvc.spec.model.gpu_memory).count)
    if cpu:
        config["instance_group"] = [
            {"count": group["count"], "kind": Token("KIND_CPU")} for group in config["instance_group"]
        ]
    name = isvc.spec.model.name
    target = models / name
    shutil.rmtree(target, ignore_errors=True)
    (target / "1").mkdir(parents=True)
    (target / "config.pbtxt").write_text(to_pbtxt(config))
    shutil.copy(HERE / "model.py", target / "1" / "model.py")
    env = document["metadata"].get("annotations", {}).get(ENV_ANNOTATION, "{}")
    (target / "env.json").write_text(json.dumps(json.loads(env)))
    about = spec.read_text().splitlines()[0].removeprefix("# Calibration:").strip()
    (target / "about.txt").write_text(about + "\n")
    return name


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--cpu", action="store_true")
    parser.add_argument("--python-version", default="3.12", help="the device's Python, for the wheel")
    parser.add_argument("specs", nargs="+", type=Path)
    args = parser.parse_args()
    out = Path(args.out)
    names = [prepare(spec, out / "models", args.cpu) for spec in args.specs]
    if not list(out.glob("nvidia_pytriton-*.whl")):
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
             "--python-version", args.python_version, "--platform", "manylinux_2_35_x86_64", "-d", str(out), WHEEL],
            check=True,
        )  # fmt: skip
    print(f"{out}/models: {', '.join(names)}")


if __name__ == "__main__":
    main()
