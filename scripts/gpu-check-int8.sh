#!/usr/bin/env bash
# GPU check of the LLM.int8() family in one device call: the benchmark first (its table is
# the result that matters; it also reports each layer's error against the dense layer),
# then the GPU tests (one fixed Triton tile configuration, to keep compilation short).
#   run on the device machine:  bash scripts/gpu-check-int8.sh      (logs under $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/bnb-int8-out}"
mkdir -p "$OUT"
BENCH_TIMEOUT="${BENCH_TIMEOUT:-145}"
TEST_TIMEOUT="${TEST_TIMEOUT:-62}"
t0=$(date +%s)
source scripts/gpu-env.sh || echo "gpu-env.sh reported an error (continuing)"
set +e
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,power.draw,temperature.gpu --format=csv | tee "$OUT/gpu.txt"
echo "== set-up took $(( $(date +%s) - t0 )) s"
timeout "$BENCH_TIMEOUT" "${PYTHON:-python3}" -m benchmarks.linear8bit --device cuda --no-plot \
  --json "$OUT/linear8bit.json" --md "$OUT/linear8bit.md" 2>&1 | tee "$OUT/bench.log"
echo "== benchmark exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"
BNB_TRITON_AUTOTUNE=0 timeout "$TEST_TIMEOUT" "${PYTHON:-python3}" -m pytest -q -m gpu -p no:cacheprovider -x \
  packages/bnb-kernels/tests/test_int8_triton.py packages/bnb-nn/tests/test_linear8bit.py \
  2>&1 | tee "$OUT/tests.log" | tail -25
echo "== tests exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"
echo
grep -E "^\| " "$OUT/linear8bit.md" 2>/dev/null || grep -E "^K|^int8" "$OUT/bench.log" | tail -30
