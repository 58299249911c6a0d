#!/usr/bin/env bash
# GPU check of the Triton quantization kernels (backends/triton/quant.py), for the GPU machine:
#   bash scripts/gpu-check-quant.sh
# 1. times the four ops at the anchor sizes (../shared/ANCHORS.md) for several launch shapes,
#    printing GB/s (bytes = input read + output written + absmax, as anchor_gpu.py counts);
# 2. runs the GPU tests of packages/bnb-kernels/tests/test_quant_triton.py (bit-identical to
#    the reference at full size).
# Logs go to $OUT (or ./gpu-check-quant-out) as bench.json, bench.txt and tests.txt.
set -o pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
# shellcheck source=scripts/gpu-env.sh
if ! source "$ROOT/scripts/gpu-env.sh"; then
  echo "scripts/gpu-env.sh reported a failure (the Triton kernels do not need the native library)"
fi
set +e
OUT="${OUT:-$ROOT/gpu-check-quant-out}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,clocks.sm,clocks.mem,temperature.gpu,power.draw --format=csv,noheader | tee "$OUT/gpu.txt"

timeout "${BENCH_TIMEOUT:-110}" "$PY" - "$OUT" <<'EOF' 2>&1 | tee "$OUT/bench.log"
import json, sys, time
import torch, triton
from triton.testing import do_bench
import bnb_kernels  # noqa: F401  (defines the ops)
from bnb_kernels.backends.triton import quant as T

out_dir = sys.argv[1]
dev = "cuda"
rows, results = [], []


def bench(name, fns, nbytes, **cfg):
    state = {"i": 0}

    def run():
        fn = fns[state["i"] % len(fns)]
        state["i"] += 1
        return fn()

    try:
        t0 = time.time()
        run()
        torch.cuda.synchronize()
        compile_s = time.time() - t0
        ms = do_bench(run, warmup=25, rep=100, return_mode="median")
    except Exception as e:  # report and go on with the other variants
        print(f"FAILED {name} {cfg}: {type(e).__name__}: {e}", flush=True)
        return
    gbps = nbytes / ms / 1e6
    results.append({"case": name, **cfg, "ms": ms, "GBps": gbps})
    line = f"{name:34s} {json.dumps(cfg):72s} {ms * 1e3:8.1f} us {gbps:7.0f} GB/s  (first call {compile_s:.1f} s)"
    rows.append(line)
    print(line, flush=True)


print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__, flush=True)
# Ceiling: device-to-device copy (read + write).
src = torch.randn(256 * 2**20, device=dev)
dst = torch.empty_like(src)
bench("copy_1GiB", [lambda: dst.copy_(src)], 2 * src.numel() * 4)
del src, dst

N = K = 8192
n = N * K
W = [torch.randn(N, K, dtype=torch.bfloat16, device=dev) for _ in range(3)]
q4_bytes = 2 * n + n / 2 + 4 * n / 64
for tile, warps, lut, a32 in [(2048, 4, True, False), (2048, 4, True, True), (1024, 4, True, False), (4096, 4, True, False),
                              (4096, 8, True, False), (2048, 8, True, False), (2048, 4, False, True), (2048, 4, False, False)]:
    bench("quantize_4bit_nf4_bs64_bf16", [lambda w=w: T.quantize_4bit(w, 64, "nf4", torch.uint8, tile=tile, num_warps=warps, lut=lut, addr32=a32) for w in W],
          q4_bytes, tile=tile, warps=warps, lut=lut, addr32=a32)
bench("quantize_4bit_fp4_bs64_bf16 default", [lambda w=w: T.quantize_4bit(w, 64, "fp4", torch.uint8) for w in W], q4_bytes)
bench("op quantize_4bit_nf4_bs64 default", [lambda w=w: torch.ops.bitsandbytes.quantize_4bit(w, 64, "nf4", torch.uint8) for w in W], q4_bytes)

Q = [T.quantize_4bit(w, 64, "nf4", torch.uint8) for w in W]
dq4_bytes = n / 2 + 4 * n / 64 + 2 * n
for tile, warps in [(2048, 4), (4096, 4), (4096, 8), (8192, 8), (8192, 4), (16384, 8)]:
    bench("dequantize_4bit_nf4_bs64_bf16", [lambda q=q: T.dequantize_4bit(q[0], q[1], 64, "nf4", (N, K), torch.bfloat16, tile=tile, num_warps=warps) for q in Q],
          dq4_bytes, tile=tile, warps=warps)
bench("op dequantize_4bit_nf4_bs64 default", [lambda q=q: torch.ops.bitsandbytes.dequantize_4bit(q[0], q[1], 64, "nf4", [N, K], torch.bfloat16) for q in Q], dq4_bytes)
Qb = [T.quantize_4bit(w, 128, "fp4", torch.uint8) for w in W]
bench("dequantize_4bit_fp4_bs128_bf16 default", [lambda q=q: T.dequantize_4bit(q[0], q[1], 128, "fp4", (N, K), torch.bfloat16) for q in Qb], n / 2 + 4 * n / 128 + 2 * n)
del W, Q, Qb

m = 64 * 2**20
Wf = [torch.randn(m, device=dev) for _ in range(3)]
sys.path.insert(0, "packages/bnb-kernels/tests")
from test_quant_triton import _dynamic_code  # noqa: E402
code = _dynamic_code().to(dev)
q8_bytes = 4 * m + m + 4 * m / 256
for tile, warps, sel, a32 in [(2048, 4, 2, True), (2048, 4, 2, False), (2048, 4, 1, True), (1024, 4, 2, True), (4096, 4, 2, True),
                              (4096, 8, 2, True), (1024, 2, 2, True), (512, 4, 2, True)]:
    bench("quantize_blockwise_bs256_fp32", [lambda w=w: T.quantize_blockwise(w, code, 256, tile=tile, num_warps=warps, sel_levels=sel, addr32=a32) for w in Wf],
          q8_bytes, tile=tile, warps=warps, sel_levels=sel, addr32=a32)
bench("quantize_blockwise_bs4096_fp32 default", [lambda w=w: T.quantize_blockwise(w, code, 4096) for w in Wf], 4 * m + m + 4 * m / 4096)
Q8 = [T.quantize_blockwise(w, code, 256) for w in Wf]
dq8_bytes = m + 4 * m / 256 + 4 * m
for tile, warps in [(2048, 4), (4096, 4), (4096, 8), (8192, 8), (8192, 4)]:
    bench("dequantize_blockwise_bs256_fp32", [lambda q=q: T.dequantize_blockwise(q[0], q[1], code, 256, torch.float32, tile=tile, num_warps=warps) for q in Q8],
          dq8_bytes, tile=tile, warps=warps)
bench("op dequantize_blockwise_bs256 default", [lambda q=q: torch.ops.bitsandbytes.dequantize_blockwise(q[0], q[1], code, 256, torch.float32) for q in Q8], dq8_bytes)

with open(f"{out_dir}/bench.json", "w") as f:
    json.dump(results, f, indent=1)
with open(f"{out_dir}/bench.txt", "w") as f:
    f.write("\n".join(rows) + "\n")
EOF

timeout "${TEST_TIMEOUT:-110}" "$PY" -m pytest packages/bnb-kernels/tests/test_quant_triton.py -m gpu -v -ra -p no:cacheprovider 2>&1 | tee "$OUT/tests.txt" | grep -E "PASSED|FAILED|ERROR|passed|failed|seed|Error" | cut -c1-400
echo "tests exit: ${PIPESTATUS[0]}"
echo "===== timings (median, do_bench) ====="
cat "$OUT/bench.txt" 2>/dev/null
