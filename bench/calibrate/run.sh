#!/usr/bin/env bash
# The calibration in one command: unpack tritonserver from the nvidia-pytriton wheel that
# prepare.py put in $CALIBRATE (default .calibrate), then measure each model (harness.py).
#   on the device:  bash bench/calibrate/run.sh --gpu --prefix h100- --models resnet50 bert-base
#   here (CPU):     bash bench/calibrate/run.sh --models synthetic --processes 2 ...
# Results go to $OUT (the device tool's folder) or ./calibrate-out.
set -euo pipefail
cd "$(dirname "$0")/../.."
CALIBRATE=${CALIBRATE:-.calibrate}
OUT=${OUT:-calibrate-out}
TRITON=$(mktemp -d)
trap 'rm -rf "$TRITON"' EXIT
python3 -m zipfile -e "$(ls "$CALIBRATE"/nvidia_pytriton-*.whl | head -1)" "$TRITON"
SERVER=$TRITON/pytriton/tritonserver
chmod +x "$SERVER"/bin/* "$SERVER"/python_backend_stubs/*/triton_python_backend_stub
PY=$(python3 -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
cp "$SERVER/python_backend_stubs/$PY/triton_python_backend_stub" "$SERVER/backends/python/"
LIBDIR=$(python3 -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
export LD_LIBRARY_PATH=$TRITON/nvidia_pytriton.libs:$LIBDIR:${LD_LIBRARY_PATH:-}
python3 -u bench/calibrate/harness.py --repository "$CALIBRATE/models" --tritonserver "$SERVER/bin/tritonserver" \
  --backends "$SERVER/backends" --out "$OUT" "$@"
