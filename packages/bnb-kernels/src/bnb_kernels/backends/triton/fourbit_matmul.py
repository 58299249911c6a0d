"""Triton 4-bit matmul (CUDA): the packed weight is read once and dequantized in registers.

Three paths, chosen per (M bucket, N, K, dtype) — by timing the candidates on the first
call for that key on a GPU (``BNB_4BIT_AUTOTUNE=0`` turns this off and uses the built-in
heuristic), and by the heuristic under the interpreter or during CUDA graph capture:

- ``gemv`` (1-4 tokens): ``fourbit_gemv.gemv_kernel``, pure weight bandwidth on the CUDA
  cores, one program for all token rows.
- ``dot`` (2 to a few hundred tokens): ``_gemm_kernel``, the weight tile decoded in registers
  and fed to the tensor cores as the A operand of a transposed product (tokens on the MMA's
  N side, 16 of them fill it); optional split-K reduced in-kernel. Decode 5 (config field 8)
  reads the weight as int32 words and decodes them with byte permutes from the code table
  held in registers as bf16/fp16 bit patterns (``fourbit_decode.decode_pairs``, inline PTX;
  its integer emulation under the interpreter): packed pairs in the MMA's dtype, scaled by
  one packed multiply, about 3 instructions per weight element instead of 7-8.
- ``dequant``: decode the whole weight to the activation dtype (one fused kernel that also
  decodes the nested absmax) and call cuBLAS — for large M, where the matmul is compute
  bound and cuBLAS wins. (``dequant_chunked`` does it in L2-sized row chunks; measured
  slower, kept for explicit use.)

After a plan's first launch through Triton, its compiled kernel is launched directly
(``_fast_launch``), which takes most of Triton's per-call host time away.

Nested absmax (``absmax_8bit``/``absmax_code``/``absmax_offset``) is decoded inside each
kernel; there is no extra launch. Codes index the 16-entry table of ``quant_type``.
"""

# No `from __future__ import annotations` here: Triton 3.0's interpreter recognizes
# `tl.constexpr` parameters only when the annotation is the object, not a string.
import inspect
import math
import os
import warnings
from collections.abc import Sequence
from functools import partial

import torch

from ..._registry import register
from ...codebooks import fourbit_table
from ...ops.fourbit_matmul import NESTED_BLOCKSIZE, check_gemm_4bit_args
from ..reference import fourbit_matmul as _ref
from . import fourbit_decode as _dec
from . import fourbit_gemv as _gemv
from . import fourbit_mma as _mma
from ._common import (
    HAS_TRITON,
    available,
    compile_ahead,
    current_stream,
    device_guard,
    direct_launch,
    direct_launch_supported,
    interpreting,
    tl,
    triton,
)

__all__ = ["gemm_4bit", "gemv_4bit", "gemv_4bit_out", "launch", "prepare_gemm_4bit", "select_config", "tuned_configs"]

AUTOTUNE_ENV = "BNB_4BIT_AUTOTUNE"
FAST_LAUNCH_ENV = "BNB_4BIT_FAST_LAUNCH"

if HAS_TRITON:

    @triton.jit
    def _block_scale(blk, mask, absmax_ptr, a8_ptr, code2_ptr, offset, NESTED: tl.constexpr):
        if NESTED:
            q = tl.load(a8_ptr + blk, mask=mask, other=0).to(tl.int32)
            s = tl.load(code2_ptr + q) * tl.load(absmax_ptr + blk // 256, mask=mask, other=0.0) + offset
        else:
            s = tl.load(absmax_ptr + blk, mask=mask, other=0.0)
        return s

    @triton.jit
    def _pair_table(lut_ptr, DT: tl.constexpr, LUT: tl.constexpr):
        """The table the dot kernel's decode gathers from (built once per program):
        LUT 1: the 16 fp32 values; LUT 3: per byte, its two values in ``DT`` packed in an
        int32 (high nibble's in the low half); LUT 4: per byte, its two fp32 values packed
        in an int64 (high nibble's in the low word)."""
        lut = tl.load(lut_ptr + tl.arange(0, 16))
        if LUT == 1:
            table = lut
        else:
            i = tl.arange(0, 256)
            if LUT == 3:
                ld = lut.to(DT)
                h = tl.gather(ld, i >> 4, 0).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
                lo = tl.gather(ld, i & 15, 0).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
                table = h | (lo << 16)
            else:
                h = tl.gather(lut, i >> 4, 0).to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF
                lo = tl.gather(lut, i & 15, 0).to(tl.int32, bitcast=True).to(tl.int64) & 0xFFFFFFFF
                table = h | (lo << 32)
        return table

    @triton.jit
    def _decode_bytes(
        b, s, table, lut_ptr, DT: tl.constexpr, LUT: tl.constexpr, D0: tl.constexpr, D1: tl.constexpr, D2: tl.constexpr
    ):
        """Values (in ``DT``) of the [D0, D1, D2] bytes ``b`` times their scales ``s``, as a
        [D0, D1, D2, 2] tensor: (high nibble, low nibble) of each byte. LUT 0: two loads from
        the 16-entry table in global memory (Triton < 3.2, no tl.gather); 1: one gather of
        both nibbles from it; 3: one gather of a packed pair per byte, scaled in ``DT``; 4:
        one gather of an fp32 pair per byte, scaled in fp32. (5: ``_decode_words``.)"""
        c = b.to(tl.int32)
        if LUT == 0:
            hi = (tl.load(lut_ptr + (c >> 4)) * s).to(DT)
            lo = (tl.load(lut_ptr + (c & 15)) * s).to(DT)
            v = tl.join(hi, lo)
        elif LUT == 1:
            # one gather (one table store and barrier) for both nibbles of every byte
            idx = tl.reshape(tl.join(c >> 4, c & 15), (D0 * D1 * D2 * 2,))
            vals = tl.reshape(tl.gather(table, idx, 0), (D0, D1, D2, 2))
            v = (vals * s[:, :, :, None]).to(DT)
        elif LUT == 3:
            pv = tl.reshape(tl.gather(table, tl.reshape(c, (D0 * D1 * D2,)), 0), (D0, D1, D2))
            sd = s.to(DT)
            hi = (pv & 0xFFFF).to(tl.int16).to(DT, bitcast=True) * sd
            lo = (pv >> 16).to(tl.int16).to(DT, bitcast=True) * sd
            v = tl.join(hi, lo)
        else:
            pv = tl.reshape(tl.gather(table, tl.reshape(c, (D0 * D1 * D2,)), 0), (D0, D1, D2))
            hi = (pv.to(tl.int32).to(tl.float32, bitcast=True) * s).to(DT)
            lo = ((pv >> 32).to(tl.int32).to(tl.float32, bitcast=True) * s).to(DT)
            v = tl.join(hi, lo)
        return v

    @triton.jit
    def _load_step(
        kb, w_ptr, row_byte, x_cols, kp, absmax_ptr, a8_ptr, code2_ptr, offset, HALF_K,
        BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr, ALIGNED: tl.constexpr, EVEN_K: tl.constexpr,
        BN: tl.constexpr, BK: tl.constexpr, NB: tl.constexpr, SB: tl.constexpr, WORDS: tl.constexpr = False,
    ):  # fmt: skip
        """One K step's inputs for the fragment-order decode: the [BN, NB, SB] byte tile
        (16-byte loads), its scales and the [BK, BM] activation tile in the permuted K
        order. WORDS (K/2 a multiple of 4): the tile as [BN, NB, SB/4] int32 words instead,
        with one scale per group, or per word when a row does not start on a block."""
        HB: tl.constexpr = BK // 2
        rg = tl.arange(0, NB)
        if WORDS:
            SW: tl.constexpr = SB // 4
            jw = kb // 4 + tl.arange(0, HB // 4)[None, :]
            wq = w_ptr.to(tl.pointer_type(tl.int32)) + (row_byte // 4)[:, None]
            if EVEN_K:
                b2 = tl.load(wq + jw)
            else:
                b2 = tl.load(wq + jw, mask=jw < HALF_K // 4, other=0)
            b = tl.reshape(b2, (BN, NB, SW))
            if ALIGNED:
                g0 = kb + rg * SB
                blk = (row_byte[:, None] + g0[None, :]) // (BLOCKSIZE // 2)
                s = _block_scale(blk, (g0 < HALF_K)[None, :], absmax_ptr, a8_ptr, code2_ptr, offset, NESTED)[:, :, None]
            else:
                # words never straddle a block (blocks are >= 16 bytes, words 4-aligned)
                j3 = kb + rg[None, :, None] * SB + 4 * tl.arange(0, SW)[None, None, :]
                s = _block_scale(
                    (row_byte[:, None, None] + j3) // (BLOCKSIZE // 2), j3 < HALF_K,
                    absmax_ptr, a8_ptr, code2_ptr, offset, NESTED,
                )  # fmt: skip
        else:
            j2 = kb + tl.arange(0, HB)[None, :]
            if EVEN_K:
                b2 = tl.load(w_ptr + row_byte[:, None] + j2)
            else:
                b2 = tl.load(w_ptr + row_byte[:, None] + j2, mask=j2 < HALF_K, other=0)
            b = tl.reshape(b2, (BN, NB, SB))
            if ALIGNED:
                g0 = kb + rg * SB
                blk = (row_byte[:, None] + g0[None, :]) // (BLOCKSIZE // 2)
                s = _block_scale(blk, (g0 < HALF_K)[None, :], absmax_ptr, a8_ptr, code2_ptr, offset, NESTED)[:, :, None]
            else:
                j3 = kb + rg[None, :, None] * SB + tl.arange(0, SB)[None, None, :]
                s = _block_scale(
                    (row_byte[:, None, None] + j3) // (BLOCKSIZE // 2), j3 < HALF_K,
                    absmax_ptr, a8_ptr, code2_ptr, offset, NESTED,
                )  # fmt: skip
        if WORDS:
            kk = 2 * kb + tl.arange(0, BK)
        else:
            kk = 2 * kb + kp
        if EVEN_K:
            xt = tl.load(x_cols + kk[:, None])
        else:
            xt = tl.load(x_cols + kk[:, None], mask=(kk < 2 * HALF_K)[:, None], other=0.0)
        if WORDS:
            BMX: tl.constexpr = xt.shape[1]
            xt = tl.reshape(tl.permute(tl.reshape(xt, (4, 16, 2, BMX)), (1, 0, 2, 3)), (BK, BMX))
        return b, s, xt

    @triton.jit
    def _decode_words(
        wd, s, l0, l1, l2, l3, h0, h1, h2, h3, DT: tl.constexpr, ASM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr
    ):
        """LUT 5: the [BN, NB, SW] words ``wd`` decoded by byte permutes from the table in
        registers (``fourbit_decode.decode_pairs``: already ``DT`` pairs, scaled by a packed
        multiply by the ``DT`` scale ``s``) as the [BN, BK] tile (element 2j: high nibble of
        byte j)."""
        sp = s.to(DT).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
        sp = tl.broadcast_to(sp | (sp << 16), wd.shape)
        p0, p1, p2, p3 = _dec.decode_pairs(wd, l0, l1, l2, l3, h0, h1, h2, h3, sp, DT, ASM)
        # join(join(p0, p2), join(p1, p3))[..., a, b] = p[2a + b]: bytes in memory order
        pp = tl.reshape(tl.join(tl.join(p0, p2), tl.join(p1, p3)), (BN, BK // 2))
        lo = (pp & 0xFFFF).to(tl.int16).to(DT, bitcast=True)
        hi = (pp >> 16).to(tl.int16).to(DT, bitcast=True)
        return tl.reshape(tl.join(lo, hi), (BN, BK))

    @triton.jit
    def _gemm_kernel(
        x_ptr, w_ptr, absmax_ptr, a8_ptr, code2_ptr, offset_ptr, lut_ptr, bias_ptr, out_ptr, ws_ptr, cnt_ptr,
        M, N, HALF_K, stride_xm, stride_om,
        BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr, HAS_BIAS: tl.constexpr, ALIGNED: tl.constexpr,
        BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, SPLIT_K: tl.constexpr, EVEN_K: tl.constexpr,
        LUT: tl.constexpr, PERM: tl.constexpr = False, WARPS: tl.constexpr = 4, PF: tl.constexpr = False,
        ASM: tl.constexpr = True,
    ):  # fmt: skip
        """``out[m, n] = sum_k x[m, k] W[n, k]`` computed transposed: a [BN weight rows, BM
        tokens] tile per program, so the decoded weight is the tensor cores' A operand (taken
        from registers) and as few as 16 tokens fill the MMA's N side. The packed [BN, BK/2]
        byte tile is read once with 16-byte loads; each byte gives two codes, looked up in the
        16-entry table, scaled by their block's absmax (one per [row, block], nested absmax
        decoded here) and interleaved back to K order. PERM (BK = 128, BN = 16 * WARPS):
        the tile's rows and K are renumbered (x is read in the same K order, the output
        rows are mapped back) so that the values each thread decodes from its own 16 bytes
        are exactly the MMA's A fragment: no shared-memory round trip for the decoded
        weight. PF (with PERM, num_stages=1): the next step's inputs are loaded into
        registers during this step instead of staged through shared memory by the
        pipeliner. LUT 5 (PERM only): the tile read as int32 words, decoded by byte
        permutes (``_decode_words``), the activations read in K order and permuted in
        registers. SPLIT_K programs share the K range:
        each writes its fp32 partial to ``ws``; the last one to finish a tile (a counter per
        tile, reset to zero after use) adds them up and writes ``out``."""
        HB: tl.constexpr = BK // 2
        SUB: tl.constexpr = BK if BK < BLOCKSIZE else BLOCKSIZE
        NB: tl.constexpr = BK // SUB
        SB: tl.constexpr = SUB // 2
        BPB: tl.constexpr = BLOCKSIZE // 2
        DT = x_ptr.dtype.element_ty
        pid_n = tl.program_id(0)
        pid_m = tl.program_id(1)
        pid_k = tl.program_id(2)
        rn = pid_n * BN + tl.arange(0, BN)
        rm = pid_m * BM + tl.arange(0, BM)
        # Rows past N / tokens past M read valid memory (clamped) and are never stored:
        # no masks on the hot loads.
        row_byte = tl.minimum(rn, N - 1).to(tl.int64) * HALF_K
        if PERM:
            # the output row of the accumulator's row n' ((warp, register, lane) order)
            rq = tl.arange(0, BN)
            rn = pid_n * BN + ((rq >> 3) & 1) * (8 * WARPS) + (rq >> 4) * 8 + (rq & 7)
        x_cols = x_ptr + tl.minimum(rm, M - 1).to(tl.int64)[None, :] * stride_xm
        if NESTED:
            offset = tl.load(offset_ptr).to(tl.float32)
        else:
            offset = 0.0
        if LUT == 0:
            table = 0.0
        elif LUT == 5:
            # the 16 codes as DT bit patterns in 8 registers (byte planes) for the permutes
            table = 0.0
            l0, l1, l2, l3, h0, h1, h2, h3 = _dec.table_planes16(lut_ptr, DT)
        else:
            table = _pair_table(lut_ptr, DT, LUT)
        per = tl.cdiv(tl.cdiv(HALF_K, HB), SPLIT_K) * HB
        kb0 = pid_k * per
        kb1 = tl.minimum(HALF_K, kb0 + per)
        rg = tl.arange(0, NB)
        rt = tl.arange(0, SB)
        rk = tl.arange(0, BK)
        acc = tl.zeros((BN, BM), dtype=tl.float32)
        if PERM:
            # physical K of logical k' = (byte in chunk, chunk of 16 bytes, nibble) order
            kp = ((rk >> 1) & 3) * 32 + (rk >> 3) * 2 + (rk & 1)
            kp = tl.max_contiguous(tl.multiple_of(kp, 2), 2)  # (even, odd) pairs stay adjacent
        else:
            kp = rk
        if PF:
            # num_stages=1 and the next step's bytes, scales and activations loaded into
            # registers while this step decodes (no shared-memory staging of the bytes)
            if EVEN_K:
                kn = tl.minimum(kb0, HALF_K - HB)  # clamped: in bounds, never used past kb1
            else:
                kn = kb0
            b_n, s_n, x_n = _load_step(
                kn, w_ptr, row_byte, x_cols, kp, absmax_ptr, a8_ptr, code2_ptr, offset, HALF_K,
                BLOCKSIZE, NESTED, ALIGNED, EVEN_K, BN, BK, NB, SB, LUT == 5,
            )  # fmt: skip
            for kb in range(kb0, kb1, HB):
                b = b_n
                s = s_n
                xt = x_n
                if EVEN_K:
                    kn = tl.minimum(kb + HB, HALF_K - HB)
                else:
                    kn = kb + HB
                b_n, s_n, x_n = _load_step(
                    kn, w_ptr, row_byte, x_cols, kp, absmax_ptr, a8_ptr, code2_ptr, offset, HALF_K,
                    BLOCKSIZE, NESTED, ALIGNED, EVEN_K, BN, BK, NB, SB, LUT == 5,
                )  # fmt: skip
                if LUT == 5:
                    w = _decode_words(b, s, l0, l1, l2, l3, h0, h1, h2, h3, DT, ASM, BN, BK)
                else:
                    w = tl.reshape(_decode_bytes(b, s, table, lut_ptr, DT, LUT, BN, NB, SB), (BN, BK))
                w = tl.reshape(w, (2, WARPS, 8, 4, 16, 2))
                w = tl.reshape(tl.permute(w, (1, 0, 2, 4, 3, 5)), (BN, BK))
                acc = tl.dot(w, xt, acc)
        elif LUT == 5:
            # (PERM only) words decoded by permutes; the pipeliner stages the loads
            for kb in range(kb0, kb1, HB):
                b, s, xt = _load_step(
                    kb, w_ptr, row_byte, x_cols, kp, absmax_ptr, a8_ptr, code2_ptr, offset, HALF_K,
                    BLOCKSIZE, NESTED, ALIGNED, EVEN_K, BN, BK, NB, SB, True,
                )  # fmt: skip
                w = _decode_words(b, s, l0, l1, l2, l3, h0, h1, h2, h3, DT, ASM, BN, BK)
                w = tl.reshape(w, (2, WARPS, 8, 4, 16, 2))
                w = tl.reshape(tl.permute(w, (1, 0, 2, 4, 3, 5)), (BN, BK))
                acc = tl.dot(w, xt, acc)
        else:
            for kb in range(kb0, kb1, HB):
                j3 = kb + rg[None, :, None] * SB + rt[None, None, :]  # [1, NB, SB] byte in row
                if PERM:
                    j2 = kb + tl.arange(0, HB)[None, :]
                    if EVEN_K:
                        b2 = tl.load(w_ptr + row_byte[:, None] + j2)
                    else:
                        b2 = tl.load(w_ptr + row_byte[:, None] + j2, mask=j2 < HALF_K, other=0)
                    b = tl.reshape(b2, (BN, NB, SB))
                elif EVEN_K:
                    b = tl.load(w_ptr + row_byte[:, None, None] + j3)
                else:
                    b = tl.load(w_ptr + row_byte[:, None, None] + j3, mask=j3 < HALF_K, other=0)
                if ALIGNED:
                    g0 = kb + rg * SB
                    blk = (row_byte[:, None] + g0[None, :]) // BPB
                    gm = (g0 < HALF_K)[None, :]
                    s = _block_scale(blk, gm, absmax_ptr, a8_ptr, code2_ptr, offset, NESTED)[:, :, None]
                else:
                    s = _block_scale(
                        (row_byte[:, None, None] + j3) // BPB,
                        j3 < HALF_K,
                        absmax_ptr,
                        a8_ptr,
                        code2_ptr,
                        offset,
                        NESTED,
                    )
                v = _decode_bytes(b, s, table, lut_ptr, DT, LUT, BN, NB, SB)
                w = tl.reshape(v, (BN, BK))  # element 2j: high nibble of byte j
                if PERM:
                    w = tl.reshape(w, (2, WARPS, 8, 4, 16, 2))
                    w = tl.reshape(tl.permute(w, (1, 0, 2, 4, 3, 5)), (BN, BK))
                kk = 2 * kb + kp
                if EVEN_K:
                    xt = tl.load(x_cols + kk[:, None])
                else:
                    # zeros past K: the padded codes decode to finite values times 0
                    xt = tl.load(x_cols + kk[:, None], mask=(kk < 2 * HALF_K)[:, None], other=0.0)
                acc = tl.dot(w, xt, acc)
        nmask = rn < N
        omask = nmask[:, None] & (rm < M)[None, :]
        optrs = out_ptr + rm.to(tl.int64)[None, :] * stride_om + rn[:, None]
        if SPLIT_K == 1:
            if HAS_BIAS:
                acc += tl.load(bias_ptr + rn, mask=nmask, other=0.0).to(tl.float32)[:, None]
            tl.store(optrs, acc.to(out_ptr.dtype.element_ty), mask=omask)
        else:
            MN = M * N
            wptrs = ws_ptr + rm.to(tl.int64)[None, :] * N + rn[:, None]
            tl.store(wptrs + pid_k * MN, acc, mask=omask)
            tl.debug_barrier()  # every thread's partial is written before the counter moves
            tile = pid_m * tl.num_programs(0) + pid_n
            done = tl.atomic_add(cnt_ptr + tile, 1, sem="acq_rel")
            if done == SPLIT_K - 1:
                res = tl.zeros((BN, BM), dtype=tl.float32)
                for i in range(SPLIT_K):  # not unrolled: one partial tile live at a time
                    res += tl.load(wptrs + i * MN, mask=omask, other=0.0, cache_modifier=".cg")
                if HAS_BIAS:
                    res += tl.load(bias_ptr + rn, mask=nmask, other=0.0).to(tl.float32)[:, None]
                tl.store(optrs, res.to(out_ptr.dtype.element_ty), mask=omask)
                tl.atomic_xchg(cnt_ptr + tile, 0)  # ready for the next launch

    @triton.jit
    def _dequant_kernel(
        w_ptr, absmax_ptr, a8_ptr, code2_ptr, offset_ptr, lut_ptr, out_ptr, n_bytes,
        BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr, R: tl.constexpr, SB: tl.constexpr,
    ):  # fmt: skip
        # A [R, SB] byte tile; SB divides BLOCKSIZE / 2, so each row has one scale.
        pid = tl.program_id(0)
        rows = pid.to(tl.int64) * R + tl.arange(0, R)
        start = rows * SB
        j = start[:, None] + tl.arange(0, SB)[None, :]
        mask = j < n_bytes
        if NESTED:
            offset = tl.load(offset_ptr).to(tl.float32)
        else:
            offset = 0.0
        b = tl.load(w_ptr + j, mask=mask, other=0).to(tl.int32)
        s = _block_scale(start * 2 // BLOCKSIZE, start < n_bytes, absmax_ptr, a8_ptr, code2_ptr, offset, NESTED)
        DT = out_ptr.dtype.element_ty
        hv = (tl.load(lut_ptr + (b >> 4)) * s[:, None]).to(DT)
        lv = (tl.load(lut_ptr + (b & 15)) * s[:, None]).to(DT)
        pairs = tl.reshape(tl.interleave(hv, lv), (R * 2 * SB,))
        o = pid.to(tl.int64) * (R * 2 * SB) + tl.arange(0, R * 2 * SB)
        tl.store(out_ptr + o, pairs, mask=o < 2 * n_bytes)


# ------------------------------------------------------------------------------------------
# Launch helpers


class _Meta:
    """Decoded launch arguments of one quantized weight (cheap to build, cached by callers)."""

    __slots__ = ("a8", "absmax", "blocksize", "code2", "configs", "lut", "nested", "offset")

    def __init__(self, absmax, a8, code2, offset, lut, nested, blocksize):
        self.configs: dict[tuple, tuple] = {}
        self.absmax = absmax
        self.a8 = a8
        self.code2 = code2
        self.offset = offset
        self.lut = lut
        self.nested = nested
        self.blocksize = blocksize


_LUTS: dict[tuple[str, torch.device], torch.Tensor] = {}


def _lut(quant_type: str, device: torch.device) -> torch.Tensor:
    key = (quant_type, device)
    t = _LUTS.get(key)
    if t is None:
        t = _LUTS[key] = fourbit_table(quant_type, device)
    return t


def _make_meta(
    absmax: torch.Tensor,
    blocksize: int,
    lut: torch.Tensor,
    absmax_8bit: torch.Tensor | None,
    absmax_code: torch.Tensor | None,
    absmax_offset: torch.Tensor | None,
) -> _Meta:
    if absmax_8bit is None:
        if absmax.dtype != torch.float32:
            absmax = absmax.float()
        return _Meta(absmax, absmax, absmax, absmax, lut, False, blocksize)
    offset = absmax_offset
    if not isinstance(offset, torch.Tensor) or offset.dtype != torch.float32 or offset.device != absmax.device:
        offset = torch.as_tensor(offset, dtype=torch.float32, device=absmax.device)
    code2 = absmax_code if absmax_code.dtype == torch.float32 else absmax_code.float()
    amax = absmax if absmax.dtype == torch.float32 else absmax.float()
    return _Meta(amax, absmax_8bit, code2, offset, lut, True, blocksize)


class _Launch:
    """One kernel with its grid and constexprs. After a one-time check against Triton's own
    launcher, the compiled kernel is launched directly (``_fast_launch``)."""

    __slots__ = ("aligned0", "checked", "ck", "consts", "grid", "kernel", "kw")

    def __init__(self, kernel, grid: tuple, kw: dict) -> None:
        self.kernel = kernel
        self.grid = grid
        self.kw = kw
        self.ck = None  # the compiled kernel, once launched through Triton's own path
        self.consts: tuple = ()
        self.aligned0 = True
        self.checked = False

    def __call__(self, args: tuple, out: torch.Tensor, aligned: bool, warm: bool = False) -> None:
        """``aligned``: every pointer argument that varies between calls is 16-byte aligned
        (the compiled kernel may assume what its first launch saw). ``warm``: only compile the
        kernel for these arguments into Triton's caches, launch nothing."""
        if warm:
            self.kernel.warmup(*args, grid=self.grid, **self.kw)
            return
        ck = self.ck
        if ck is not None and (aligned or not self.aligned0):
            if self.checked:
                _fast_launch(ck, self.grid, out.device, args + self.consts)
                return
            if not torch.cuda.is_current_stream_capturing() and self._check_fast(args, out):
                return
        compiled = self.kernel[self.grid](*args, **self.kw)
        if ck is None and _FAST_LAUNCH and out.device.type == "cuda" and compiled is not None:
            self.ck = compiled
            params = inspect.signature(self.kernel.fn).parameters
            names = self.kernel.arg_names[len(args) :]
            self.consts = tuple(self.kw[n] if n in self.kw else params[n].default for n in names)
            self.aligned0 = aligned

    def _check_fast(self, args: tuple, out: torch.Tensor) -> bool:
        """First fast launch: compare it with Triton's own launch once."""
        global _FAST_LAUNCH
        self.checked = True
        try:
            if out.numel() * out.element_size() <= (16 << 20):
                probe = torch.zeros_like(out)  # zeros: split-K GEMV outputs are added into
                fast_args = tuple(probe if a is out else a for a in args)
                _fast_launch(self.ck, self.grid, out.device, fast_args + self.consts)
                self.kernel[self.grid](*args, **self.kw)
                # Same kernel, same inputs; split-K partials may be added in another order.
                if torch.allclose(probe.float(), out.float(), rtol=1e-3, atol=1e-3, equal_nan=True):
                    return True
            else:
                # A weight-sized output (dequantize): checksums instead of a second copy.
                # NaN first, so anything the direct launch leaves unwritten shows.
                out.fill_(float("nan"))
                _fast_launch(self.ck, self.grid, out.device, args + self.consts)
                fast = torch.sum(out, dtype=torch.float64)
                self.kernel[self.grid](*args, **self.kw)
                if bool(torch.isfinite(fast)) and torch.equal(fast, torch.sum(out, dtype=torch.float64)):
                    return True
        except Exception:
            pass
        _FAST_LAUNCH = False
        self.ck = None
        warnings.warn(
            "bnb-kernels: direct launch of the 4-bit kernels is not supported by this Triton; "
            "using Triton's launcher (slower per call)",
            RuntimeWarning,
            stacklevel=5,
        )
        return True  # ``out`` holds the result of Triton's own launch


# fp32 partials and per-tile counters of split-K launches, per (device, stream): launches
# on one stream run in order, so they can share them. Counters are left at zero by every
# launch.
_SPLIT_BUFS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _split_buffers(device: torch.device, numel: int, tiles: int) -> tuple[torch.Tensor, torch.Tensor]:
    if device.type == "cuda":
        from triton.runtime import driver

        idx = device.index if device.index is not None else torch.cuda.current_device()
        key = (idx, driver.active.get_current_stream(idx))
    else:
        key = (-1, 0)
    bufs = _SPLIT_BUFS.get(key)
    if bufs is None or bufs[0].numel() < numel or bufs[1].numel() < tiles:
        old = (0, 0) if bufs is None else (bufs[0].numel(), bufs[1].numel())
        bufs = (
            torch.empty(max(numel, old[0]), dtype=torch.float32, device=device),
            torch.zeros(max(tiles, old[1], 1024), dtype=torch.int32, device=device),
        )
        _SPLIT_BUFS[key] = bufs
    return bufs


class _Plan:
    """A config resolved for one (M, N, K): kernels, grids and constexprs, ready to launch."""

    __slots__ = ("alt", "config", "kind", "launch", "lut", "need", "split", "words")

    def __init__(self, config: tuple, M: int, N: int, K: int, meta: _Meta, has_bias: bool) -> None:
        kind = config[0]
        bs = meta.blocksize
        self.kind = kind
        self.config = config
        self.words = False  # LUT 5: the weight read as int32 words (4-byte aligned)
        self.alt: _Plan | None = None  # LUT 1 in its place for a weight that is not
        self.split = 1
        self.launch: _Launch | None = None
        self.need = (0, 0)
        self.lut = meta.lut
        if kind == "gemv":
            # fourbit_gemv.gemv_kernel: ("gemv", BN, BK, warps, split[, pipe]); one program
            # covers all M (1-4) token rows
            cfg = tuple(config[1:])
            kw = _gemv.gemv_constexprs(cfg, M, K, bs, meta.nested, has_bias)
            self.split = kw["SPLIT"]
            self.lut = _gemv.aligned_lut(meta.lut)  # the words layout ORs offsets into it
            self.launch = _Launch(_gemv.gemv_kernel, _gemv.gemv_grid(cfg, M, N, K), kw)
        elif kind == "mma":
            # fourbit_mma.mma_kernel: ("mma", warps, split, chunks per iteration, registers, prefetch, interleave)
            cfg = tuple(config[1:])
            kw = _mma.mma_constexprs(cfg, M, K, bs, meta.nested, has_bias)
            self.split = kw["SPLIT"]
            grid = _mma.mma_grid(cfg, N, K)
            if self.split > 1:
                self.need = (self.split * M * N, _mma.mma_row_programs(cfg, N))
            self.launch = _Launch(_mma.mma_kernel, grid, kw)
        elif kind == "dot":
            _, BM, BN, BK, warps, stages = config[:6]
            half_k = K // 2
            steps = triton.cdiv(half_k, BK // 2)
            split = max(1, min(config[6] if len(config) > 6 else 1, steps))
            lut = config[7] if len(config) > 7 else DEFAULT_LUT
            if not _LUT_GATHER:
                lut = 0
            # the fragment-order decode exists for one tile shape
            perm = bool(config[8]) if len(config) > 8 else False
            perm = perm and BK == 128 and BN == 16 * warps and _HAS_PERMUTE
            if lut == 5 and not (_HAS_DOT5 and perm and half_k % 4 == 0):
                lut = 1  # the permute decode needs the fragment order and whole words per row
            self.words = lut == 5
            self.split = split
            grid = (triton.cdiv(N, BN), triton.cdiv(M, BM), split)
            if split > 1:
                self.need = (split * M * N, grid[0] * grid[1])
            kw = dict(
                BLOCKSIZE=bs, NESTED=meta.nested, HAS_BIAS=has_bias, ALIGNED=K % bs == 0,
                BM=BM, BN=BN, BK=BK, SPLIT_K=split, EVEN_K=half_k % (BK // 2) == 0,
                LUT=lut, PERM=perm, WARPS=warps, PF=perm and stages == 1, ASM=not interpreting(),
                num_warps=warps, num_stages=stages,
            )  # fmt: skip
            self.launch = _Launch(_gemm_kernel, grid, kw)
        elif kind == "dequant":
            n_bytes = N * K // 2
            SB = min(bs // 2, 256)
            R = max(1, 2048 // SB)
            kw = dict(BLOCKSIZE=bs, NESTED=meta.nested, R=R, SB=SB, num_warps=4)
            self.launch = _Launch(_dequant_kernel, (triton.cdiv(n_bytes, R * SB),), kw)
        elif kind == "dequant_chunked":
            self.split = _chunk_rows(N, K, bs, meta.nested)
        else:  # pragma: no cover - configs come from this module
            raise ValueError(f"unknown 4-bit matmul path {kind!r}")

    def __call__(self, x, w, meta, bias, out, M, N, K, warm: bool = False):
        """Run the plan into ``out``; with ``warm``, only compile its kernel (no launch)."""
        bias_arg = meta.absmax if bias is None else bias
        kind = self.kind
        if kind in ("dot", "mma"):
            # decode 5 reads the weight as 4-byte words, the mma kernel 8 bytes at a time: a
            # weight off that boundary takes another path (decode 1 / the heuristic's)
            if (w.data_ptr() % 4 and self.words) or (kind == "mma" and w.data_ptr() % 8):
                if self.alt is None:
                    alt = (*self.config[:7], 1, 1) if kind == "dot" else _non_mma_config(M, x.dtype, N, K)
                    self.alt = _Plan(alt, M, N, K, meta, bias is not None)
                return self.alt(x, w, meta, bias, out, M, N, K, warm)
            if kind == "mma" and not _mma.mma_x_ok(x):
                x = x.clone()
            aligned = _aligned(x) and _aligned(out) and _aligned(w) and (bias is None or _aligned(bias))
            if self.split == 1:
                ws = cnt = meta.absmax
            else:
                ws, cnt = _split_buffers(x.device, *self.need)
            k_args = (K // 2, K) if kind == "dot" else (K, K)  # (HALF_K, stride_xm) / (K, stride_xm)
            args = (
                x, w, meta.absmax, meta.a8, meta.code2, meta.offset, meta.lut, bias_arg, out, ws, cnt, M, N, *k_args, N,
            )  # fmt: skip
            self.launch(args, out, aligned, warm)
        elif kind == "gemv":
            if not _gemv.gemv_x_ok(x):
                x = x.clone()
            aligned = _aligned(x) and _aligned(out) and (bias is None or _aligned(bias))
            if self.split == 1:
                args = (x, w, meta.absmax, meta.a8, meta.code2, meta.offset, self.lut, bias_arg, out, N, K, K, N)
                self.launch(args, out, aligned, warm)
            else:  # fp32 partials added atomically into a zeroed workspace
                acc = torch.zeros((M, N), dtype=torch.float32, device=x.device)
                args = (x, w, meta.absmax, meta.a8, meta.code2, meta.offset, self.lut, bias_arg, acc, N, K, K, N)
                self.launch(args, acc, aligned, warm)
                if not warm:
                    out.copy_(acc)
        elif kind == "dequant":
            # warm: a one-element stand-in (same dtype and alignment), not a whole weight
            W = torch.empty((1,) if warm else (N, K), dtype=x.dtype, device=x.device)
            args = (w, meta.absmax, meta.a8, meta.code2, meta.offset, meta.lut, W, N * K // 2)
            self.launch(args, W, True, warm)
            if warm:
                return out
            if bias is not None:
                torch.addmm(bias, x, W.t(), out=out)
            else:
                torch.mm(x, W.t(), out=out)
        elif warm:
            pass  # dequant_chunked: its kernel compiles at the first call
        else:  # dequant_chunked
            # Row chunks of the weight small enough to stay in L2 between the dequantize
            # kernel that writes them and the cuBLAS matmul that reads them.
            rows = self.split
            buf = torch.empty((min(rows, N), K), dtype=x.dtype, device=x.device)
            for n0 in range(0, N, rows):
                n1 = min(N, n0 + rows)
                Wc = dequantize_rows(w, meta, n0, n1, K, buf)
                o = out[:, n0:n1]
                if bias is not None:
                    torch.addmm(bias[n0:n1], x, Wc.t(), out=o)
                else:
                    torch.mm(x, Wc.t(), out=o)
        return out


def _aligned(t: torch.Tensor) -> bool:
    return t.data_ptr() % 16 == 0


def _fast_launch_supported() -> bool:
    return os.environ.get(FAST_LAUNCH_ENV, "1") not in ("0", "") and direct_launch_supported()


_FAST_LAUNCH = _fast_launch_supported()
# tl.gather (Triton >= 3.2) keeps the decode table in shared memory; older Triton loads the
# 16 values from global memory (LUT mode 0).
_LUT_GATHER = HAS_TRITON and hasattr(tl, "gather")
_HAS_PERMUTE = HAS_TRITON and hasattr(tl, "permute")  # the fragment-order decode
DOT5_ENV = "BNB_4BIT_DOT5"
# Decode 5 (byte permutes from the table in registers, inline PTX: NVIDIA only): Triton >=
# 3.2 (its tl.gather marks the version) with tl.permute; ``BNB_4BIT_DOT5=0`` keeps it out of
# the autotuner's candidates and the heuristic (read once, at import).
_HAS_DOT5 = (
    _LUT_GATHER
    and _HAS_PERMUTE
    and hasattr(tl, "inline_asm_elementwise")
    and getattr(torch.version, "hip", None) is None
)
_DOT5 = _HAS_DOT5 and os.environ.get(DOT5_ENV, "1") not in ("0", "")
MMA_ENV = "BNB_4BIT_MMA"
# The tensor-core GEMV (fourbit_mma.py, inline PTX mma.sync: NVIDIA only) for 1-16 tokens;
# ``BNB_4BIT_MMA=0`` keeps it out of the candidates and the heuristic (read once, at import).
_MMA = (
    HAS_TRITON
    and hasattr(tl, "inline_asm_elementwise")
    and getattr(torch.version, "hip", None) is None
    and os.environ.get(MMA_ENV, "1") not in ("0", "")
)
# The dot kernel's decode (``_decode_bytes``): 4 = one gather of an fp32 pair per byte.
DEFAULT_LUT = 4


def _fast_launch(ck, grid: tuple, device: torch.device, args: tuple) -> None:
    """Launch an already compiled kernel directly (``_common.direct_launch``). Only used for
    a plan whose integer arguments never change and whose pointers keep the alignment the
    kernel was compiled for."""
    direct_launch(ck, grid, current_stream(device.index if device.index is not None else 0), args)


def launch(
    config: tuple, x: torch.Tensor, w: torch.Tensor, meta: _Meta, bias: torch.Tensor | None, out: torch.Tensor, N: int
) -> torch.Tensor:
    """Run one path. ``x``: [M, K] rows, ``w``: flat uint8 packed weight, ``out``: a
    contiguous [M, N] tensor. Returns ``out``."""
    if not out.is_contiguous():
        raise ValueError("out must be contiguous")
    x = x.contiguous()
    M, K = x.shape
    return _Plan(config, M, N, K, meta, bias is not None)(x, w, meta, bias, out, M, N, K)


def dequantize(w: torch.Tensor, meta: _Meta, N: int, K: int, dtype: torch.dtype) -> torch.Tensor:
    """The [N, K] weight in ``dtype`` (one kernel, nested absmax decoded inside)."""
    W = torch.empty((N, K), dtype=dtype, device=w.device)
    n_bytes = N * K // 2
    SB = min(meta.blocksize // 2, 256)
    R = max(1, 2048 // SB)
    _dequant_kernel[(triton.cdiv(n_bytes, R * SB),)](
        w, meta.absmax, meta.a8, meta.code2, meta.offset, meta.lut, W, n_bytes,
        BLOCKSIZE=meta.blocksize, NESTED=meta.nested, R=R, SB=SB, num_warps=4,
    )  # fmt: skip
    return W


CHUNK_BYTES = 24 << 20  # about half of an H100's L2


def _chunk_rows(N: int, K: int, blocksize: int, nested: bool) -> int:
    """Rows per chunk: fits CHUNK_BYTES in 16-bit, starts every chunk on a quant block (and
    on a group of 256 blocks when the absmax is nested)."""
    unit = blocksize * (256 if nested else 1)
    step = unit // math.gcd(K, unit)
    rows = max(step, (CHUNK_BYTES // (2 * K)) // step * step)
    return min(rows, N)


def dequantize_rows(w: torch.Tensor, meta: _Meta, n0: int, n1: int, K: int, buf: torch.Tensor) -> torch.Tensor:
    """Rows ``n0:n1`` of the weight in ``buf.dtype``, written into ``buf[: n1 - n0]``."""
    bs = meta.blocksize
    blk0 = n0 * K // bs
    if meta.nested:
        absmax, a8 = meta.absmax[blk0 // 256 :], meta.a8[blk0:]
    else:
        absmax = meta.absmax[blk0:]
        a8 = absmax
    n_bytes = (n1 - n0) * K // 2
    out = buf[: n1 - n0]
    SB = min(bs // 2, 256)
    R = max(1, 2048 // SB)
    _dequant_kernel[(triton.cdiv(n_bytes, R * SB),)](
        w[n0 * K // 2 : n1 * K // 2], absmax, a8, meta.code2, meta.offset, meta.lut, out, n_bytes,
        BLOCKSIZE=bs, NESTED=meta.nested, R=R, SB=SB, num_warps=4,
    )  # fmt: skip
    return out


def _bucket(M: int) -> int:
    if M <= 4:
        return M
    b = 8
    while b < M and b < 8192:
        b *= 2
    return b


def _token_tile(M: int) -> int:
    """Tokens per program of the dot kernel: the MMA's N side (16..128)."""
    return 16 if M <= 16 else 32 if M <= 32 else 64 if M <= 64 else 128


def _split_for(N: int | None, M: int, BN: int = 64) -> int:
    """Split-K so that about two programs per SM of an H100 (132) exist: the dot kernel
    runs at a few programs per SM, and shapes with few row tiles leave SMs idle."""
    if N is None:
        return 1
    tiles = triton.cdiv(N, BN) * triton.cdiv(M, _token_tile(M))
    return max(1, min(4, round(264 / tiles)))


def heuristic_config(
    M: int, dtype: torch.dtype, N: int | None = None, K: int | None = None, blocksize: int | None = None
) -> tuple:
    """The path without timing (interpreter, CUDA graph capture, ``BNB_4BIT_AUTOTUNE=0``),
    from the H100 measurements in benchmarks/linear4bit-notes.md. With the block size known,
    2-8 tokens take the tensor-core GEMV where it applies (it beat the GEMV and the dot
    kernel on all five anchor shapes at 4 tokens)."""
    if _mma_offered(M, dtype, N, K, blocksize) and M <= 8:
        return ("mma", *_mma.mma_config(M, N, K))
    if M <= 4:
        return ("gemv", *_gemv.gemv_config(M, N or 4096, K or 4096, dtype))
    if dtype == torch.float32:
        return ("dequant",)
    if M <= 512:
        # ("dot", tokens BM, weight rows BN, BK, warps, stages, split-K, decode, fragment order)
        if M <= 64:
            if _dot5_for(dtype):  # decode 5, 3 stages: the fastest at 16 tokens on the H100
                return ("dot", _token_tile(M), 64, 128, 4, 3, _split_for(N, M), 5, 1)
            return ("dot", _token_tile(M), 64, 128, 4, 4, _split_for(N, M), 1, 1)
        return ("dot", 128, 64, 128, 4, 3, _split_for(N, M), 4)
    return ("dequant",)


def _non_mma_config(M: int, dtype: torch.dtype, N: int, K: int) -> tuple:
    """The heuristic's path among the others (for a weight the mma kernel cannot read)."""
    return heuristic_config(M, dtype, N, K)


_SM80: dict[int, bool] = {}


def _sm80() -> bool:
    """The current CUDA device is sm_80 or newer: it has ``mma.sync.m16n8k16`` on 16-bit
    inputs and packed bf16 arithmetic (a T4 is sm_75). Without CUDA (tests, the
    interpreter) the question is moot: True."""
    if interpreting() or not torch.cuda.is_available():
        return True
    idx = torch.cuda.current_device()
    ok = _SM80.get(idx)
    if ok is None:
        ok = _SM80[idx] = torch.cuda.get_device_capability(idx) >= (8, 0)
    return ok


def _dot5_for(dtype: torch.dtype) -> bool:
    """Decode 5 is offered for this activation dtype (its bf16 packed fma needs sm_80)."""
    return _DOT5 and (dtype != torch.bfloat16 or _sm80())


def _mma_offered(M: int, dtype: torch.dtype, N: int | None, K: int | None, blocksize: int | None) -> bool:
    """The tensor-core GEMV is a candidate: 2-16 tokens (the CUDA-core GEMV is faster at 1),
    its shape rules hold, it is switched on (``_MMA``) and the device has the MMA."""
    return (
        _MMA
        and M >= 2
        and N is not None
        and K is not None
        and blocksize is not None
        and _mma.mma_ok(M, K, blocksize, dtype)
        and _sm80()
    )


def _gemv_candidates(M: int, dtype: torch.dtype) -> list[tuple]:
    # fourbit_gemv's own list (its H100 run: 1.2-1.35x the previous GEMV kernel at 1 token,
    # 2.3-3.5x at 4 tokens, so that kernel is gone)
    return [("gemv", *c) for c in _gemv.gemv_candidates(M, dtype)]


def candidates(
    M: int, dtype: torch.dtype, N: int | None = None, K: int | None = None, blocksize: int | None = None
) -> list[tuple]:
    """What the autotuner times for M tokens (N output features, K input features and the
    block size, when known); decode 5 only where it is offered (``_DOT5``: Triton >= 3.2,
    ``BNB_4BIT_DOT5`` not 0; bf16 on sm_80+); the tensor-core GEMV where its shape rules
    hold (``_MMA``, sm_80+)."""
    cands = _candidates(M, dtype, N)
    if not _dot5_for(dtype):
        cands = [c for c in cands if not (c[0] == "dot" and len(c) > 7 and c[7] == 5)]
    if _mma_offered(M, dtype, N, K, blocksize):
        cands = [("mma", *c) for c in _mma.mma_candidates(M, N, K)] + cands
    return list(dict.fromkeys(cands))


def _dot5_candidates(M: int, N: int | None) -> list[tuple]:
    """Decode 5 (byte permutes from the table in registers, packed 16-bit scaling; SASS on
    sm_90 per weight element and step: 4.5-5 instructions at 16 tokens, 5.3-5.6 at 128,
    against 7.3-8.5 for decodes 1/3). H100 (bf16, nf4 bs64 nested; benchmarks/
    linear4bit-notes.md): at 16 tokens num_stages=3 (Triton's cp.async pipeline) won on the
    three anchor shapes (8192->28672: 98 us, best other decode 126 us); num_stages=1 (the
    next step's words prefetched into registers) ~110 us; at 4 tokens 110 us against 144 for
    the GEMV; at 128 tokens BN=128 with 3 stages about even with decode 3; at 1 token the
    GEMV is faster (77 against 109 us), so none there."""
    bm = _token_tile(M)
    auto = _split_for(N, M)
    more = min(4, 2 * auto)
    if M <= 64:
        return [
            ("dot", bm, 64, 128, 4, 3, auto, 5, 1),
            ("dot", bm, 64, 128, 4, 1, more, 5, 1),
            ("dot", bm, 64, 128, 4, 3, more, 5, 1),
            ("dot", bm, 64, 128, 4, 4, auto, 5, 1),
        ]
    a128 = _split_for(N, M, 128)
    return [
        ("dot", 128, 128, 128, 8, 3, 1, 5, 1),
        ("dot", 128, 128, 128, 8, 3, a128, 5, 1),
        ("dot", 128, 64, 128, 4, 3, auto, 5, 1),
        ("dot", 128, 64, 128, 4, 3, more, 5, 1),
    ]


def _candidates(M: int, dtype: torch.dtype, N: int | None) -> list[tuple]:
    if dtype == torch.float32:
        return [*_gemv_candidates(M, dtype), ("dequant",)] if M <= 4 else [("dequant",)]
    if M == 1:
        return _gemv_candidates(M, dtype)
    bm = _token_tile(M)
    # Decode 1 (two gathers from the 16 fp32 values, conflict-free) was the fastest at 16
    # tokens on the H100; 3 (bf16 pairs, scaled in bf16: one more rounding) at 128 tokens;
    # 4 (fp32 pairs) keeps fp32 scaling with one gather per byte. The last field (1) decodes
    # in the MMA fragment's order: no shared-memory round trip of the decoded weight.
    pairs = 3 if dtype == torch.bfloat16 else 4
    auto = _split_for(N, M)
    if M <= 64:
        splits = sorted({1, 2, 4, auto})
        dots = [("dot", bm, 64, 128, 4, 4, sp, 1, 1) for sp in splits]
        dots += [
            ("dot", bm, 64, 128, 4, 1, auto, 1, 1),  # num_stages=1: register prefetch
            ("dot", bm, 64, 128, 4, 1, max(2, auto), 1, 1),
            ("dot", bm, 64, 128, 4, 4, auto, pairs, 1),
            ("dot", bm, 64, 128, 4, 4, auto, 4, 1),
            ("dot", bm, 64, 128, 4, 4, auto, 1),
            ("dot", bm, 128, 128, 8, 4, auto, 1, 1),
        ]
        if M <= 4:
            # decode 5 beat decode 1 at 4 tokens (110 against 124 us on 8192->28672): the
            # decode-1 tiles only where decode 5 is off
            return [
                *_gemv_candidates(M, dtype),
                *_dot5_candidates(M, N)[:3],
                *([] if _dot5_for(dtype) else dots[:3]),
                ("dequant",),
            ]
        return [*_dot5_candidates(M, N), *dots, ("dequant",)]
    if M <= 512:
        a128 = _split_for(N, M, 128)
        return [
            *_dot5_candidates(M, N),
            ("dot", 128, 128, 128, 8, 3, 1, 1, 1),
            ("dot", 128, 128, 128, 8, 3, a128, 1, 1),
            ("dot", 128, 128, 128, 8, 3, 1, pairs, 1),
            ("dot", 128, 128, 128, 8, 3, a128, pairs, 1),
            ("dot", 128, 128, 128, 8, 3, 1, 4, 1),
            ("dot", 128, 128, 128, 8, 1, a128, 1, 1),
            ("dot", 128, 64, 128, 4, 3, 1, pairs),
            ("dot", 128, 64, 128, 4, 3, 2, pairs),
            ("dot", 128, 64, 128, 4, 3, auto, 4),
            ("dequant",),
        ]
    # Compute bound: cuBLAS on the dequantized weight (the fused kernel measured 3x slower
    # at 2048 tokens; chunks of the weight small enough for L2 made cuBLAS slower).
    return [("dequant",)]


_TUNED: dict[tuple, tuple] = {}


def _autotune_enabled() -> bool:
    return os.environ.get(AUTOTUNE_ENV, "1") not in ("0", "") and not interpreting()


def _time(fn) -> float:
    return triton.testing.do_bench(fn, warmup=3, rep=15, return_mode="median")


def _time_long(fn) -> float:
    return triton.testing.do_bench(fn, warmup=5, rep=50, return_mode="median")


def select_config(
    x: torch.Tensor, w: torch.Tensor, meta: _Meta, bias: torch.Tensor | None, out: torch.Tensor, N: int
) -> tuple:
    """The path for this shape: on a GPU the fastest candidate, timed once per (bucket, N, K,
    dtype, blocksize, nested, bias, device); otherwise the heuristic."""
    M, K = x.shape
    key = (_bucket(M), N, K, x.dtype, meta.blocksize, meta.nested, bias is not None, x.device)
    cfg = _TUNED.get(key)
    if cfg is not None:
        return cfg
    if not _autotune_enabled() or x.device.type != "cuda" or torch.cuda.is_current_stream_capturing():
        return heuristic_config(M, x.dtype, N, K, meta.blocksize)
    cands = candidates(M, x.dtype, N, K, meta.blocksize)
    if len(cands) == 1:
        _TUNED[key] = cands[0]
        return cands[0]
    plans = []
    for i, c in enumerate(cands):
        try:
            plans.append((i, c, _Plan(c, M, N, K, meta, bias is not None)))
        except Exception:
            continue
    _precompile([plan for _, _, plan in plans], (x, w, meta, bias, out, M, N, K))
    timed = []
    for i, c, plan in plans:
        try:
            plan(x, w, meta, bias, out, M, N, K)
            timed.append((_time(lambda plan=plan: plan(x, w, meta, bias, out, M, N, K)), i, c, plan))
        except Exception:
            continue
    timed.sort(key=lambda entry: entry[:2])
    if len(timed) > 1:
        # One short timing per candidate can rank them wrongly (an H100 anchor run measured
        # 18.7 us where the best candidate takes 14.5); the three fastest are timed again, longer.
        final = [
            (_time_long(lambda p=plan: p(x, w, meta, bias, out, M, N, K)), i, c, plan) for _, i, c, plan in timed[:3]
        ]
        timed = sorted(final, key=lambda entry: entry[:2])
    cfg = timed[0][2] if timed else heuristic_config(M, x.dtype, N, K, meta.blocksize)
    _TUNED[key] = cfg
    return cfg


def _precompile(plans: list, call_args: tuple) -> None:
    """Compile the candidates' kernels ahead of timing them (a layer shape's first call
    compiles 7-13 kernels): the first plan of each kernel function alone, the others on
    threads (``_common.compile_ahead``)."""
    first: dict = {}
    for plan in plans:
        first.setdefault(plan.launch.kernel if plan.launch is not None else None, plan)
    rest = [plan for plan in plans if plan not in first.values()]
    compile_ahead(
        call_args[0].device,
        [partial(plan, *call_args, warm=True) for plan in first.values()],
        [partial(plan, *call_args, warm=True) for plan in rest],
    )


def _plan_for(
    x: torch.Tensor, w: torch.Tensor, meta: _Meta, bias: torch.Tensor | None, out: torch.Tensor, N: int
) -> _Plan:
    M, K = x.shape
    key = (M, x.dtype, bias is None)
    plan = meta.configs.get(key)
    if plan is None:
        plan = _Plan(select_config(x, w, meta, bias, out, N), M, N, K, meta, bias is not None)
        if x.device.type == "cuda" and not torch.cuda.is_current_stream_capturing():
            meta.configs[key] = plan
    return plan


def tuned_configs() -> dict[tuple, tuple]:
    """What the autotuner chose so far (for benchmarks and reports)."""
    return dict(_TUNED)


# ------------------------------------------------------------------------------------------
# Op implementations


def _fallback_needed(A: torch.Tensor, K: int) -> bool:
    return K % 2 != 0 or A.dtype not in (torch.float16, torch.bfloat16, torch.float32)


def _as_u8(B: torch.Tensor) -> torch.Tensor:
    if B.dtype != torch.uint8:
        B = B.view(torch.uint8)
    return B.reshape(-1)


def _run(
    A: torch.Tensor,
    w: torch.Tensor,
    N: int,
    K: int,
    meta: _Meta,
    bias: torch.Tensor | None,
    out: torch.Tensor | None,
) -> torch.Tensor:
    x = A if A.dim() == 2 else A.reshape(-1, K)
    if not x.is_contiguous():
        x = x.contiguous()
    M = x.shape[0]
    o = torch.empty((M, N), dtype=A.dtype, device=A.device) if out is None else out.view(M, N)
    if bias is not None and bias.dtype != A.dtype:
        bias = bias.to(A.dtype)
    if M > 0:
        dev = A.device
        if dev.type != "cuda" or dev.index is None or dev.index == torch.cuda.current_device():
            _plan_for(x, w, meta, bias, o, N)(x, w, meta, bias, o, M, N, K)
        else:
            with device_guard(dev):
                _plan_for(x, w, meta, bias, o, N)(x, w, meta, bias, o, M, N, K)
    if out is None and A.dim() != 2:
        return o.view(*A.shape[:-1], N)
    return o


def prepare_gemm_4bit(
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    absmax_8bit: torch.Tensor | None = None,
    absmax_code: torch.Tensor | None = None,
    absmax_offset: torch.Tensor | None = None,
):
    """A callable ``run(A, bias)`` equal to ``gemm_4bit`` for this weight, with the launch
    arguments decoded once (modules cache it; the per-call cost is then the launch)."""
    N, K = int(shapeB[0]), int(shapeB[1])
    meta = _make_meta(absmax, blocksize, _lut(quant_type, B.device), absmax_8bit, absmax_code, absmax_offset)
    w = _as_u8(B)
    odd = K % 2 != 0

    def run(A: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
        if A.shape[-1] != K:
            raise ValueError(f"A has {A.shape[-1]} features (shape {tuple(A.shape)}), the 4-bit weight expects {K}")
        if odd or A.dtype not in _FLOATS:
            return _ref.gemm_4bit(
                A, B, shapeB, absmax, blocksize, quant_type, bias, absmax_8bit, absmax_code, absmax_offset
            )
        return _run(A, w, N, K, meta, bias, None)

    run.meta = meta  # type: ignore[attr-defined]  (tests and benchmarks inspect the plans)
    return run


_FLOATS = (torch.float16, torch.bfloat16, torch.float32)


def gemm_4bit(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    blocksize: int,
    quant_type: str,
    bias: torch.Tensor | None = None,
    absmax_8bit: torch.Tensor | None = None,
    absmax_code: torch.Tensor | None = None,
    absmax_offset: torch.Tensor | None = None,
) -> torch.Tensor:
    _, K = check_gemm_4bit_args(A, B, shapeB, absmax, blocksize, quant_type, bias, absmax_8bit, absmax_code)
    if _fallback_needed(A, K):
        return _ref.gemm_4bit(
            A, B, shapeB, absmax, blocksize, quant_type, bias, absmax_8bit, absmax_code, absmax_offset
        )
    meta = _make_meta(absmax, blocksize, _lut(quant_type, A.device), absmax_8bit, absmax_code, absmax_offset)
    return _run(A, _as_u8(B), int(shapeB[0]), K, meta, bias, None)


def gemv_4bit(
    A: torch.Tensor, B: torch.Tensor, shapeB: Sequence[int], absmax: torch.Tensor, code: torch.Tensor, blocksize: int
) -> torch.Tensor:
    _, K = check_gemm_4bit_args(A, B, shapeB, absmax, blocksize, code=code)
    if _fallback_needed(A, K):
        return _ref.gemv_4bit(A, B, shapeB, absmax, code, blocksize)
    lut = code if code.dtype == torch.float32 else code.float()
    return _run(A, _as_u8(B), int(shapeB[0]), K, _make_meta(absmax, blocksize, lut, None, None, None), None, None)


def gemv_4bit_out(
    A: torch.Tensor,
    B: torch.Tensor,
    shapeB: Sequence[int],
    absmax: torch.Tensor,
    code: torch.Tensor,
    blocksize: int,
    out: torch.Tensor,
) -> None:
    _, K = check_gemm_4bit_args(A, B, shapeB, absmax, blocksize, code=code)
    if _fallback_needed(A, K) or not out.is_contiguous():
        out.copy_(_ref.gemv_4bit(A, B, shapeB, absmax, code, blocksize))
        return
    lut = code if code.dtype == torch.float32 else code.float()
    _run(A, _as_u8(B), int(shapeB[0]), K, _make_meta(absmax, blocksize, lut, None, None, None), None, out)


assert NESTED_BLOCKSIZE == 256  # the kernels divide block indices by 256

gemm_4bit.prepare = prepare_gemm_4bit  # type: ignore[attr-defined]

if HAS_TRITON:
    register("gemm_4bit", "triton", "cuda", available=available)(gemm_4bit)
    register("gemv_4bit", "triton", "cuda", available=available)(gemv_4bit)
    register("gemv_4bit.out", "triton", "cuda", available=available)(gemv_4bit_out)
