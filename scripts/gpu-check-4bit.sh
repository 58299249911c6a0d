#!/usr/bin/env bash
# GPU check of the 4-bit layers (issue 4), in one device call:
#   bash scripts/gpu-check-4bit.sh        (on the GPU machine; logs under $OUT)
# 1. the GPU tests of the 4-bit kernels and modules
# 2. benchmarks/linear4bit.py (H100, bf16, the five Llama shapes, 1/16/128/2048 tokens)
# 3. a per-call overhead probe of the decode path
# The benchmark table is printed last.
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/benchmarks/results}"
mkdir -p "$OUT"
# shellcheck source=scripts/gpu-env.sh
source scripts/gpu-env.sh
set +e
export PYTHONUNBUFFERED=1
PY="${PYTHON:-python3}"
nvidia-smi --query-gpu=name,clocks.sm,clocks.max.sm,clocks.mem,temperature.gpu --format=csv 2>&1 | tee "$OUT/gpu.txt"

timeout "${TEST_TIMEOUT:-50}" "$PY" -m pytest -q -m gpu -x -p no:cacheprovider \
  packages/bnb-nn/tests/test_linear4bit.py packages/bnb-kernels/tests/test_fourbit_matmul_triton.py 2>&1 | tail -25 | tee "$OUT/tests.log"


timeout "${BENCH_TIMEOUT:-140}" "$PY" -m benchmarks.linear4bit --device cuda --no-plot \
  --json "$OUT/linear4bit-cuda.json" --md "$OUT/linear4bit-cuda.md" 2>&1 | tee "$OUT/bench.log"

timeout 25 "$PY" - <<'PY' 2>&1 | tee "$OUT/overhead.log"
import time, torch, triton.testing as tt
from bnb_nn import Linear4bit, Params4bit
from bnb_kernels.backends.triton import fourbit_matmul as T
K = N = 4096
w = torch.randn(N, K, dtype=torch.bfloat16)
m = Linear4bit(K, N, bias=False, compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=True)
m.weight = Params4bit(w, requires_grad=False, quant_type="nf4", compress_statistics=True)
m = m.cuda()
dense = torch.nn.Linear(K, N, bias=False, dtype=torch.bfloat16, device="cuda")
x = torch.randn(1, K, dtype=torch.bfloat16, device="cuda")
def host_us(fn, n=3000):
    fn(); torch.cuda.synchronize()
    t = time.perf_counter()
    for _ in range(n):
        fn()
    dt = (time.perf_counter() - t) / n * 1e6
    torch.cuda.synchronize()
    return dt
with torch.inference_mode():
    m(x)
    fast = m.weight.__dict__["_bnb_fast"]
    print("host us/call: Linear4bit", round(host_us(lambda: m(x)), 2), "| nn.Linear", round(host_us(lambda: dense(x)), 2),
          "| torch.empty", round(host_us(lambda: torch.empty((1, N), dtype=torch.bfloat16, device="cuda")), 2))
    meta = T._make_meta(fast.qs.state2.absmax, 64, T._lut("nf4", x.device), fast.qs.absmax, fast.qs.state2.code, fast.qs.offset)
    out = torch.empty(1, N, dtype=torch.bfloat16, device="cuda")
    wflat = fast.plain.reshape(-1)
    for cfg in [("gemv", 16, 512, 4), ("gemv", 32, 256, 4), ("dot", 16, 32, 256, 4, 3)]:
        T.launch(cfg, x, wflat, meta, None, out, N)
        print(cfg, "launch host us", round(host_us(lambda: T.launch(cfg, x, wflat, meta, None, out, N)), 2))
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g):
        y = m(x)
    g.replay(); torch.cuda.synchronize()
    print("graph replay (GPU time, L2-warm) ms", tt.do_bench(g.replay, warmup=10, rep=50, return_mode="median"))
    print("do_bench m(x) ms", tt.do_bench(lambda: m(x), warmup=10, rep=50, return_mode="median"),
          "| dense ms", tt.do_bench(lambda: dense(x), warmup=10, rep=50, return_mode="median"))
    print("tuned:", {str(k[:4]): v for k, v in T.tuned_configs().items()})
    print("direct launch enabled:", T._FAST_LAUNCH)
PY

echo "=== linear4bit benchmark (H100) ==="
cat "$OUT/linear4bit-cuda.md" 2>/dev/null || tail -30 "$OUT/bench.log"
