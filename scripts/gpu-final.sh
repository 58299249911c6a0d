#!/usr/bin/env bash
# The whole GPU check in one device call (the lead's acceptance run):
#   1. the Triton kernels the 4-bit autotuner may pick are compiled first (12 processes); the
#      inline-PTX kernels (permute GEMV, decode 5 of the dot kernel, tensor-core GEMV) are checked
#      on the GPU and left out of the anchor (BNB_4BIT_PRMT=0 / BNB_4BIT_DOT5=0 / BNB_4BIT_MMA=0)
#      if their check fails,
#   2. the GPU tests (pytest -m gpu) in parallel groups: 4-bit, int8, optimizers, the rest,
#   3. ../shared/bench/anchor_gpu.py on this project's `bitsandbytes`. ../shared does not travel to
#      the device: first `mkdir -p .device/bench && cp ../shared/bench/anchor_gpu.py .device/bench/`
#      (git-ignored) and pass `carry: [".device"]`; without it this part is skipped.
# Output stays short (the device reply carries its tail); logs land under $OUT in few files.
# Environment: TEST_TIMEOUT, ANCHOR_TIMEOUT, ANCHOR_ONLY, SKIP_TESTS=1, TEST_GROUPS (subset of
# "fourbit int8 optim rest").
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/gpu-final-out}"
mkdir -p "$OUT"
# shellcheck source=scripts/gpu-env.sh
source scripts/gpu-env.sh
set +e
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore TRITON_DEFAULT_FP_FUSION=1
PY="${PYTHON:-python3}"
t0=$(date +%s)
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu --format=csv,noheader
K=packages/bnb-kernels/tests
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  timeout 90 "$PY" -W ignore -m benchmarks.linear4bit_configs --prewarm 12 --prewarm-only --tokens "1,16,128" \
    > "$OUT/tests.log" 2>&1
  echo "prewarm done after $(($(date +%s) - t0)) s"
  group() { # name, pytest args...
    local name=$1
    shift
    timeout "${TEST_TIMEOUT:-200}" "$PY" -m pytest -m gpu -q -rfE -p no:cacheprovider "$@" > "/tmp/gpu-tests-$name.log" 2>&1
    echo "rc $?" >> "/tmp/gpu-tests-$name.log"
  }
  # The permute-decode GEMV (inline PTX) runs only on a GPU: check it against the table lookup
  # and the reference; if that fails, the autotuner must not see it (BNB_4BIT_PRMT=0).
  timeout "${TEST_TIMEOUT:-200}" "$PY" - > /tmp/gpu-prmt-check.log 2>&1 <<'PYEOF' &
import importlib.util, sys
spec = importlib.util.spec_from_file_location("gemv_bench", "scripts/gpu-bench-gemv.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)
sys.exit(1 if bench.check_decode() + bench.check() else 0)
PYEOF
  prmt_pid=$!
  GROUPS_TO_RUN="${TEST_GROUPS:-fourbit int8 optim rest}"
  for g in $GROUPS_TO_RUN; do
    case $g in
      fourbit) group fourbit $K/test_fourbit_matmul_triton.py $K/test_fourbit_gemv_triton.py $K/test_fourbit_matmul.py \
        packages/bnb-nn/tests/test_linear4bit.py packages/bnb-nn/tests/test_params4bit.py & ;;
      int8) BNB_TRITON_AUTOTUNE=0 group int8 $K/test_int8_triton.py $K/test_int8_ops.py packages/bnb-nn/tests/test_linear8bit.py & ;;
      optim) group optim $K/test_optim_triton.py $K/test_optim.py packages/bnb-optim/tests & ;;
      rest) group rest $K/test_quant_triton.py $K/test_quant_reference.py packages/bnb-quant/tests \
        packages/bnb-nn/tests/test_embedding.py packages/bnb-nn/tests/test_parametrize.py \
        packages/bnb-diagnostics/tests & ;;
    esac
  done
  # Decode 5 of the 4-bit dot kernel (inline PTX) likewise: if its GPU check fails, the
  # anchor runs without it (BNB_4BIT_DOT5=0).
  timeout "${TEST_TIMEOUT:-200}" "$PY" scripts/gpu-check-dot5.py > /tmp/gpu-dot5.log 2>&1
  dot5_rc=$?
  # The tensor-core GEMV (inline PTX mma.sync) too (BNB_4BIT_MMA=0 if its check fails).
  timeout "${TEST_TIMEOUT:-200}" "$PY" scripts/gpu-check-mma.py --only check --procs 12 > /tmp/gpu-mma.log 2>&1
  mma_rc=$?
  wait "$prmt_pid"
  prmt_rc=$?
  wait
  # An inline-PTX check's outcome: its log kept, and its switch off for the anchor if it failed.
  check_outcome() { # label, rc, log, failure pattern, switch
    echo "$1 check: rc $2; $(grep -cE "$4" "$3") lines matching $4"
    grep -E "$4" "$3" | head -5
    cat "$3" >> "$OUT/tests.log"
    if [ "$2" != 0 ]; then
      export "$5=0"
      echo "=> $5=0 for the anchor"
    fi
  }
  check_outcome "permute-decode GEMV" "$prmt_rc" /tmp/gpu-prmt-check.log "FAIL" BNB_4BIT_PRMT
  check_outcome "decode-5 dot" "$dot5_rc" /tmp/gpu-dot5.log "FAIL|DIFFERS" BNB_4BIT_DOT5
  check_outcome "tensor-core GEMV" "$mma_rc" /tmp/gpu-mma.log "MISMATCH|Error" BNB_4BIT_MMA
  for g in $GROUPS_TO_RUN; do
    f="/tmp/gpu-tests-$g.log"
    echo "tests $g: $(grep -E '(passed|failed|error)' "$f" | tail -1) ($(tail -1 "$f"))"
    grep -E "^(FAILED|ERROR)" "$f" | cut -c1-200 | head -8
    cat "$f" >> "$OUT/tests.log"
  done
  echo "tests done after $(($(date +%s) - t0)) s"
fi
if [ -f .device/bench/anchor_gpu.py ]; then
  timeout "${ANCHOR_TIMEOUT:-320}" "$PY" .device/bench/anchor_gpu.py --label bnb --out "$OUT/anchor.json" \
    --only "${ANCHOR_ONLY:-ceiling,quant,linear4bit,linear8bit,optim}" > "$OUT/anchor.log" 2>&1
  grep -E "^\[|section|Error" "$OUT/anchor.log" | sed -E 's/, (GBps|rel_err_vs_(bf16|fp16)|first_step_s|Gparam_per_s)=[^,]*//g' | cut -c1-160
  echo "anchor done after $(($(date +%s) - t0)) s"
fi
