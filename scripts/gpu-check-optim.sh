#!/usr/bin/env bash
# GPU check of the optimizers (issue 5) in one call on the device machine:
#   bash scripts/gpu-check-optim.sh        (logs and JSON under $OUT when set)
# 1. offline set-up (scripts/gpu-env.sh), 2. benchmarks/optim.py on CUDA (470 M params,
# against torch fused AdamW), 3. ../shared/bench/anchor_gpu.py --only optim when carried in
# .device/, 4. the GPU tests of the optimizer ops and bnb-optim.
set -o pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/build/gpu-check-optim}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
export PYTHON="$PY"
# shellcheck source=scripts/gpu-env.sh
source "$ROOT/scripts/gpu-env.sh" >"$OUT/env.log" 2>&1 || { cat "$OUT/env.log"; exit 1; }
set +e
cat "$OUT/env.log"
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv 2>&1 | tee -a "$OUT/env.log"
status=0
timeout 75 "$PY" -m benchmarks.optim --device cuda --no-plot --json "$OUT/optim-cuda.json" 2>&1 | tee "$OUT/bench.log" || status=1
if [ -f "$ROOT/.device/anchor_gpu.py" ]; then
  timeout 45 "$PY" "$ROOT/.device/anchor_gpu.py" --label bnb --only optim --out "$OUT/anchor-optim.json" 2>&1 | tee "$OUT/anchor.log" || status=1
fi
timeout 80 "$PY" -m pytest -m gpu -q -ra -p no:cacheprovider -x \
  packages/bnb-kernels/tests/test_optim.py packages/bnb-optim/tests 2>&1 | tee "$OUT/tests.log" || status=1
echo "== optim bench table"; sed -n '/^| case/,$p' "$OUT/bench.log" | head -20
exit $status
