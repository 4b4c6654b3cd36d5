#!/usr/bin/env bash
# The LLM calibration in one command: unpack tritonserver from the nvidia-pytriton wheel in $LLMCAL (default
# .llmcal), then sweep.py starts it on the LLM model and measures (capacity, sweeps per mix, a load step).
#   on the device:  bash bench/llmcal/run.sh --gpu --shape llama-1b --prefix h100-llm-llama-1b-
#   here (CPU):     bash bench/llmcal/run.sh --shape tiny --prefix cpu-llm-tiny- --concurrency 4 ...
# $LLMCAL holds the wheel and tokens-conv.csv / tokens-code.csv; results go to $OUT or ./llmcal-out.
set -euo pipefail
HERE=$(cd "$(dirname "$0")" && pwd)
LLMCAL=$(cd "${LLMCAL:-.llmcal}" && pwd)
OUT=${OUT:-llmcal-out}
PYTHON=${PYTHON:-python3}
TRITON=$(mktemp -d)
trap 'rm -rf "$TRITON"' EXIT
"$PYTHON" -m zipfile -e "$(ls "$LLMCAL"/nvidia_pytriton-*.whl | head -1)" "$TRITON"
SERVER=$TRITON/pytriton/tritonserver
chmod +x "$SERVER"/bin/* "$SERVER"/python_backend_stubs/*/triton_python_backend_stub
PY=$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')
cp "$SERVER/python_backend_stubs/$PY/triton_python_backend_stub" "$SERVER/backends/python/"
LIBDIR=$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("LIBDIR"))')
export LD_LIBRARY_PATH=$TRITON/nvidia_pytriton.libs:$LIBDIR:${LD_LIBRARY_PATH:-}
"$PYTHON" -u "$HERE/sweep.py" --tritonserver "$SERVER/bin/tritonserver" --backends "$SERVER/backends" \
  --tokens "$LLMCAL" --out "$OUT" "$@"
