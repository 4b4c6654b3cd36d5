#!/usr/bin/env bash
# Stage what the device machine needs into one folder (e.g. the main checkout's ignored .llmcal, named in the
# device tool's `carry`): this harness, bench/calibrate's harness.py and loadgen.py it imports, the request-size
# CSVs and the nvidia-pytriton wheel (for Python $PYTHON_VERSION, default 3.12).  bash bench/llmcal/stage.sh DIR
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
TARGET=${1:?usage: stage.sh DIR}
mkdir -p "$TARGET/bench/llmcal" "$TARGET/bench/calibrate"
cp "$ROOT"/bench/llmcal/{model.py,stream_load.py,sweep.py,run.sh} "$TARGET/bench/llmcal/"
cp "$ROOT"/bench/calibrate/{harness.py,loadgen.py} "$TARGET/bench/calibrate/"
cp "${TOKENS:-$ROOT/../shared/traces/azure-llm-2023}"/tokens-{conv,code}.csv "$TARGET/"
if ! ls "$TARGET"/nvidia_pytriton-*.whl >/dev/null 2>&1; then
  python3 -m pip download --quiet --no-deps --only-binary=:all: --python-version "${PYTHON_VERSION:-3.12}" \
    --platform manylinux_2_35_x86_64 -d "$TARGET" "nvidia-pytriton<0.8"
fi
du -sh "$TARGET"
