"""GPU check of decode 5 of the 4-bit ``dot`` kernel (fourbit_matmul, config field 8 = 5):
the weight's nibbles decoded by inline-PTX byte permutes (fourbit_decode.PAIR_ASM), which
the CPU tests can only check through an emulator of the PTX text.

1. ``fourbit_decode.decode_pairs`` (the PTX) on random words and scales against the table
   lookup ``lookup_pairs_reference``: bit-exact, bf16 and fp16, nf4, fp4 and a random table.
2. The kernel with decode 5 against the reference ``gemm_4bit``: the anchor shapes
   (4096->4096, 4096->14336, 8192->28672; bf16, nf4, block size 64, nested absmax) at 1, 16
   and 128 tokens with every decode-5 candidate of the autotuner, then ragged shapes, fp16,
   fp4, plain absmax, block sizes 32-4096, a weight that is not 4-byte aligned.

Exit status 1 on any mismatch: the caller then keeps decode 5 out of the autotuner
(``BNB_4BIT_DOT5=0``). Run on the GPU machine from the repository root:
    source scripts/gpu-env.sh && python3 scripts/gpu-check-dot5.py [--only decode,anchors,small]
The anchor part uses the configs (no bias) that ``python3 -m benchmarks.linear4bit_configs
--prewarm N --prewarm-only --tokens 1,16,128`` compiles in parallel: run that first.
"""

from __future__ import annotations

import os
import sys
import time

import torch

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "packages", "bnb-kernels", "src"))
sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "packages", "bnb-kernels", "tests"))  # _fourbit_cases

import triton
import triton.language as tl

import bnb_kernels  # noqa: F401  (registers the ops)
from bnb_kernels.backends.reference import fourbit_matmul as ref
from bnb_kernels.backends.triton import fourbit_decode as D
from bnb_kernels.backends.triton import fourbit_matmul as T
from bnb_kernels.codebooks import fourbit_table

TOL = {torch.float16: 3e-3, torch.bfloat16: 1.2e-2}


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


@triton.jit
def _pairs_kernel(w_ptr, s_ptr, lut_ptr, out_ptr, n, BLOCK: tl.constexpr, DT: tl.constexpr):
    i = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
    m = i < n
    w = tl.load(w_ptr + i, mask=m, other=0)
    sp = tl.load(s_ptr + i, mask=m, other=0.0).to(DT).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
    l0, l1, l2, l3, h0, h1, h2, h3 = D.table_planes16(lut_ptr, DT)
    p0, p1, p2, p3 = D.decode_pairs(w, l0, l1, l2, l3, h0, h1, h2, h3, sp | (sp << 16), DT, True)
    tl.store(out_ptr + i * 4, p0, mask=m)
    tl.store(out_ptr + i * 4 + 1, p1, mask=m)
    tl.store(out_ptr + i * 4 + 2, p2, mask=m)
    tl.store(out_ptr + i * 4 + 3, p3, mask=m)


def check_decode() -> int:
    fails = 0
    g = torch.Generator(device="cuda").manual_seed(0)
    n = 1 << 16
    words = torch.randint(-(2**31), 2**31 - 1, (n,), dtype=torch.int64, device="cuda", generator=g).to(torch.int32)
    b = torch.arange(256, dtype=torch.int64, device="cuda")
    words[:256] = (b | (b << 8) | (b << 16) | (b << 24)).to(torch.int32)  # every byte in every position
    scale = torch.rand(n, device="cuda", generator=g) * 4
    tables = {"nf4": fourbit_table("nf4", "cuda"), "fp4": fourbit_table("fp4", "cuda")}
    tables["random"] = torch.randn(16, device="cuda", generator=g)
    for dt, tdt in ((torch.bfloat16, tl.bfloat16), (torch.float16, tl.float16)):
        for name, lut in tables.items():
            out = torch.empty(n, 4, dtype=torch.int32, device="cuda")
            _pairs_kernel[(triton.cdiv(n, 1024),)](words, scale, lut, out, n, BLOCK=1024, DT=tdt)
            got = out.view(dt).reshape(n, 8).cpu()
            want = D.lookup_pairs_reference(words.cpu(), lut.cpu(), scale.cpu(), dt)
            ok = torch.equal(got.view(torch.int16), want.view(torch.int16))
            fails += not ok
            print(f"decode_pairs PTX {name} {dt}: {'matches' if ok else 'DIFFERS FROM'} the table lookup ({n} words)")
    return fails


DEV = "cuda"


def quantized(N, K, M, bs, dtype, nested, qt, seed):
    """The tests' ``quantized_case`` (no weight copy kept): x, bias, packed weight, absmax."""
    from _fourbit_cases import quantized_case

    _, x, bias, q, extra = quantized_case(N, K, M, bs, dtype, nested, qt, DEV, seed)
    return x, bias, q, extra


def check_kernel(parts: str = "anchors,small", smoke: bool = False) -> int:
    """``parts``: "anchors" (full size, every candidate, no bias: the configs the benchmark
    compiles) and/or "small" (ragged shapes, dtypes, block sizes, with bias, one config
    each). ``smoke``: tiny shapes (a CPU run of this script under TRITON_INTERPRET=1)."""
    fails = 0
    n = 0
    t0 = time.time()
    d5 = [
        ("dot", 16, 64, 128, 4, 1, 1, 5, 1),
        ("dot", 16, 64, 128, 4, 3, 2, 5, 1),
        ("dot", 128, 128, 128, 8, 1, 2, 5, 1),
    ]
    # (N, K, token counts, bs, dtype, nested, quant type, configs (None: the decode-5
    # candidates), also with a weight that is not 4-byte aligned)
    anchors = [(4096, 4096), (14336, 4096), (28672, 8192)] if not smoke else [(96, 256)]
    cases = []
    if "anchors" in parts:
        cases += [(N, K, (1, 16, 128), 64, torch.bfloat16, True, "nf4", None, False) for N, K in anchors]
    if "small" in parts:
        cases += [
            (1000, 2048, (3, 37), 128, torch.float16, False, "nf4", d5[:1], True),
            (300, 776, (5, 100), 32, torch.bfloat16, True, "fp4", d5[1:2], False),  # K % bs != 0: a scale per word
            (513, 3072, (16,), 256, torch.float16, True, "nf4", d5[2:], False),  # ragged N
            (64, 1024, (9,), 4096, torch.bfloat16, False, "nf4", d5[:1], False),  # a block spans rows
            (200, 1000, (16, 130), 64, torch.float16, True, "fp4", d5[1:], False),  # K % 128 != 0: masked tail
            (96, 770, (4,), 64, torch.bfloat16, True, "nf4", d5[:1], False),  # K/2 odd: decode 1 in its place
        ]
    if smoke:  # the interpreter's bf16 dot is off: fp16 only, small
        cases = [
            (N, min(K, 256), Ms[:1], bs, torch.float16, ne, qt, c, mis) for N, K, Ms, bs, _, ne, qt, c, mis in cases
        ]
        cases = [(min(N, 100), *rest) for N, *rest in cases]
    for ci, (N, K, Ms, bs, dt, nested, qt, cfgs, misalign) in enumerate(cases):
        has_bias = cfgs is not None
        for M in Ms:
            x, bias, q, extra = quantized(N, K, M, bs, dt, nested, qt, seed=ci * 100 + M)
            bias = bias if has_bias else None
            expected = ref.gemm_4bit(x, q, [N, K], extra[0], bs, qt, bias, *extra[1:])
            meta = T._make_meta(extra[0], bs, T._lut(qt, x.device), *extra[1:])
            configs = cfgs or T._dot5_candidates(M, N)
            for cfg in configs:
                weights = [q.reshape(-1)] + ([_misaligned(q)] if misalign and cfg == configs[0] else [])
                for w in weights:
                    out = torch.full((M, N), float("nan"), dtype=dt, device=DEV)
                    plan = T._Plan(cfg, M, N, K, meta, has_bias)
                    for _ in range(2):  # the second call is the direct launch
                        plan(x, w, meta, bias, out, M, N, K)
                    e = rel(out, expected)
                    n += 1
                    bad = not torch.isfinite(out).all() or e > TOL[dt]
                    fails += bad
                    if bad or cfgs is None:
                        tag = "FAIL" if bad else "ok"
                        where = f", weight at {w.data_ptr() % 4} mod 4" if w.data_ptr() % 4 else ""
                        print(
                            f"{tag} N={N} K={K} M={M} bs={bs} {dt} nested={nested} {qt} {cfg}{where}: rel err {e:.2e}"
                        )
            del expected
    print(f"decode-5 kernel: {n - fails}/{n} launches match the reference ({time.time() - t0:.0f} s)")
    return fails


def _misaligned(q: torch.Tensor) -> torch.Tensor:
    buf = torch.zeros(q.numel() + 16, dtype=torch.uint8, device=q.device)
    w = buf[1 : 1 + q.numel()]
    w.copy_(q.reshape(-1))
    return w


def main() -> int:
    global DEV
    if not torch.cuda.is_available():
        if os.environ.get("TRITON_INTERPRET", "0") in ("", "0"):
            print("no GPU")
            return 2
        DEV = "cpu"  # smoke test of the kernel part under the interpreter
        fails = check_kernel(smoke=True)
        print("DOT5 SMOKE " + ("PASSED" if fails == 0 else f"FAILED ({fails})"))
        return 1 if fails else 0
    if not T._HAS_DOT5:
        print("decode 5 is not offered by this Triton: nothing to check")
        return 0
    print(f"{torch.cuda.get_device_name()} torch {torch.__version__} triton {triton.__version__}")
    parts = sys.argv[sys.argv.index("--only") + 1] if "--only" in sys.argv else "decode,anchors,small"
    fails = (check_decode() if "decode" in parts else 0) + check_kernel(parts)
    print("DOT5 CHECK " + ("PASSED" if fails == 0 else f"FAILED ({fails})"))
    return 1 if fails else 0


if __name__ == "__main__":
    sys.exit(main())
