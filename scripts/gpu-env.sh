#!/usr/bin/env bash
# Offline set-up for the GPU machine (no network, no uv, no hatchling): builds the native
# CPU library with cmake, installs carried wheels if any test dependency is missing, and
# puts every package's src/ on PYTHONPATH. Source it:  source scripts/gpu-env.sh
set -eo pipefail
BNB_ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PY="${PYTHON:-python3}"
cmake -S "$BNB_ROOT/packages/bnb-kernels" -B "$BNB_ROOT/build/native" -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build "$BNB_ROOT/build/native" >/dev/null
cp "$BNB_ROOT/build/native/libbnb_native.so" "$BNB_ROOT/packages/bnb-kernels/src/bnb_kernels/"
# Test dependencies the image may lack travel as wheels in .device/wheels (scripts/fetch-device-wheels.sh).
if ! "$PY" -c "import hypothesis, pytest, safetensors" 2>/dev/null && [ -d "$BNB_ROOT/.device/wheels" ]; then
  "$PY" -m pip install --quiet --no-index --find-links "$BNB_ROOT/.device/wheels" hypothesis pytest >/dev/null
fi
export PYTHONPATH="$BNB_ROOT/src:$BNB_ROOT/packages/bnb-kernels/src:$BNB_ROOT/packages/bnb-quant/src:$BNB_ROOT/packages/bnb-nn/src:$BNB_ROOT/packages/bnb-optim/src:$BNB_ROOT/packages/bnb-diagnostics/src:$BNB_ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1
"$PY" -c "import bnb_kernels, torch, triton; print('bnb-kernels', bnb_kernels.__version__, '| native:', bnb_kernels.native_status(), '| torch', torch.__version__, '| triton', triton.__version__, '| cuda', torch.cuda.is_available() and torch.cuda.get_device_name())"
