#!/usr/bin/env bash
# GPU check of the optimizers (issue 5) in ONE device call (carry [".device"] for pytest):
#   bash scripts/gpu-check-optim.sh            (logs under $OUT when set, else build/gpu-check-optim)
# 1. set-up without the native build (the optimizer GPU paths do not need it),
# 2. the optimizer GPU tests (4 pytest processes at once: the time goes to Triton compiles),
# 3. kernel variants on one 4096x14336 parameter (tiles of 2/4 blocks, persistent prefetching
#    programs or not, codebook gathers from shared memory or L1) with triton's do_bench; the best single one's BNB_OPTIM8_* knobs are
#    written to $OUT/best.env (the code picks per case: _layout in backends/triton/optim.py),
# 4. scripts/gpu-profile.py --only optim (step, host and kernel time per case),
# 5. a cProfile of one AdamW8bit bf16 step (where the host time goes).
# Sections have their own timeouts so that a slow one still leaves the others' results.
set -o pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
OUT="${OUT:-$ROOT/build/gpu-check-optim}"
mkdir -p "$OUT"
PY="${PYTHON:-python3}"
if ! "$PY" -c "import hypothesis, pytest" 2>/dev/null && [ -d "$ROOT/.device/wheels" ]; then
  "$PY" -m pip install --quiet --no-index --find-links "$ROOT/.device/wheels" hypothesis pytest >/dev/null 2>&1
fi
export PYTHONPATH="$ROOT/src:$ROOT/packages/bnb-kernels/src:$ROOT/packages/bnb-quant/src:$ROOT/packages/bnb-nn/src:$ROOT/packages/bnb-optim/src:$ROOT/packages/bnb-diagnostics/src:$ROOT${PYTHONPATH:+:$PYTHONPATH}"
export PYTHONUNBUFFERED=1 PYTHONWARNINGS=ignore
nvidia-smi --query-gpu=name,memory.used,memory.total,clocks.sm --format=csv,noheader 2>&1 | tee "$OUT/env.log"
status=0
t0=$(date +%s)

echo "== tests"
T="packages/bnb-kernels/tests"
run_tests() { # name, pytest args...
  local name=$1
  shift
  timeout "${TEST_TIMEOUT:-100}" "$PY" -m pytest -m gpu -q -ra -p no:cacheprovider "$@" >"$OUT/tests-$name.log" 2>&1
  echo "rc $?" >>"$OUT/tests-$name.log"
}
run_tests triton "$T/test_optim_triton.py" &
run_tests ops2 "$T/test_optim.py" -k "triton and (adam or lamb or ademamix or momentum)" &
run_tests ops1 "$T/test_optim.py" -k "triton and not (adam or lamb or ademamix or momentum)" &
run_tests optim packages/bnb-optim/tests &
wait
for f in "$OUT"/tests-*.log; do
  echo "-- $(basename "$f"): $(grep -E '(passed|failed|error)' "$f" | tail -1) $(tail -1 "$f")"
  grep -q "^rc 0$" "$f" || {
    status=1
    grep -E "^(FAILED|ERROR)|Error|assert" "$f" | head -20
  }
done
echo "tests took $(($(date +%s) - t0)) s"

echo "== variants (kernel ms on one 4096x14336 parameter; do_bench, L2 flushed)"
timeout "${VARIANT_TIMEOUT:-75}" "$PY" - "$OUT/best.env" <<'EOF' 2>&1 | tee "$OUT/variants.log" || status=1
import sys, torch, triton.testing
from bnb_kernels.backends.reference import optim as ref
from bnb_kernels.backends.triton import optim as tri

n = 4096 * 14336
q1, q2 = ref.dynamic_map(True).cuda(), ref.dynamic_map(False).cuda()
# (name, blocks per tile = warps, persistent prefetching programs, programs per SM, maxnreg,
#  codebook in shared memory)
variants = [("pf b2 16/SM", 2, True, 16, 0, False), ("pf b2 16/SM smem", 2, True, 16, 0, True),
            ("pf b4 8/SM", 4, True, 8, 0, False), ("nopf b4", 4, False, 8, 0, False),
            ("nopf b4 smem", 4, False, 8, 0, True), ("nopf b2", 2, False, 8, 0, False),
            ("nopf b2 smem", 2, False, 8, 0, True)]
total = {v[0]: 0.0 for v in variants}
for name, dtype in (("adam", torch.bfloat16), ("adam", torch.float32), ("lion", torch.bfloat16), ("ademamix", torch.float32)):
    k = 2 if name == "ademamix" else 1
    p = (torch.randn(n, device="cuda") * 0.02).to(dtype)
    g = (torch.randn(n, device="cuda") * 1e-3).to(dtype)
    c1 = torch.full((k * n,), 127, dtype=torch.uint8, device="cuda")
    a1 = torch.full((k * ((n + 255) // 256),), 1e-3, device="cuda")
    two = name in ("adam", "ademamix")
    c2 = torch.full((n,), 1, dtype=torch.uint8, device="cuda") if two else None
    a2 = torch.full(((n + 255) // 256,), 1e-6, device="cuda") if two else None
    nbytes = n * (3 * p.element_size() + 2 * (k + (1 if two else 0)))
    out = []
    for vname, blocks, pf, per_sm, nreg, smem in variants:
        tri.BLOCKS_8BIT, tri.PREFETCH_8BIT, tri.PROGRAMS_PER_SM = blocks, pf, per_sm
        tri.MAXNREG_8BIT, tri.SMEM_8BIT = nreg, smem
        tri._PLANS.clear()
        step = [0]

        def fn():
            step[0] += 1
            tri.optimizer_update_8bit_blockwise(name, g, p, c1, c2, 0.9, 0.999, 0.9999, 5.0, 1e-8, 10 + step[0],
                                                1e-6, q1, q2 if two else None, a1, a2, 0.0, 1.0)
        try:
            ms = triton.testing.do_bench(fn, warmup=20, rep=60, return_mode="median")
            total[vname] += ms
            out.append(f"{vname} {ms:6.3f}")
        except Exception as e:  # a variant that does not compile is reported, not fatal
            total[vname] += 1e9
            out.append(f"{vname} failed {type(e).__name__}: {str(e)[:80]}")
    print(f"{name:9s} {str(dtype)[6:]:8s} limit {nbytes / 3.0e9:5.2f} ms | " + " | ".join(out), flush=True)
    del p, g, c1, c2, a1, a2
best = min(variants, key=lambda v: total[v[0]])
print(f"best over the four cases: {best[0]}")
with open(sys.argv[1], "w") as f:
    f.write(f"export BNB_OPTIM8_BLOCKS={best[1]} BNB_OPTIM8_PREFETCH={int(best[2])} "
            f"BNB_OPTIM8_PROGRAMS_PER_SM={best[3]} BNB_OPTIM8_MAXNREG={best[4]} BNB_OPTIM8_SMEM={int(best[5])}\n")
EOF
[ -f "$OUT/best.env" ] && cat "$OUT/best.env"

echo "== profile (per-case defaults; the best single variant above: $OUT/best.env)"
timeout "${PROFILE_TIMEOUT:-70}" "$PY" scripts/gpu-profile.py --only optim 2>&1 | tee "$OUT/profile.log" || status=1

echo "== host time of one AdamW8bit bf16 step (the profile's 16 parameters; cProfile)"
timeout 40 "$PY" - <<'EOF' 2>&1 | tee "$OUT/host.log"
import cProfile, pstats, time, torch, bitsandbytes as bnb
params = [torch.nn.Parameter(torch.randn(*s, dtype=torch.bfloat16, device="cuda") * 0.02)
          for s in [(4096, 14336)] * 8 + [(4096,)] * 8]
for p in params:
    p.grad = torch.randn_like(p) * 1e-3
opt = bnb.optim.AdamW8bit(params, lr=1e-4)
for _ in range(3):
    opt.step()
torch.cuda.synchronize()
t0 = time.perf_counter(); opt.step(); t1 = time.perf_counter(); torch.cuda.synchronize(); t2 = time.perf_counter()
print(f"host {1e3 * (t1 - t0):.3f} ms, step {1e3 * (t2 - t0):.3f} ms")
pr = cProfile.Profile(); pr.enable(); opt.step(); pr.disable(); torch.cuda.synchronize()
pstats.Stats(pr).sort_stats("tottime").print_stats(12)
EOF
echo "== total $(($(date +%s) - t0)) s"
exit $status
