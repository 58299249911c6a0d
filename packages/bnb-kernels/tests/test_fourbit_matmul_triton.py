"""Triton 4-bit matmul kernels against the reference.

On CI (no GPU) every kernel path runs under the Triton interpreter on small shapes, in a
subprocess (``TRITON_INTERPRET=1`` must be set before Triton is imported): this file run as
a script does those checks. With a GPU, the ``gpu`` tests run the real kernels at full size.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # the shared inputs; this file also runs as a script
from _fourbit_cases import quantized_case, rel_err, run_under_interpreter

CONFIGS = [
    # ("dot", tokens BM, weight rows BN, BK, warps, stages[, split-K])
    ("dot", 16, 16, 64, 4, 2),
    ("dot", 32, 32, 32, 4, 2),
    ("dot", 16, 16, 32, 4, 2, 3),  # split-K: partials in fp32, the last program adds them
    ("dot", 16, 32, 128, 4, 2, 2),
    # decode variants (last field): 0 global table loads, 1 two gathers, 3 packed pairs
    ("dot", 16, 16, 64, 4, 2, 1, 0),
    ("dot", 16, 16, 64, 4, 2, 1, 1),
    ("dot", 16, 32, 64, 4, 2, 2, 3),
    # fragment-order decode (last field): rows and K renumbered, x read to match
    ("dot", 16, 64, 128, 4, 2, 1, 1, 1),
    ("dot", 32, 128, 128, 8, 2, 2, 4, 1),
    ("dot", 16, 64, 128, 4, 2, 3, 3, 1),
    # num_stages=1 with the fragment order: next step prefetched into registers
    ("dot", 16, 64, 128, 4, 1, 1, 1, 1),
    ("dot", 16, 64, 128, 4, 1, 3, 1, 1),
    # decode 5: int32 words decoded by byte permutes (integer emulation here), packed scaling
    ("dot", 16, 64, 128, 4, 2, 1, 5, 1),
    ("dot", 16, 64, 128, 4, 1, 3, 5, 1),
    ("dot", 32, 128, 128, 8, 1, 2, 5, 1),
    # fourbit_gemv.gemv_kernel (1-4 token rows): (BN, BK, warps, split-K[, prefetch])
    ("gemv", 2, 64, 1, 1),
    ("gemv", 4, 128, 1, 2),
    ("gemv", 2, 64, 1, 1, 1),
    # fourbit_mma.mma_kernel (2-16 tokens, fp16/bf16): (warps, split-K, chunks per iteration, ...)
    ("mma", 1, 1, 2),
    ("mma", 2, 3, 1, 0, 1),  # the next chunk prefetched
    ("mma", 1, 2, 2, 0, 0, 1),  # interleaved split-K
    ("dequant",),
    ("dequant_chunked",),
]


def _interpreter_checks() -> None:
    """Every path at small shapes on CPU tensors. bf16 is checked on gemv/dequant only
    (loosely: the interpreter rounds to bf16 differently and its bf16 tl.dot is broken)."""
    from bnb_kernels.backends.reference import fourbit_matmul as ref
    from bnb_kernels.backends.triton import fourbit_matmul as T
    from bnb_kernels.backends.triton.fourbit_mma import mma_ok

    cases = [
        (40, 128, 3, 64, torch.float16, True, "nf4"),
        (33, 96, 1, 32, torch.float16, False, "fp4"),
        (64, 200, 2, 128, torch.float32, True, "nf4"),  # K % blocksize != 0
        (16, 64, 17, 4096, torch.float16, False, "nf4"),  # one block spans rows
        (24, 96, 5, 64, torch.bfloat16, True, "nf4"),
        (8, 512, 2, 256, torch.float16, True, "fp4"),  # steps shorter than a block
        (70, 200, 5, 128, torch.float16, True, "nf4"),  # K % blocksize != 0: a scale per word
        (20, 52, 2, 32, torch.float16, False, "fp4"),  # K/2 not a multiple of 4: no words
    ]
    failures = []
    for N, K, M, bs, dt, nested, qt in cases:
        _, x, bias, q, extra = quantized_case(N, K, M, bs, dt, nested, qt, "cpu", seed=N)
        expected = ref.gemm_4bit(x, q, [N, K], extra[0], bs, qt, bias, *extra[1:])
        meta = T._make_meta(extra[0], bs, T._lut(qt, x.device), *extra[1:])
        for cfg in CONFIGS:
            if cfg[0] == "dot" and dt != torch.float16:
                continue
            if cfg[0] == "gemv" and M > 4:
                continue
            if cfg[0] == "mma" and not mma_ok(M, K, bs, dt):
                continue
            out = torch.full((M, N), float("nan"), dtype=dt)
            T.launch(cfg, x, q.reshape(-1), meta, bias, out, N)
            tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 2e-2}[dt]
            err = rel_err(out, expected)
            if not torch.isfinite(out).all() or err > tol:
                failures.append(f"{cfg} N={N} K={K} M={M} bs={bs} {dt} nested={nested}: rel err {err:.3g}")
        # The op-level entry points (their heuristic may pick tl.dot: skip bf16 there).
        if dt == torch.bfloat16:
            continue
        got = T.gemm_4bit(x, q, [N, K], extra[0], bs, qt, bias, *extra[1:])
        if rel_err(got, expected) > 2e-2:
            failures.append(f"gemm_4bit N={N} K={K} M={M}: {rel_err(got, expected):.3g}")
        run = T.prepare_gemm_4bit(q, [N, K], extra[0], bs, qt, *extra[1:])
        if rel_err(run(x, bias), expected) > 2e-2:
            failures.append(f"prepared N={N} K={K} M={M}")
    # decode 5 on a weight that is not 4-byte aligned: the plan runs decode 1 in its place
    _, x, bias, q, extra = quantized_case(24, 128, 3, 64, torch.float16, True, "nf4", "cpu", seed=9)
    expected = ref.gemm_4bit(x, q, [24, 128], extra[0], 64, "nf4", bias, *extra[1:])
    meta = T._make_meta(extra[0], 64, T._lut("nf4", x.device), *extra[1:])
    buf = torch.zeros(q.numel() + 1, dtype=torch.uint8)
    buf[1:] = q.reshape(-1)
    for w in (q.reshape(-1), buf[1:]):
        plan = T._Plan(("dot", 16, 64, 128, 4, 1, 1, 5, 1), 3, 24, 128, meta, True)
        out = torch.full((3, 24), float("nan"), dtype=torch.float16)
        plan(x, w, meta, bias, out, 3, 24, 128)
        if not plan.words or rel_err(out, expected) > 2e-3 or (plan.alt is None) == (w.data_ptr() % 4 != 0):
            failures.append(f"decode 5, weight at {w.data_ptr() % 4} mod 4: {rel_err(out, expected):.3g}")
    # the tensor-core GEMV reads 8 bytes at a time: a weight off that boundary takes another path
    for w in (q.reshape(-1), buf[1:]):
        plan = T._Plan(("mma", 1, 2, 1), 3, 24, 128, meta, True)
        out = torch.full((3, 24), float("nan"), dtype=torch.float16)
        plan(x, w, meta, bias, out, 3, 24, 128)
        if rel_err(out, expected) > 2e-3 or (plan.alt is None) == (w.data_ptr() % 8 != 0):
            failures.append(f"mma, weight at {w.data_ptr() % 8} mod 8: {rel_err(out, expected):.3g}")
    # gemv_4bit with an explicit codebook and .out
    _, x, _, q, extra = quantized_case(32, 64, 1, 64, torch.float16, False, "nf4", "cpu", seed=3)
    code = T._lut("nf4", x.device)
    expected = ref.gemv_4bit(x, q, [32, 64], extra[0], code, 64)
    out = torch.empty(1, 32, dtype=torch.float16)
    T.gemv_4bit_out(x, q, [32, 64], extra[0], code, 64, out)
    if rel_err(out, expected) > 2e-3 or rel_err(T.gemv_4bit(x, q, [32, 64], extra[0], code, 64), expected) > 2e-3:
        failures.append("gemv_4bit")
    # dequantize kernel alone: fp16 exact
    _, x, _, q, extra = quantized_case(8, 128, 1, 32, torch.float16, True, "fp4", "cpu", seed=4)
    meta = T._make_meta(extra[0], 32, T._lut("fp4", x.device), *extra[1:])
    W = T.dequantize(q.reshape(-1), meta, 8, 128, torch.float16)
    flat = ref.decode_nested_absmax(extra[1], extra[0], extra[2], extra[3])
    if not torch.equal(W, ref.dequantize_weight(q, [8, 128], flat, T._lut("fp4", x.device), 32, torch.float16)):
        failures.append("dequantize kernel")
    # chunked dequantize + matmul with several chunks (small chunk size for the test)
    T.CHUNK_BYTES = 4096
    for N, K, bs, nested in ((520, 64, 32, True), (64, 128, 64, False)):
        _, x, bias, q, extra = quantized_case(N, K, 3, bs, torch.float32, nested, "nf4", "cpu", seed=5)
        meta = T._make_meta(extra[0], bs, T._lut("nf4", x.device), *extra[1:])
        rows = T._chunk_rows(N, K, bs, nested)
        out = torch.full((3, N), float("nan"))
        T.launch(("dequant_chunked",), x, q.reshape(-1), meta, bias, out, N)
        err = rel_err(out, ref.gemm_4bit(x, q, [N, K], extra[0], bs, "nf4", bias, *extra[1:]))
        if rows >= N or err > 1e-5:
            failures.append(f"dequant_chunked N={N} K={K} rows={rows}: {err:.3g}")
    if failures:
        raise SystemExit("FAILED:\n" + "\n".join(failures))
    print("triton interpreter checks passed")


def test_triton_kernels_under_interpreter() -> None:
    pytest.importorskip("triton")
    run_under_interpreter(__file__)


def test_heuristics_cover_every_batch_size() -> None:
    pytest.importorskip("triton")
    from bnb_kernels.backends.triton import fourbit_matmul as T

    for M in (1, 2, 3, 4, 5, 16, 17, 64, 100, 512, 513, 2048, 10000):
        for dt in (torch.float16, torch.bfloat16, torch.float32):
            for N in (None, 4096, 28672):
                assert T.heuristic_config(M, dt, N)[0] in ("gemv", "dot", "dequant")
                cands = T.candidates(M, dt, N)
                assert cands and all(c[0] in ("gemv", "dot", "dequant", "dequant_chunked") for c in cands)
                assert len(set(cands)) == len(cands)
                if N is not None:  # with K and the block size known, the tensor-core GEMV joins
                    full = T.candidates(M, dt, N, 4096, 64)
                    offered = T._MMA and 2 <= M <= 16 and dt != torch.float32
                    assert any(c[0] == "mma" for c in full) == offered
                    assert [c for c in full if c[0] != "mma"] == cands
                    h = T.heuristic_config(M, dt, N, 4096, 64)
                    assert (h[0] == "mma") == (offered and M <= 8), (M, dt, h)
                    assert T.heuristic_config(M, dt, N, 4000, 64)[0] != "mma"  # K % 64 != 0
                    assert T.heuristic_config(M, dt, N, 4096, 32)[0] != "mma"  # blocks of 32
            if dt == torch.float32:
                assert all(c[0] != "dot" for c in cands)  # no tf32 for fp32 activations


def test_sm80_paths_are_not_offered_on_older_gpus(monkeypatch) -> None:
    """On a GPU older than sm_80 (a T4) the tensor-core GEMV and bf16 decode 5 are neither
    timed nor the heuristic's choice: their mma.sync shape and packed bf16 fma do not exist
    there. fp16 decode 5 stays."""
    pytest.importorskip("triton")
    from bnb_kernels.backends.triton import fourbit_matmul as T

    if not (T._MMA and T._DOT5):
        pytest.skip("the tensor-core GEMV or decode 5 is switched off here")

    def has5(cands):
        return any(c[0] == "dot" and len(c) > 7 and c[7] == 5 for c in cands)

    for capability, offered in (((7, 5), False), ((8, 0), True), ((9, 0), True)):
        monkeypatch.setattr(T, "_SM80", {})
        monkeypatch.setattr(T, "interpreting", lambda: False)
        monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
        monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda idx=None, c=capability: c)
        cands = T.candidates(4, torch.float16, 4096, 4096, 64)
        assert any(c[0] == "mma" for c in cands) == offered, capability
        assert (T.heuristic_config(4, torch.float16, 4096, 4096, 64)[0] == "mma") == offered, capability
        assert has5(T.candidates(16, torch.bfloat16, 4096, 4096, 64)) == offered, capability
        assert (T.heuristic_config(16, torch.bfloat16, 4096)[7] == 5) == offered, capability
        assert has5(T.candidates(16, torch.float16, 4096, 4096, 64)), capability


def test_pair_decode_ptx_matches_table_lookup() -> None:
    """The PTX text of decode 5 (fourbit_decode.PAIR_ASM, run by a small interpreter of its
    instructions) equals a lookup in the table rounded to bf16 / fp16 times the rounded
    scale, for random words, every byte value in every position, random scales."""
    from bnb_kernels.backends.triton import fourbit_decode as D
    from bnb_kernels.codebooks import fourbit_table

    g = torch.Generator().manual_seed(2)
    words = torch.randint(-(2**31), 2**31 - 1, (3000,), generator=g, dtype=torch.int64).to(torch.int32)
    b = torch.arange(256, dtype=torch.int64)
    words = torch.cat([words, (b | (b << 8) | (b << 16) | (b << 24)).to(torch.int32), (b << 24).to(torch.int32)])
    scale = torch.cat([torch.rand(3000, generator=g) * 4, torch.full((512,), 0.03125)])
    tables = [fourbit_table("nf4", "cpu"), fourbit_table("fp4", "cpu"), torch.randn(16, generator=g)]
    for dtype in (torch.bfloat16, torch.float16):
        for lut in tables:
            planes = D.pair_planes(lut, dtype)
            assert all(0 <= p < 2**32 for p in planes)
            got = D.decode_pairs_reference(words, planes, scale, dtype)
            want = D.lookup_pairs_reference(words, lut, scale, dtype)
            assert torch.equal(got.view(torch.int16), want.view(torch.int16))  # signed zeros too
            # feature 0 is the high nibble of byte 0, within two roundings of code * scale
            exact = lut.float()[(words.to(torch.int64) & 0xFF) >> 4] * scale
            tol = 3 * 2.0 ** (-8 if dtype == torch.bfloat16 else -11)
            assert torch.allclose(want[:, 0].float(), exact, rtol=tol, atol=1e-6)


def test_dot5_switch() -> None:
    """BNB_4BIT_DOT5=0 (read at import as ``_DOT5``) leaves decode 5 out of every list."""
    pytest.importorskip("triton")
    from bnb_kernels.backends.triton import fourbit_matmul as T

    def has5(cands):
        return any(c[0] == "dot" and len(c) > 7 and c[7] == 5 for c in cands)

    old = T._DOT5
    try:
        T._DOT5 = True
        assert all(has5(T.candidates(M, torch.bfloat16, 4096)) for M in (3, 16, 64, 128, 512))
        assert not has5(T.candidates(1, torch.bfloat16, 4096))  # the GEMV is faster at 1 token
        T._DOT5 = False
        for M in (1, 3, 16, 64, 128, 512):
            for dt in (torch.bfloat16, torch.float16):
                assert not has5(T.candidates(M, dt, 4096)) and T.candidates(M, dt, 4096)
    finally:
        T._DOT5 = old


def test_candidates_compile_with_the_arguments_they_launch_with(monkeypatch) -> None:
    """A layer shape's first call compiles its candidates on a few threads before timing them
    (``_precompile``): each plan's warm call must hand Triton exactly the arguments and
    constexprs its launch uses (else the launch compiles again), launch nothing, and every
    candidate is warmed once, the first of each kernel function before the others."""
    pytest.importorskip("triton")
    from bnb_kernels.backends.triton import _common
    from bnb_kernels.backends.triton import fourbit_matmul as T

    if T.triton is None:
        pytest.skip("no Triton")
    seen: list[tuple] = []

    def run(self, *args, grid, warmup, **kwargs):  # what reaches Triton, instead of compiling
        # what Triton specializes on: a tensor's dtype and 16-byte alignment, an int's value
        key = tuple((a.dtype, a.data_ptr() % 16 == 0) if torch.is_tensor(a) else a for a in args)
        seen.append(("warm" if warmup else "launch", self, key, grid, kwargs))

    monkeypatch.setattr(type(T._dequant_kernel), "run", run)
    monkeypatch.setattr(torch.Tensor, "copy_", lambda self, src: self)  # the split GEMV's fp32 result
    N, K, M = 256, 512, 4
    _, x, bias, q, extra = quantized_case(N, K, M, 64, torch.float16, True, "nf4", "cpu", seed=1)
    meta = T._make_meta(extra[0], 64, T._lut("nf4", x.device), *extra[1:])
    w = q.reshape(-1)
    cands = T.candidates(M, torch.float16, N, K, 64)
    kinds = {c[0] for c in cands}
    assert {"gemv", "dot", "dequant"} <= kinds, kinds
    plans = [T._Plan(c, M, N, K, meta, True) for c in cands]
    out = torch.empty(M, N, dtype=torch.float16)
    for plan in plans:
        seen.clear()
        plan(x, w, meta, bias, out, M, N, K, warm=True)
        plan(x, w, meta, bias, out, M, N, K)
        (mode0, kernel0, args0, grid0, kw0), (mode1, kernel1, args1, grid1, kw1) = seen[:2]
        assert (mode0, mode1) == ("warm", "launch"), plan.config
        assert kernel0 is kernel1 and args0 == args1 and grid0 == grid1 and kw0 == kw1, plan.config
    seen.clear()
    monkeypatch.setenv(_common.COMPILE_THREADS_ENV, "3")
    T._precompile(plans, (x, w, meta, bias, out, M, N, K))
    assert all(mode == "warm" for mode, *_ in seen)

    def ident(kernel, grid, kw) -> tuple:  # which plan's kernel a call compiles
        return id(kernel), repr(grid), repr(sorted(kw.items()))

    warmed = [ident(kernel, grid, kw) for _, kernel, _, grid, kw in seen]
    assert sorted(warmed) == sorted(ident(p.launch.kernel, p.launch.grid, p.launch.kw) for p in plans)
    firsts = {}
    for p in plans:
        firsts.setdefault(p.launch.kernel, p)
    assert warmed[: len(firsts)] == [ident(p.launch.kernel, p.launch.grid, p.launch.kw) for p in firsts.values()]
    seen.clear()
    monkeypatch.setenv(_common.COMPILE_THREADS_ENV, "1")  # one thread: nothing compiled ahead
    T._precompile(plans, (x, w, meta, bias, out, M, N, K))
    assert not seen
    monkeypatch.setenv(_common.COMPILE_THREADS_ENV, "many")
    with pytest.raises(ValueError, match=_common.COMPILE_THREADS_ENV):
        T._precompile(plans, (x, w, meta, bias, out, M, N, K))


gpu = pytest.mark.gpu


@gpu
@pytest.mark.parametrize(
    ("dtype", "M", "N", "K", "blocksize", "nested", "all_paths"),
    [
        (torch.bfloat16, 1, 4096, 4096, 64, True, True),
        (torch.bfloat16, 16, 4096, 4096, 64, True, True),
        (torch.bfloat16, 4, 1000, 4096, 128, True, True),  # the tensor-core GEMV, ragged N
        (torch.float16, 8, 4096, 1024, 64, False, False),  # its heuristic choice
        (torch.bfloat16, 100, 4096, 4096, 64, True, True),
        (torch.bfloat16, 700, 4096, 4096, 64, True, True),
        (torch.bfloat16, 3, 300, 770, 32, True, False),  # K % blocksize != 0, ragged tiles
        (torch.float16, 1, 1000, 2048, 128, False, False),
        (torch.float16, 37, 1000, 2048, 128, False, False),
        (torch.float32, 1, 1000, 2048, 128, False, True),
        (torch.float32, 9, 300, 770, 32, True, True),
    ],
)
def test_gpu_paths_match_reference(dtype, M, N, K, blocksize, nested, all_paths) -> None:
    from bnb_kernels.backends.reference import fourbit_matmul as ref
    from bnb_kernels.backends.triton import fourbit_matmul as T

    _, x, bias, q, extra = quantized_case(N, K, M, blocksize, dtype, nested, "nf4", "cuda", seed=M)
    expected = ref.gemm_4bit(x, q, [N, K], extra[0], blocksize, "nf4", bias, *extra[1:])
    meta = T._make_meta(extra[0], blocksize, T._lut("nf4", x.device), *extra[1:])
    tol = {torch.float32: 1e-4, torch.float16: 3e-3, torch.bfloat16: 1.2e-2}[dtype]
    configs = T.candidates(M, dtype, N, K, blocksize) if all_paths else [T.heuristic_config(M, dtype, N, K, blocksize)]
    for cfg in configs:
        out = torch.full((M, N), float("nan"), dtype=dtype, device="cuda")
        T.launch(cfg, x, q.reshape(-1), meta, bias, out, N)
        assert torch.isfinite(out).all(), cfg
        assert rel_err(out, expected) < tol, (cfg, rel_err(out, expected))
    got = torch.ops.bitsandbytes.gemm_4bit(x, q, [N, K], extra[0], blocksize, "nf4", bias, *extra[1:])
    assert rel_err(got, expected) < tol


@gpu
def test_gpu_gemv_op_and_fp4_odd_k() -> None:
    from bnb_kernels.backends.reference import fourbit_matmul as ref

    _, x, _, q, extra = quantized_case(512, 1024, 1, 64, torch.bfloat16, False, "fp4", "cuda")
    code = torch.tensor([0.0] * 16, device="cuda")
    from bnb_kernels.codebooks import fourbit_table

    code = fourbit_table("fp4", "cuda")
    got = torch.ops.bitsandbytes.gemv_4bit(x, q, [512, 1024], extra[0], code, 64)
    assert rel_err(got, ref.gemv_4bit(x, q, [512, 1024], extra[0], code, 64)) < 1.2e-2
    _, x, bias, q, extra = quantized_case(40, 33, 5, 64, torch.float16, True, "fp4", "cuda")
    got = torch.ops.bitsandbytes.gemm_4bit(x, q, [40, 33], extra[0], 64, "fp4", bias, *extra[1:])
    assert rel_err(got, ref.gemm_4bit(x, q, [40, 33], extra[0], 64, "fp4", bias, *extra[1:])) < 3e-3


@gpu
@pytest.mark.parametrize("M", [1, 16, 300])
def test_gpu_direct_launch_matches(M: int) -> None:
    """After the first calls a plan launches its compiled kernel directly; results stay equal."""
    from bnb_kernels.backends.reference import fourbit_matmul as ref
    from bnb_kernels.backends.triton import fourbit_matmul as T

    _, x, bias, q, extra = quantized_case(1024, 2048, M, 64, torch.bfloat16, True, "nf4", "cuda", seed=7)
    expected = ref.gemm_4bit(x, q, [1024, 2048], extra[0], 64, "nf4", bias, *extra[1:])
    run = T.prepare_gemm_4bit(q, [1024, 2048], extra[0], 64, "nf4", *extra[1:])
    outs = [run(x, bias).clone() for _ in range(5)]
    for out in outs:
        assert rel_err(out, expected) < 1.2e-2
    plans = list(run.meta.configs.values())
    assert plans
    if T._FAST_LAUNCH and plans[0].launch is not None:
        assert plans[0].launch.checked and plans[0].launch.ck is not None


@gpu
def test_gpu_direct_launch_of_large_dequantize() -> None:
    """The dequantize path's first direct launch is checked by checksum (its output is
    weight-sized); later calls still match the reference."""
    from bnb_kernels.backends.reference import fourbit_matmul as ref
    from bnb_kernels.backends.triton import fourbit_matmul as T

    N, K, M = 4096, 4096, 600  # a 32 MiB bf16 weight
    _, x, bias, q, extra = quantized_case(N, K, M, 64, torch.bfloat16, True, "nf4", "cuda", seed=11)
    expected = ref.gemm_4bit(x, q, [N, K], extra[0], 64, "nf4", bias, *extra[1:])
    meta = T._make_meta(extra[0], 64, T._lut("nf4", x.device), *extra[1:])
    plan = T._Plan(("dequant",), M, N, K, meta, True)
    for _ in range(3):
        out = torch.full((M, N), float("nan"), dtype=torch.bfloat16, device="cuda")
        plan(x, q.reshape(-1), meta, bias, out, M, N, K)
        assert rel_err(out, expected) < 1.2e-2
    if T._FAST_LAUNCH:
        assert plan.launch.checked and plan.launch.ck is not None


if __name__ == "__main__":
    _interpreter_checks()
