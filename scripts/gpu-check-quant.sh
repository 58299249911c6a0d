#!/usr/bin/env bash
# GPU check of the Triton quantization kernels (backends/triton/quant.py), for the GPU machine:
#   bash scripts/gpu-check-quant.sh            (about a minute; set QUANT_SKIP_ENV=1 when the
#                                               caller already sourced scripts/gpu-env.sh)
# 1. times every quantize variant (and the unchanged dequantize defaults) at the anchor sizes
#    of ../shared/ANCHORS.md, bytes counted as anchor_gpu.py counts them (input read + output
#    written + absmax), beside a device-to-device copy (the ceiling);
# 2. runs the GPU tests of packages/bnb-kernels/tests/test_quant_triton.py (every variant
#    bit-identical to the reference, at full size);
# 3. prints the timing table again, last, compactly: case, variant, microseconds, GB/s.
# Logs go to $OUT (or ./gpu-check-quant-out): bench.json, bench.txt, bench.log, tests.txt.
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

timeout "${BENCH_TIMEOUT:-60}" "$PY" - "$OUT" <<'EOF' 2>&1 | tee "$OUT/bench.log"
import json, os, sys, time
import torch, triton
from triton.testing import do_bench
import bnb_kernels  # noqa: F401  (defines the ops)
from bnb_kernels.backends.triton import quant as T

out_dir = sys.argv[1]
dev = "cuda"
rows, results = [], []


def save():
    with open(f"{out_dir}/bench.json", "w") as f:
        json.dump(results, f, indent=1)
    with open(f"{out_dir}/bench.txt", "w") as f:
        f.write("\n".join(rows) + "\n")


def bench(case, label, fns, nbytes):
    state = {"i": 0}

    def run():
        fn = fns[state["i"] % len(fns)]
        state["i"] += 1
        return fn()

    try:
        t0 = time.time()
        run()
        torch.cuda.synchronize()
        first_s = time.time() - t0
        ms = do_bench(run, warmup=10, rep=40, return_mode="median")
    except Exception as e:  # report and go on with the other variants
        line = f"{case:30s} {label:34s} FAILED {type(e).__name__}: {str(e)[:120]}"
    else:
        gbps = nbytes / ms / 1e6
        results.append({"case": case, "variant": label, "us": ms * 1e3, "GBps": gbps, "first_call_s": first_s})
        line = f"{case:30s} {label:34s} {ms * 1e3:8.1f} us {gbps:6.0f} GB/s"
    rows.append(line)
    print(line, f"(first call {first_s:.1f} s)" if "FAILED" not in line else "", flush=True)
    save()


print(torch.cuda.get_device_name(), "torch", torch.__version__, "triton", triton.__version__, flush=True)
src = torch.randn(128 * 2**20, device=dev)
dst = torch.empty_like(src)
bench("copy_512MiB (ceiling)", "torch copy_", [lambda: dst.copy_(src)], 2 * src.numel() * 4)
del src, dst

# 4-bit: 8192 x 8192 bf16, NF4, block size 64 (and 128, FP4: what anchor_gpu.py also runs).
N = K = 8192
n = N * K
W = [torch.randn(N, K, dtype=torch.bfloat16, device=dev) for _ in range(2)]


def q4(label, bs=64, qt="nf4", **kw):
    fns = [lambda w=w: T.quantize_4bit(w, bs, qt, torch.uint8, **kw) for w in W]
    bench(f"quantize_4bit_{qt}_bs{bs}_bf16", label, fns, 2 * n + n / 2 + 4 * n / bs)


q4("tiles (old default)", variant="tiles", tile=2048, num_warps=4, lut=True, addr32=True)
q4("tiles tile4096 w8", variant="tiles", tile=4096, num_warps=8)
q4("rows w4 pt64", variant="rows", num_warps=4, per_thread=64, pair=False)
q4("rows w8 pt64", variant="rows", num_warps=8, per_thread=64, pair=False)
q4("rows w2 pt64", variant="rows", num_warps=2, per_thread=64, pair=False)
q4("rows w4 pt32", variant="rows", num_warps=4, per_thread=32, pair=False)
q4("rows w4 pair", variant="rows", num_warps=4, per_thread=64, pair=True)
q4("rows w8 pair", variant="rows", num_warps=8, per_thread=64, pair=True)
q4("DEFAULT", bs=128)
q4("DEFAULT", qt="fp4")
q4("DEFAULT")
Q = [T.quantize_4bit(w, 64, "nf4", torch.uint8) for w in W]
bench("dequantize_4bit_nf4_bs64_bf16", "DEFAULT",
      [lambda q=q: T.dequantize_4bit(q[0], q[1], 64, "nf4", (N, K), torch.bfloat16) for q in Q], n / 2 + 4 * n / 64 + 2 * n)
del W, Q

# 8-bit: 64 M float32, dynamic map, block size 256 (and 4096).
m = 64 * 2**20
Wf = [torch.randn(m, device=dev) for _ in range(2)]
sys.path.insert(0, "packages/bnb-kernels/tests")
from test_quant_triton import _dynamic_code  # noqa: E402
code = _dynamic_code().to(dev)


def q8(label, bs=256, **kw):
    fns = [lambda w=w: T.quantize_blockwise(w, code, bs, **kw) for w in Wf]
    bench(f"quantize_blockwise_bs{bs}_fp32", label, fns, 4 * m + m + 4 * m / bs)


q8("tree (old default)", variant="tree", tile=2048, num_warps=4, sel_levels=2, addr32=True)
q8("grid w4 pt64 pair stream", variant="grid", num_warps=4, per_thread=64, pair=True, stream=True)
q8("grid w4 pt64 pair nostream", variant="grid", num_warps=4, per_thread=64, pair=True, stream=False)
q8("grid w4 pt64 nopair stream", variant="grid", num_warps=4, per_thread=64, pair=False, stream=True)
q8("grid w4 pt64 nopair nostream", variant="grid", num_warps=4, per_thread=64, pair=False, stream=False)
q8("grid w8 pt64 pair stream", variant="grid", num_warps=8, per_thread=64, pair=True, stream=True)
q8("grid w2 pt64 pair stream", variant="grid", num_warps=2, per_thread=64, pair=True, stream=True)
q8("grid w4 pt32 pair stream", variant="grid", num_warps=4, per_thread=32, pair=True, stream=True)
q8("DEFAULT", bs=4096)
q8("DEFAULT")
Q8 = [T.quantize_blockwise(w, code, 256) for w in Wf]
bench("dequantize_blockwise_bs256_fp32", "DEFAULT",
      [lambda q=q: T.dequantize_blockwise(q[0], q[1], code, 256, torch.float32) for q in Q8], m + 4 * m / 256 + 4 * m)
print("defaults:", {k: v.get("variant") for k, v in T.TUNING.items()}, flush=True)
EOF

timeout "${TEST_TIMEOUT:-75}" "$PY" -m pytest packages/bnb-kernels/tests/test_quant_triton.py -m gpu -v -ra -p no:cacheprovider 2>&1 | tee "$OUT/tests.txt" | grep -E "PASSED|FAILED|ERROR|passed|failed|seed|Error" | cut -c1-400
echo "tests exit: ${PIPESTATUS[0]}"
echo "===== quantize timings ($(head -c 60 "$OUT/gpu.txt"); do_bench median) ====="
cat "$OUT/bench.txt" 2>/dev/null
