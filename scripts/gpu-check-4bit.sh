#!/usr/bin/env bash
# GPU check of the 4-bit layers (issue 4), in one device call (about 3-4 minutes):
#   bash scripts/gpu-check-4bit.sh        (on the GPU machine; logs under $OUT)
# 1. compiles every kernel config the 4-bit autotuner tries on the anchor shapes, in 12
#    processes (Triton's disk cache), so the steps below spend their time running
# 2. the GPU tests of the 4-bit kernels and modules (every candidate path vs the reference)
# 3. scripts/gpu-profile.py --only linear4bit: per case the path chosen, the kernels with
#    their device time, host time per call and wall time as the anchor benchmark takes it
# Environment: SHAPES=0,1,3 (indices of the five Llama shapes; default all), BATCHES=1,16,128,2048,
# PREWARM_TIMEOUT, TEST_TIMEOUT, PROFILE_TIMEOUT (seconds).
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/benchmarks/results}"
mkdir -p "$OUT"
# shellcheck source=scripts/gpu-env.sh
source scripts/gpu-env.sh
set +e
export PYTHONUNBUFFERED=1 TRITON_DEFAULT_FP_FUSION=1
PY="${PYTHON:-python3}"
BATCHES="${BATCHES:-1,16,128,2048}"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu --format=csv 2>&1 | tee "$OUT/gpu.txt"

t0=$(date +%s)
timeout "${PREWARM_TIMEOUT:-75}" "$PY" -W ignore -m benchmarks.linear4bit_configs --prewarm 12 --prewarm-only \
  --tokens "1,16,128" 2>&1 | grep -v -i warn | tee "$OUT/prewarm.log"
echo "== prewarm $(($(date +%s) - t0)) s"

t0=$(date +%s)
timeout "${TEST_TIMEOUT:-120}" "$PY" -m pytest -q -m gpu -p no:cacheprovider \
  packages/bnb-kernels/tests/test_fourbit_matmul_triton.py packages/bnb-kernels/tests/test_fourbit_gemv_triton.py \
  packages/bnb-nn/tests/test_linear4bit.py 2>&1 | tail -25 | tee "$OUT/tests.log"
echo "== tests $(($(date +%s) - t0)) s"

timeout "${PROFILE_TIMEOUT:-200}" "$PY" -W ignore scripts/gpu-profile.py --only linear4bit \
  ${SHAPES:+--shapes "$SHAPES"} --batches4 "$BATCHES" --out "$OUT/profile-linear4bit.txt" 2>&1 | grep -v -i warn
