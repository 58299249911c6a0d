#!/usr/bin/env bash
# GPU check of the LLM.int8() family in ONE device call (about 3 minutes):
#   1. the int8 GPU tests (one fixed Triton tile configuration: BNB_TRITON_AUTOTUNE=0),
#   2. scripts/gpu-profile.py --only linear8bit (wall time as the anchor benchmark takes it,
#      host time per call, kernels and their device time),
#   3. int8_vectorwise_quant (threshold 6, 4096x8192 fp16) timed as anchor_gpu.py times it,
#      checked against the reference, plus its quantization kernels alone.
#   run on the device machine:  bash scripts/gpu-check-int8.sh      (logs under $OUT)
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-/tmp/bnb-int8-out}"
mkdir -p "$OUT"
TEST_TIMEOUT="${TEST_TIMEOUT:-70}"
PROFILE_TIMEOUT="${PROFILE_TIMEOUT:-80}"
t0=$(date +%s)
source scripts/gpu-env.sh || echo "gpu-env.sh reported an error (continuing)"
set +e
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,power.draw,temperature.gpu --format=csv,noheader
echo "== set-up took $(( $(date +%s) - t0 )) s"
# the GPU tests in 4 processes at once (Triton compilation dominates; the machine has 16 cores)
KT=packages/bnb-kernels/tests/test_int8_triton.py
run_tests() {
  local i=$1
  shift
  BNB_TRITON_AUTOTUNE=0 timeout "$TEST_TIMEOUT" "$PY" -m pytest -q -m gpu -p no:cacheprovider "$@" >"$OUT/tests$i.log" 2>&1
  echo "exit $?" >>"$OUT/tests$i.log"
}
if [ "${SKIP_TESTS:-0}" != 1 ]; then
  run_tests 1 "$KT" -k quant &
  run_tests 2 "$KT" -k mm_fp16 &
  run_tests 3 "$KT" -k mm_bf16 &
  run_tests 4 "$KT" packages/bnb-nn/tests/test_linear8bit.py -k "mm_fp32 or not full_size" &
  wait
  tail -n 4 "$OUT"/tests*.log
  echo "== tests done after $(( $(date +%s) - t0 )) s"
fi
# PROFILE_ARGS: e.g. "--shapes 0,2 --batches8 16,512"
# shellcheck disable=SC2086
timeout "$PROFILE_TIMEOUT" "$PY" scripts/gpu-profile.py --only linear8bit ${PROFILE_ARGS:-} --out "$OUT/profile.txt" 2>&1 | tee "$OUT/profile.log"
echo "== profile exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"
timeout "${QUANT_TIMEOUT:-90}" "$PY" - <<'PYEOF' 2>&1 | tee "$OUT/quant.log"
import torch
import triton.testing as tt

import bitsandbytes as bnb
from bnb_kernels.backends.reference import int8 as ref
from bnb_kernels.backends.triton import int8 as T


def bench(fn):
    return tt.do_bench(fn, warmup=25, rep=100, return_mode="median")


torch.manual_seed(0)
A = torch.randn(4096, 8192, dtype=torch.float16, device="cuda")
for name, X in (("randn", A), ("8 outlier cols", A.clone().index_fill_(1, torch.arange(0, 8192, 1024, device="cuda"), 30.0))):
    got = bnb.functional.int8_vectorwise_quant(X, threshold=6.0)
    exp = ref.row_quant(X.cpu(), 6.0)
    same = all(torch.equal(g.cpu(), e) for g, e in zip(got, exp))
    ms = bench(lambda X=X: bnb.functional.int8_vectorwise_quant(X, threshold=6.0))
    kms = bench(lambda X=X: T.row_quant(X, 6.0, zero_cols=True, list_dtype=torch.int64))
    print(f"int8_vectorwise_quant 4096x8192 t6 ({name}): {ms * 1e3:6.1f} us = {3 * X.numel() / ms / 1e6:6.0f} GB/s "
          f"| kernels alone {kms * 1e3:6.1f} us | {len(got[2])} outlier cols | equal to reference: {same}")
from torch.profiler import ProfilerActivity, profile

with profile(activities=[ProfilerActivity.CUDA]) as prof:
    for _ in range(10):
        bnb.functional.int8_vectorwise_quant(A, threshold=6.0)
    torch.cuda.synchronize()
for e in prof.key_averages():
    us = (getattr(e, "self_device_time_total", 0) or 0) / 10
    if us > 0:
        print(f"   kernel {us:7.1f} us x{e.count / 10:g} {e.key[:70]}")


def variant(**kw):
    for k, v in kw.items():
        setattr(T, k, v)
    T._QUANT_STEPS.clear()
    T._QUANT_DIRECT.clear()


DEFAULTS = {k: getattr(T, k) for k in ("ONE_PASS_MAX_K", "ONE_PASS_WARPS", "ONE_PASS_ROW_ELEMS", "TWO_PASS_BLOCK",
                                         "TWO_PASS_WARPS")}
clean = torch.randn(4096, 8192, dtype=torch.float16, device="cuda")
for K, variants in (
    (8192, ({}, {"ONE_PASS_WARPS": 16})),
    (4096, ({},)),
    (14336, ({}, {"TWO_PASS_BLOCK": 8192, "TWO_PASS_WARPS": 16}, {"ONE_PASS_MAX_K": 16384, "ONE_PASS_WARPS": 16})),
):
    X = torch.randn(4096, K, dtype=torch.float16, device="cuda")
    X[:, :: K // 8] *= 20
    for kw in variants:
        variant(**kw)
        for t in (0.0, 6.0):
            ms = bench(lambda X=X, t=t: T.row_quant(X, t, zero_cols=False))
            print(f"row_quant 4096x{K} t{t:g} {kw or 'default'}: {ms * 1e3:6.1f} us = {3 * X.numel() / ms / 1e6:6.0f} GB/s")
        if K == 8192:
            ms = bench(lambda: T.row_quant(clean, 6.0, zero_cols=False))
            print(f"   row_quant t6 without outliers: {ms * 1e3:6.1f} us = {3 * clean.numel() / ms / 1e6:6.0f} GB/s")
            ms = bench(lambda: bnb.functional.int8_vectorwise_quant(clean, threshold=6.0))
            print(f"   int8_vectorwise_quant t6 without outliers: {ms * 1e3:6.1f} us = {3 * clean.numel() / ms / 1e6:6.0f} GB/s")
        variant(**DEFAULTS)
# the copy ceiling of the same traffic (read fp16, write int8), and what the one host sync costs
X = torch.randn(4096, 8192, dtype=torch.float16, device="cuda")
ms = bench(lambda: X.to(torch.int8))
print(f"ceiling: fp16 -> int8 cast 4096x8192: {ms * 1e3:6.1f} us = {3 * X.numel() / ms / 1e6:6.0f} GB/s")
cnt = torch.zeros(1, dtype=torch.int32, device="cuda")
ms = bench(lambda: T._read_count(cnt))
print(f"one pinned read of a device counter (sync): {ms * 1e3:6.1f} us")
print(f"direct launches on: {T._DIRECT}")
# which path each first call chose, with the timings of its race
W = torch.randn(4096, 4096, dtype=torch.float16) * 0.02
for thr in (0.0, 6.0):
    lin = bnb.nn.Linear8bitLt(4096, 4096, bias=False, has_fp16_weights=False, threshold=thr)
    lin.weight = bnb.nn.Int8Params(W.clone(), requires_grad=False, has_fp16_weights=False)
    lin = lin.cuda()
    for M in (16, 512):
        with torch.inference_mode():
            lin(torch.randn(M, 4096, dtype=torch.float16, device="cuda"))
        print(f"4096x4096 t{thr:g} M{M}: {T.path_taken(M, 4096, 4096, torch.float16, thr, False)}")
for key, times in T.tuning_timings().items():
    if isinstance(key[0], str):
        print("race", key[:5], times)
PYEOF
echo "== quant timing exit ${PIPESTATUS[0]} after $(( $(date +%s) - t0 )) s"
