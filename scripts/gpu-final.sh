#!/usr/bin/env bash
# The whole GPU check in one device call (the lead's acceptance run):
#   1. every GPU test (pytest -m gpu) of every package,
#   2. ../shared/bench/anchor_gpu.py on this project's `bitsandbytes`. ../shared does not travel to
#      the device: first `mkdir -p .device/bench && cp ../shared/bench/anchor_gpu.py .device/bench/`
#      (git-ignored) and pass `carry: [".device"]`; without it this part is skipped,
#   3. the Triton quantize variants (scripts/gpu-check-quant.sh).
# Logs land under $OUT. Time limits per part come from the environment.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu-final-out}"
mkdir -p "$OUT"
# shellcheck source=scripts/gpu-env.sh
source scripts/gpu-env.sh
set +e
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader | tee "$OUT/gpu.txt"
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout -s INT "${TEST_TIMEOUT:-150}" "$PY" -m pytest -m gpu -q -rfE -p no:cacheprovider ${GPU_TEST_PATHS:-} > "$OUT/gpu-tests.log" 2>&1
  tail -12 "$OUT/gpu-tests.log"
fi
if [ -f .device/bench/anchor_gpu.py ]; then
  timeout "${ANCHOR_TIMEOUT:-300}" "$PY" .device/bench/anchor_gpu.py --label bnb --out "$OUT/anchor.json" \
    --only "${ANCHOR_ONLY:-ceiling,quant,linear4bit,linear8bit,optim}" > "$OUT/anchor.log" 2>&1
  grep -E "^\[|section|Error|error" "$OUT/anchor.log" | cut -c1-220
fi
if [ "${QUANT_VARIANTS:-1}" = 1 ] && [ -f scripts/gpu-check-quant.sh ]; then
  OUT="$OUT/quant" BENCH_TIMEOUT=90 TEST_TIMEOUT=1 bash scripts/gpu-check-quant.sh 2>&1 | tail -25
fi
