"""The tensor-core 4-bit GEMV (``backends/triton/fourbit_mma.py``) against the reference.

Without a GPU: the PTX of its MMA chain and decode runs in ``ptx_emulator`` on the exact
fragments the kernel builds, and the kernel itself runs under the Triton interpreter (in a
subprocess: this file run as a script) with the same MMA emulated by tensor ops.
``scripts/gpu-check-mma.py`` runs the comparison at full size on a GPU.
"""

from __future__ import annotations

import os
import sys

import pytest
import torch

sys.path.insert(0, os.path.dirname(__file__))  # the shared inputs; this file also runs as a script
from _fourbit_cases import launch_args, quantized_case, rel_err, run_under_interpreter

# (N, K, M, blocksize, dtype, nested, quant_type, config (WARPS, SPLIT, CH[, MAXNREG, PIPE, ILV]))
CASES = [
    (40, 128, 1, 64, torch.bfloat16, True, "nf4", (1, 1, 1)),  # ragged N, 2 chunks
    (33, 256, 3, 64, torch.float16, False, "fp4", (2, 1, 2)),  # 3 tokens, 2 chunks per iteration
    (64, 384, 8, 128, torch.bfloat16, True, "nf4", (1, 1, 4, 128)),  # 6 chunks in 2 groups of 4
    (24, 512, 9, 256, torch.float16, True, "nf4", (1, 3, 2)),  # second token tile, split-K, tail chunk
    (50, 320, 16, 64, torch.bfloat16, False, "nf4", (2, 2, 1)),  # 16 tokens, split
    (16, 64, 2, 64, torch.bfloat16, True, "fp4", (1, 1, 4)),  # one chunk, 3 past the end
    (80, 256, 5, 64, torch.float16, True, "fp4", (2, 4, 1)),  # split into single chunks
    (48, 640, 4, 64, torch.bfloat16, True, "nf4", (1, 1, 4, 0, 1)),  # next group prefetched, tail group
    (40, 512, 12, 128, torch.float16, False, "nf4", (2, 2, 2, 0, 1)),  # prefetch within split ranges
    (24, 704, 1, 64, torch.bfloat16, True, "nf4", (1, 3, 2, 0, 0, 1)),  # interleaved split, 11 chunks
    (40, 1024, 7, 64, torch.float16, True, "fp4", (2, 2, 4, 0, 1, 1)),  # interleaved with prefetch
]
_TOL = {torch.float16: 2e-3, torch.bfloat16: 1.2e-2}


def _interpreter_checks() -> None:
    from bnb_kernels.backends.reference import fourbit_matmul as ref
    from bnb_kernels.backends.triton import fourbit_mma as T
    from bnb_kernels.codebooks import fourbit_table

    failures = []
    for i, (N, K, M, bs, dt, nested, qt, cfg) in enumerate(CASES):
        _, x, bias, q, extra = quantized_case(N, K, M, bs, dt, nested, qt, "cpu", seed=200 + i)
        lut = fourbit_table(qt, x.device)
        for b in (bias, None):
            expected = ref.gemm_4bit(x, q, [N, K], extra[0], bs, qt, b, *extra[1:])
            out = torch.full((M, N), float("nan"), dtype=dt)
            T.mma_launch(cfg, x, q.reshape(-1), *launch_args(extra, nested), lut, b, out, N, K, bs, nested)
            err = rel_err(out, expected)
            if not torch.isfinite(out).all() or err > _TOL[dt]:
                failures.append(f"case {i} {cfg} bias={b is not None}: rel err {err:.3g}")
    if failures:
        raise SystemExit("FAILED:\n" + "\n".join(failures))
    print("mma interpreter checks passed")


def test_mma_kernel_under_interpreter() -> None:
    pytest.importorskip("triton")
    run_under_interpreter(__file__)


def _lane_fragments(Wc: torch.Tensor, Xc: torch.Tensor, dtype: torch.dtype) -> dict[str, torch.Tensor]:
    """The registers of MMA_ASM for one 64-feature chunk, as the kernel builds them: lane
    4g + t holds rows g and g + 8 of ``Wc`` [16, 64] and token g of ``Xc`` [8, 64] at
    features 16t .. 16t + 15, as pair words (feature 2i, 2i + 1 in pair i)."""
    from bnb_kernels.backends.triton.ptx_emulator import bits16

    regs = {}
    lanes = torch.arange(32)
    g, t = lanes // 4, lanes % 4
    feats = (16 * t)[:, None] + torch.arange(16)[None, :]  # [32, 16]

    def pairs(rows: torch.Tensor, src: torch.Tensor) -> torch.Tensor:  # [32, 8] pair words
        v = bits16(src[rows[:, None], feats], dtype)
        return v[:, 0::2] | (v[:, 1::2] << 16)

    P, Q, X = pairs(g, Wc), pairs(g + 8, Wc), pairs(g, Xc)
    for i in range(8):
        regs[f"${4 + i}"] = P[:, i]
        regs[f"${12 + i}"] = Q[:, i]
        regs[f"${20 + i}"] = X[:, i]
    return regs


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_mma_chain_ptx_is_the_chunk_product(dtype) -> None:
    """The PTX text of the four MMAs, run on the kernel's fragments, gives lane 4g + t the
    products of rows g, g + 8 with tokens 2t, 2t + 1 over the whole chunk."""
    from bnb_kernels.backends.triton.fourbit_mma import MMA_ASM
    from bnb_kernels.backends.triton.ptx_emulator import run_ptx

    g_ = torch.Generator().manual_seed(3)
    for _ in range(3):
        Wc = torch.randn(16, 64, generator=g_).to(dtype)
        Xc = torch.randn(8, 64, generator=g_).to(dtype)
        regs = run_ptx(MMA_ASM[dtype], _lane_fragments(Wc, Xc, dtype))
        D = Wc.double() @ Xc.double().T  # [16 rows, 8 tokens]
        lanes = torch.arange(32)
        g, t = lanes // 4, lanes % 4
        for reg, (row, tok) in enumerate(((g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1))):
            torch.testing.assert_close(regs[f"${reg}"].double(), D[row, tok], rtol=1e-5, atol=1e-4)


def test_mma_emulator_rejects_a_partial_warp() -> None:
    from bnb_kernels.backends.triton.fourbit_mma import MMA_ASM
    from bnb_kernels.backends.triton.ptx_emulator import run_ptx

    regs = {f"${i}": torch.zeros(16, dtype=torch.int64) for i in range(4, 28)}
    with pytest.raises(ValueError, match="32 lanes"):
        run_ptx(MMA_ASM[torch.bfloat16], regs)


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_raw_pair_decode_ptx_matches_the_table(quant_type, dtype) -> None:
    from bnb_kernels.backends.triton import fourbit_decode as D
    from bnb_kernels.codebooks import fourbit_table

    lut = fourbit_table(quant_type, torch.device("cpu"))
    planes = D.pair_planes(lut, dtype)
    every_byte = torch.arange(256, dtype=torch.int64)
    words = torch.cat([every_byte * 0x01010101, torch.randint(0, 2**32, (500,), dtype=torch.int64)])
    got = D.decode_pairs_raw_reference(words, planes, dtype)
    assert torch.equal(got, D.lookup_pairs_reference(words, lut, torch.ones(1), dtype))


def test_configs_grid_and_eligibility() -> None:
    pytest.importorskip("triton")
    from bnb_kernels.backends.triton import fourbit_mma as T

    for M in (1, 8, 9, 16):
        for N, K in ((4096, 4096), (28672, 8192), (40, 128)):
            cands = T.mma_candidates(M, N, K)
            assert T.mma_config(M, N, K) in cands
            for cfg in cands:
                warps, split, ch, regs, pipe, ilv = cfg
                grid = T.mma_grid(cfg, N, K)
                rows, parts = (grid[1], grid[0]) if ilv else grid
                assert rows == T.mma_row_programs(cfg, N) and rows * 16 * warps >= N
                assert 1 <= parts <= min(split, max(1, K // 64)) and (parts >= 2 or not ilv or K < 128)
                kw = T.mma_constexprs(cfg, M, K, 64, True, False)
                assert kw["TT"] == (1 if M <= 8 else 2) and kw["num_warps"] == warps
                assert kw["CH"] == ch and kw["SPLIT"] == parts and regs in (0, 96, 128, 168)
                assert kw["PIPE"] == bool(pipe) and kw["ILV"] == bool(ilv)
                if regs and T._HAS_MAXNREG:
                    assert kw["maxnreg"] == regs + (40 if M > 8 else 0)
    assert T.mma_ok(16, 4096, 64, torch.bfloat16)
    assert not T.mma_ok(17, 4096, 64, torch.bfloat16)
    assert not T.mma_ok(1, 4096, 32, torch.bfloat16)  # a chunk would straddle two blocks
    assert not T.mma_ok(1, 4000, 64, torch.float16)
    assert not T.mma_ok(1, 4096, 64, torch.float32)
    with pytest.raises(ValueError, match="1 to 16"):
        T.mma_constexprs((4, 1, 1), 17, 4096, 64, False, False)
    with pytest.raises(ValueError, match="chunks per iteration"):
        T.mma_constexprs((4, 1, 3), 1, 4096, 64, False, False)


if __name__ == "__main__":
    _interpreter_checks()
