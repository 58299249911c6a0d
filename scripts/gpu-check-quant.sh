#!/usr/bin/env bash
# GPU check of the Triton quantization kernels (backends/triton/quant.py), for the GPU machine:
#   bash scripts/gpu-check-quant.sh            (about a minute; set QUANT_SKIP_ENV=1 when the
#                                               caller already sourced scripts/gpu-env.sh)
# 1. times every quantize variant (and the unchanged dequantize defaults) at the anchor sizes
#    of ../shared/ANCHORS.md with scripts/gpu-bench-quant.py (kernels compiled first in
#    parallel), bytes counted as anchor_gpu.py counts them (input read + output written +
#    absmax), beside a device-to-device copy (the ceiling);
# 2. runs the GPU tests of packages/bnb-kernels/tests/test_quant_triton.py (every variant
#    bit-identical to the reference, at full size);
# 3. prints the timing table again, last, compactly: case, variant, microseconds, GB/s.
# Logs go to $OUT (or ./gpu-check-quant-out): bench.json, bench.txt, bench.log, prewarm.log, tests.txt.
set -o pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
if [ "${QUANT_SKIP_ENV:-0}" != "1" ]; then
  # shellcheck source=scripts/gpu-env.sh
  if ! source "$ROOT/scripts/gpu-env.sh"; then
    echo "scripts/gpu-env.sh reported a failure (the Triton kernels do not need the native library)"
    export PYTHONPATH="$ROOT/src:$ROOT/packages/bnb-kernels/src${PYTHONPATH:+:$PYTHONPATH}"
  fi
fi
set +e
OUT="${OUT:-$ROOT/gpu-check-quant-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader 2>&1 | tee "$OUT/gpu.txt"

# Compile every timed kernel first, in parallel processes (Triton's disk cache), then time.
timeout "${PREWARM_TIMEOUT:-60}" "$PY" scripts/gpu-bench-quant.py "$OUT" --prewarm "${PREWARM_PROCS:-8}" 2>&1 | tee "$OUT/prewarm.log" | tail -n 3
timeout "${BENCH_TIMEOUT:-60}" "$PY" scripts/gpu-bench-quant.py "$OUT" 2>&1 | tee "$OUT/bench.log"

timeout "${TEST_TIMEOUT:-75}" "$PY" -m pytest packages/bnb-kernels/tests/test_quant_triton.py -m gpu -v -ra -p no:cacheprovider 2>&1 | tee "$OUT/tests.txt" | grep -E "PASSED|FAILED|ERROR|passed|failed|seed|Error" | cut -c1-400
echo "tests exit: ${PIPESTATUS[0]}"
echo "===== quantize timings ($(head -c 60 "$OUT/gpu.txt"); do_bench median) ====="
cat "$OUT/bench.txt" 2>/dev/null
