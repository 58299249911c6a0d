"""The Triton 4-bit GEMV kernel (``backends/triton/fourbit_gemv.py``) against the reference.

On CI (no GPU) the kernel runs under the Triton interpreter on small shapes, in a subprocess
(``TRITON_INTERPRET=1`` must be set before Triton is imported): this file run as a script
does those checks. ``scripts/gpu-bench-gemv.py`` runs the same comparison at full size on a
GPU and times the configs.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # the shared inputs; this file also runs as a script
from _fourbit_cases import launch_args, quantized_case, rel_err, run_under_interpreter

# (N, K, M, blocksize, dtype, nested, quant_type, config). Configs are (BN, BK, warps, SPLIT).
CASES = [
    (40, 128, 1, 64, torch.bfloat16, True, "nf4", (2, 64, 1, 1)),  # words path, ragged N
    (33, 256, 3, 32, torch.float16, False, "fp4", (4, 128, 1, 1)),  # K spans 2 steps
    (24, 96, 2, 32, torch.float32, True, "nf4", (2, 64, 1, 1)),  # K % BK != 0: masked tail
    (16, 512, 4, 256, torch.bfloat16, True, "fp4", (4, 64, 1, 1)),  # groups shorter than a block
    (20, 384, 2, 128, torch.float16, True, "nf4", (2, 64, 1, 3)),  # split-K into fp32 workspace
    (8, 1024, 1, 4096, torch.bfloat16, False, "nf4", (2, 256, 1, 1)),  # a block spans rows: bytes path
    (30, 200, 3, 128, torch.float16, True, "nf4", (4, 64, 1, 1)),  # K % blocksize != 0: bytes path
    (12, 770, 1, 32, torch.float32, False, "fp4", (2, 128, 1, 2)),  # odd K/2, bytes path, split
    (17, 66, 4, 64, torch.bfloat16, True, "nf4", (1, 32, 1, 1)),  # K/2 not a multiple of 4
    (9, 320, 2, 64, torch.bfloat16, True, "nf4", (4, 64, 1, 1, 1)),  # prefetch, 5 steps + tail
    (6, 512, 3, 32, torch.float16, False, "fp4", (2, 128, 1, 1, 1)),  # prefetch, plain absmax
    (5, 256, 1, 64, torch.float32, True, "nf4", (1, 64, 1, 2, 1)),  # prefetch within split-K ranges
    # permute decode (field 6; the interpreter runs its integer emulation, CUDA the PTX)
    (40, 128, 1, 64, torch.bfloat16, True, "nf4", (2, 64, 1, 1, 0, 1)),
    (33, 256, 3, 32, torch.float16, False, "fp4", (4, 128, 1, 1, 0, 1)),
    (9, 320, 2, 64, torch.bfloat16, True, "fp4", (4, 64, 1, 1, 1, 1)),  # with prefetch, tail step
    (20, 384, 4, 128, torch.float16, True, "nf4", (2, 64, 1, 3, 0, 1)),  # split-K
    (30, 200, 3, 128, torch.bfloat16, True, "nf4", (4, 64, 1, 1, 0, 1)),  # bytes path (gathers)
    (12, 256, 2, 64, torch.float32, True, "nf4", (2, 64, 1, 1, 0, 1)),  # fp32: gathers
    (7, 192, 1, 64, torch.bfloat16, False, "nf4", (1, 128, 1, 1, 1, 1)),  # BN=1, prefetch, tail
]


_TOL = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.2e-2}


def _interpreter_checks() -> None:
    from bnb_kernels.backends.reference import fourbit_matmul as ref
    from bnb_kernels.backends.triton import fourbit_gemv as G
    from bnb_kernels.codebooks import fourbit_table

    failures = []
    for i, (N, K, M, bs, dt, nested, qt, cfg) in enumerate(CASES):
        _, x, bias, q, extra = quantized_case(N, K, M, bs, dt, nested, qt, "cpu", seed=100 + i)
        expected = ref.gemm_4bit(x, q, [N, K], extra[0], bs, qt, bias, *extra[1:])
        lut = fourbit_table(qt, x.device)
        for words in (1, 0):
            for b in (bias, None):
                exp = expected if b is not None else ref.gemm_4bit(x, q, [N, K], extra[0], bs, qt, None, *extra[1:])
                out = torch.full((M, N), float("nan"), dtype=dt)
                G.gemv_launch(
                    cfg, x, q.reshape(-1), *launch_args(extra, nested), lut, b, out, N, K, bs, nested, words=bool(words)
                )
                err = rel_err(out, exp)
                if not torch.isfinite(out).all() or err > _TOL[dt]:
                    failures.append(f"case {i} {cfg} words={words} bias={b is not None}: rel err {err:.3g}")
    # The kernel launched directly with gemv_grid / gemv_constexprs (as a plan does).
    N, K, M, bs = 24, 256, 2, 64
    _, x, bias, q, extra = quantized_case(N, K, M, bs, torch.float16, True, "nf4", "cpu", seed=7)
    expected = ref.gemm_4bit(x, q, [N, K], extra[0], bs, "nf4", bias, *extra[1:])
    cfg = (2, 64, 1, 1)
    out = torch.empty((M, N), dtype=torch.float16)
    lut = G.aligned_lut(fourbit_table("nf4", x.device))
    kw = G.gemv_constexprs(cfg, M, K, bs, True, True)
    G.gemv_kernel[G.gemv_grid(cfg, M, N, K)](
        x, q.reshape(-1), *launch_args(extra, True), lut, bias, out, N, K, K, N, **kw
    )
    if rel_err(out, expected) > _TOL[torch.float16]:
        failures.append(f"direct launch: {rel_err(out, expected):.3g}")
    # A misaligned table and activation rows are copied, not misread.
    N, K, M, bs = 16, 128, 3, 64
    _, x, bias, q, extra = quantized_case(N, K, M, bs, torch.bfloat16, False, "fp4", "cpu", seed=8)
    expected = ref.gemm_4bit(x, q, [N, K], extra[0], bs, "fp4", bias, *extra[1:])
    lut_buf = torch.zeros(17)
    lut_buf[1:] = fourbit_table("fp4", x.device)
    xbuf = torch.zeros(M * K + 1, dtype=torch.bfloat16)
    xbuf[1:] = x.reshape(-1)
    x_odd = xbuf[1:].view(M, K)  # 2-byte aligned rows
    out = torch.empty((M, N), dtype=torch.bfloat16)
    G.gemv_launch(
        (2, 64, 1, 1), x_odd, q.reshape(-1), *launch_args(extra, False), lut_buf[1:], bias, out, N, K, bs, False
    )
    if rel_err(out, expected) > _TOL[torch.bfloat16]:
        failures.append(f"misaligned lut / x: {rel_err(out, expected):.3g}")
    if failures:
        raise SystemExit("FAILED:\n" + "\n".join(failures))
    print("gemv interpreter checks passed")


def test_gemv_kernel_under_interpreter() -> None:
    pytest.importorskip("triton")
    run_under_interpreter(__file__)


def test_configs_and_grid() -> None:
    pytest.importorskip("triton")
    from bnb_kernels.backends.triton import fourbit_gemv as G

    for key, configs in G.GEMV_CONFIGS.items():
        for cfg in configs:
            BN, BK, warps, split = cfg[:4]
            assert BK >= 32 and BK & (BK - 1) == 0 and BN & (BN - 1) == 0 and BN <= 4, (key, cfg)
            assert warps in (1, 2, 4, 8) and split >= 1 and len(cfg) in (4, 5, 6)
            grid = G.gemv_grid(cfg, 3, 1000, 4096)
            assert grid[0] * BN >= 1000 and grid[1] == 1 and 1 <= grid[2] <= split
            kw = G.gemv_constexprs(cfg, 2, 4096, 64, True, False)
            assert kw["PIPE"] == (len(cfg) > 4 and bool(cfg[4]))
            assert kw["DECODE"] == (1 if len(cfg) > 5 and cfg[5] else 0)  # not interpreting here
    for dt in (torch.float16, torch.bfloat16, torch.float32):
        for M in (1, 2, 3, 4):
            assert G.gemv_config(M, 4096, 4096, dt) in G.gemv_candidates(M, dt)
    assert any(len(c) > 5 and c[5] for c in G.gemv_candidates(1, torch.bfloat16))
    old = os.environ.get(G.PRMT_ENV)
    os.environ[G.PRMT_ENV] = "0"
    try:
        for M in (1, 4):
            cands = G.gemv_candidates(M, torch.float16)
            assert cands and not any(len(c) > 5 and c[5] for c in cands)
    finally:
        if old is None:
            del os.environ[G.PRMT_ENV]
        else:
            os.environ[G.PRMT_ENV] = old
    with pytest.raises(ValueError, match="1 to 4"):
        G.gemv_constexprs((2, 4096, 4, 1), 5, 4096, 64, False, False)
    x = torch.zeros(1, 33)
    with pytest.raises(ValueError, match="even K"):
        G.gemv_launch((2, 64, 1, 1), x, x, x, x, x, x, x, None, x, 4, 33, 32, False)
    assert G.gemv_x_ok(torch.zeros(2, 64, dtype=torch.bfloat16))
    assert not G.gemv_x_ok(torch.zeros(2 * 64 + 1, dtype=torch.bfloat16)[1:].view(2, 64))
    # rows of whole 16-byte units (the permute path's 128-bit loads) must be 16-byte aligned
    buf = torch.zeros(2 * 64 + 8, dtype=torch.bfloat16)
    base = (-buf.data_ptr() % 16) // 2
    assert G.gemv_x_ok(buf[base : base + 128].view(2, 64))
    assert not G.gemv_x_ok(buf[base + 4 : base + 132].view(2, 64))  # 8-byte aligned
    assert G.gemv_x_ok(torch.zeros(2 * 66 + 2, dtype=torch.bfloat16)[2:].view(2, 66))  # 132-byte rows: 4-byte rule


def test_permute_decode_matches_table_lookup() -> None:
    """The PTX text of the permute decode (run by a small interpreter of its instructions)
    equals a plain lookup in the fp16-rounded table, for random words and every byte."""
    from bnb_kernels.backends.triton import fourbit_decode as D
    from bnb_kernels.codebooks import fourbit_table

    g = torch.Generator().manual_seed(1)
    words = torch.randint(-(2**31), 2**31 - 1, (4000,), generator=g, dtype=torch.int64).to(torch.int32)
    # every byte value in every position of a word
    b = torch.arange(256, dtype=torch.int64)
    words = torch.cat([words, (b | (b << 8) | (b << 16) | (b << 24)).to(torch.int32), (b << 24).to(torch.int32)])
    tables = [fourbit_table("nf4", "cpu"), fourbit_table("fp4", "cpu"), torch.randn(16, generator=g)]
    for lut in tables:
        planes = D.fp16_planes(lut)
        assert all(0 <= p < 2**32 for p in planes)
        got = D.decode_reference(words, planes)
        want = D.lookup_reference(words, lut)
        assert torch.equal(got, want)
        assert (want - lut.reshape(-1).float()[0]).abs().max() <= 2.0 * lut.abs().max() + 1e-6
        # the code values are within fp16 rounding of the table
        exact = lut.float()[(words.to(torch.int64) & 0xFF) >> 4]
        assert torch.allclose(want[:, 0], exact, rtol=2**-11, atol=0)


def test_prmt_reference_semantics() -> None:
    """prmt_reference against hand-checked PTX examples (generic mode, sign replicate)."""
    from bnb_kernels.backends.triton.fourbit_decode import prmt_reference

    def t(v: int) -> torch.Tensor:
        return torch.tensor([v], dtype=torch.int64)

    a, b = t(0x03020100), t(0x07060504)
    assert prmt_reference(a, b, t(0x7531)).item() == 0x07050301
    assert prmt_reference(a, b, t(0x3210)).item() == 0x03020100
    assert prmt_reference(a, b, t(0x0044)).item() == 0x00000404
    neg = t(0x80017F00)
    # selector nibble 8 + i: the sign of byte i replicated
    assert prmt_reference(neg, b, t(0xBA98)).item() == 0xFF000000
    assert prmt_reference(neg, b, t(0x3210 | 0x10000)).item() == 0x80017F00  # upper bits ignored


if __name__ == "__main__":
    _interpreter_checks()
