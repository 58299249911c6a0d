"""Triton GPU kernels of the LLM.int8() ops.

- ``_row_quant_kernel``: one pass over the activations (two above ``ONE_PASS_MAX_K``). Per
  row: the absmax of the non-outlier values, the int8 codes (outlier elements get 0) and,
  with a threshold, a flag per outlier column (a plain store of the call's epoch; no host
  synchronization). Compiled without fused multiply-add so the codes equal
  the reference's.
- ``_outlier_cols_kernel``: from the flags, the ascending list of outlier columns and its
  length (on the device) and, optionally, code 0 in every outlier column (the reference's
  whole-column split).
- ``_int8_gemm_kernel``: int8 x int8 -> int32 on the tensor cores (``tl.dot``), with the
  dequantization (row scale x column scale x 1/127^2), the bias and the fp16 outlier
  columns applied in the epilogue: ``A[:, cols] @ dequant(CB[:, cols]).T`` in 16-bit with
  float32 accumulation, the columns read from the device-side list (a forward can be
  captured in a CUDA graph). Where the caller's codes of those columns are not 0
  (``int8_mixed_scaled_mm``) their int8 product is first subtracted exactly.
- ``_w8a16_kernel`` (weight-only): reads each int8 weight byte once, converts it to the
  activation dtype in registers and multiplies the activations as they are (no activation
  quantization: every column, outlier or not, is exact). Row tiles of 16 for 2-16 rows,
  64-128 for 17-1024 rows. fp16 activations: int8 -> fp16 by byte permutes (inline PTX).
  Split over K, the last program of a tile sums the slices.
- ``_gemv_kernel``: one row, multiply-add on the CUDA cores (no padding to a tensor-core tile).

``prepare_int8_linear`` binds a weight (modules keep the result) and keeps a plan per input
shape: 1 row: gemv or w8a16, 2-16 rows: w8a16, 17-1024 rows: w8a16 with row tiles or
quantize + int8 GEMM, more: quantize + int8 GEMM; where two candidates exist the faster is
timed once per shape on the device. After its first call a plan launches the compiled
kernels directly (``direct_launch``: no binder, no specialization, no cache lookup), which
is most of the host time of a call. The reference-schema ops reuse the same kernels.
"""

# No `from __future__ import annotations` here: Triton 3.0's interpreter recognizes
# `tl.constexpr` parameters only when the annotation is the object, not a string.
import inspect
import os
import warnings
from functools import partial

import torch

from ..._registry import register
from ...ops.int8 import INV_127, MM_DEQUANT
from ._common import (
    HAS_TRITON,
    available,
    compile_ahead,
    current_stream,
    direct_launch,
    direct_launch_supported,
    interpreting,
    tl,
    triton,
)

__all__ = [
    "gemm",
    "int8_linear_fused",
    "row_quant",
    "w8a16",
]

# Rows up to this many take the weight-only (w8a16) kernel in int8_linear_fused.
SMALL_M = 16
# BNB_TRITON_AUTOTUNE=0 launches one fixed tile configuration instead of autotuning (tests:
# fewer compilations).
AUTOTUNE_ENV = "BNB_TRITON_AUTOTUNE"


# Read once (an environment lookup costs microseconds on every launch); tests set the
# module attribute instead.
AUTOTUNE = os.environ.get(AUTOTUNE_ENV, "1") != "0"
_INTERPRET = interpreting()


def _autotune() -> bool:
    return AUTOTUNE


# 1.5 * 2^23: adding and subtracting it rounds a float32 |x| < 2^22 to the nearest integer,
# ties to even (the rounding mode of the reference's rint / __float2int_rn).
_ROUND_MAGIC = 12582912.0

if HAS_TRITON:
    _MAGIC = tl.constexpr(_ROUND_MAGIC)
    _MMDQ = tl.constexpr(MM_DEQUANT)
    _I127 = tl.constexpr(INV_127)

    @triton.jit(do_not_specialize=["epoch"])
    def _row_quant_kernel(
        X,
        CODES,
        ROW_STATS,
        FL,
        M,
        K,
        stride_xm,
        stride_cm,
        threshold,
        epoch,
        HAS_THRESHOLD: tl.constexpr,
        BLOCK_K: tl.constexpr,
        ONE_PASS: tl.constexpr,
        ROWS: tl.constexpr = 1,
    ):
        # FL[0:K] (int32): set to `epoch` at every column holding an outlier (a column counts
        # as flagged when its flag >= epoch: a plan keeps its flags between calls and counts
        # epochs up instead of zeroing them; a stale flag only adds a column to the exact
        # 16-bit part). A flag is read before it is raised: most rows flag the same few
        # columns, and reads of a raised flag do not contend like writes. Every writer stores
        # the same value and epochs only grow, so a plain store does what an atomic max would,
        # without the atomics queueing on those few addresses. No host synchronization;
        # _outlier_cols_kernel builds the list of flagged columns.
        offs = tl.arange(0, BLOCK_K)
        if ONE_PASS:
            # ROWS whole rows per program, held in registers: one read of x, one write of codes
            rows = tl.program_id(0) * ROWS + tl.arange(0, ROWS)
            rmask = rows < M
            r64 = rows.to(tl.int64)
            mask = rmask[:, None] & (offs < K)[None, :]
            x_ptrs = X + r64[:, None] * stride_xm + offs[None, :]
            x = tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32)
            ax = tl.abs(x)
            valid = ax == ax  # not NaN
            if HAS_THRESHOLD:
                valid = valid & (ax < threshold)
                n_out = tl.max(tl.max(((ax >= threshold) & mask).to(tl.int32), axis=1), axis=0)
            amax = tl.max(tl.where(valid, ax, 0.0), axis=1)
            tl.store(ROW_STATS + rows, amax, mask=rmask)
            rscale = tl.math.div_rn(tl.full([ROWS], 1.0, tl.float32), amax) * 127.0
            q = x * rscale[:, None]
            keep = valid & (tl.abs(q) < 1.0e30)
            r = (q + _MAGIC) - _MAGIC
            tl.store(CODES + r64[:, None] * stride_cm + offs[None, :], tl.where(keep, r, 0.0).to(tl.int8), mask=mask)
            if HAS_THRESHOLD:
                # Only rows holding an outlier raise flags (a flag update for every element
                # doubled the instructions per element, and most rows have none), after the
                # codes are out and with the row read again from L2 (fewer live registers).
                # Plain stores (see above): an acq_rel atomic carries a memory barrier even
                # where its mask is off, which had made this kernel 1.8x slower, and relaxed
                # ones cost 0.5-1.2 us more per 4096x4096 layer call at 512 rows (H100).
                if n_out > 0:
                    xo = tl.abs(tl.load(x_ptrs, mask=mask, other=0.0).to(tl.float32))
                    outl = (xo >= threshold) & mask
                    fptr = tl.broadcast_to(FL + offs[None, :], [ROWS, BLOCK_K])
                    seen = tl.load(fptr, mask=outl, other=0)
                    tl.store(fptr, tl.full([ROWS, BLOCK_K], 0, tl.int32) + epoch, mask=outl & (seen < epoch))
        else:
            row = tl.program_id(0).to(tl.int64)
            x_row = X + row * stride_xm
            c_row = CODES + row * stride_cm
            acc = tl.zeros([BLOCK_K], dtype=tl.float32)
            hit = tl.zeros([BLOCK_K], dtype=tl.int32)  # where an outlier was seen (any chunk)
            for k0 in range(0, K, BLOCK_K):
                m = (k0 + offs) < K
                a = tl.abs(tl.load(x_row + k0 + offs, mask=m, other=0.0).to(tl.float32))
                ok = a == a
                if HAS_THRESHOLD:
                    ok = ok & (a < threshold)
                    hit = tl.maximum(hit, ((a >= threshold) & m).to(tl.int32))
                acc = tl.maximum(acc, tl.where(ok, a, 0.0))
            absmax = tl.max(acc, axis=0)
            if HAS_THRESHOLD:
                n_out = tl.max(hit, axis=0)
            tl.store(ROW_STATS + row, absmax)
            scale = tl.math.div_rn(tl.full([], 1.0, tl.float32), absmax) * 127.0
            # second pass over the row: read again (from L2), write the codes
            for k0 in range(0, K, BLOCK_K):
                m = (k0 + offs) < K
                xv = tl.load(x_row + k0 + offs, mask=m, other=0.0).to(tl.float32)
                av = tl.abs(xv)
                ok = av == av
                if HAS_THRESHOLD:
                    ok = ok & (av < threshold)
                q = xv * scale
                keep = ok & (tl.abs(q) < 1.0e30)
                r = (q + _MAGIC) - _MAGIC
                tl.store(c_row + k0 + offs, tl.where(keep, r, 0.0).to(tl.int8), mask=m)
                if HAS_THRESHOLD:
                    if n_out > 0:  # only rows holding an outlier raise flags
                        outl = (av >= threshold) & m
                        seen = tl.load(FL + k0 + offs, mask=outl, other=0)
                        tl.store(FL + k0 + offs, tl.full([BLOCK_K], 0, tl.int32) + epoch, mask=outl & (seen < epoch))

    @triton.jit(do_not_specialize=["epoch"])
    def _outlier_cols_kernel(
        FL,
        IDX,
        CODES,
        M,
        K,
        stride_cm,
        epoch,
        ROWS: tl.constexpr,
        BLOCK: tl.constexpr,
        BLOCK_J: tl.constexpr,
        ZERO_CODES: tl.constexpr,
    ):
        # After _row_quant_kernel: FL[0:K] column flags (set: >= epoch). Writes the flagged
        # columns in ascending order to IDX[0:count] (int32 or int64) and count to IDX[K].
        # Every program builds the list from the flags (one load of BLOCK flags at a time)
        # and writes it (identical values); with ZERO_CODES it then reads its own list back
        # and sets the codes of its ROWS rows to 0 in those columns (the reference's
        # whole-column split). No ordering between programs is needed.
        pid = tl.program_id(0)
        offs = tl.arange(0, BLOCK)
        total = tl.sum(tl.zeros([BLOCK], dtype=tl.int32), axis=0)
        for k0 in range(0, K, BLOCK):
            cols = k0 + offs
            f = (tl.load(FL + cols, mask=cols < K, other=0) >= epoch).to(tl.int32)
            n = tl.sum(f, axis=0)
            if n > 0:
                hit = f > 0
                pos = total + tl.cumsum(f, axis=0) - 1
                tl.store(IDX + pos, cols.to(IDX.dtype.element_ty), mask=hit)
            total += n
        if pid == 0:
            tl.store(IDX + K, total.to(IDX.dtype.element_ty))
        if ZERO_CODES:
            tl.debug_barrier()  # this program's list writes are visible to all its threads
            rows = pid * ROWS + tl.arange(0, ROWS)
            rj = tl.arange(0, BLOCK_J)
            zero = tl.zeros([ROWS, BLOCK_J], dtype=tl.int8)
            c_rows = CODES + rows.to(tl.int64)[:, None] * stride_cm
            for j0 in range(0, total, BLOCK_J):
                jm = (j0 + rj) < total
                c = tl.load(IDX + j0 + rj, mask=jm, other=0)
                tl.store(c_rows + c[None, :], zero, mask=(rows < M)[:, None] & jm[None, :])

    @triton.jit
    def _int8_gemm_kernel(
        A,
        B,
        C,
        ROW_STATS,
        COL_STATS,
        BIAS,
        X,
        WS,
        M,
        N,
        K,
        M_BUCKET,
        stride_am,
        stride_bn,
        stride_cm,
        stride_xm,
        EPILOGUE: tl.constexpr,  # 0: store int32; 1: dequantize (+ bias, + outliers)
        HAS_BIAS: tl.constexpr,
        HAS_OUTLIERS: tl.constexpr,
        SUBTRACT_OUTLIERS: tl.constexpr,
        IEEE: tl.constexpr,
        EVEN_K: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        BLOCK_J: tl.constexpr,
        GROUP_M: tl.constexpr,
    ):
        pid = tl.program_id(0)
        num_m = tl.cdiv(M, BLOCK_M)
        num_n = tl.cdiv(N, BLOCK_N)
        group = GROUP_M * num_n
        first_m = (pid // group) * GROUP_M
        size_m = min(num_m - first_m, GROUP_M)
        pid_m = first_m + ((pid % group) % size_m)
        pid_n = (pid % group) // size_m

        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        ram = tl.max_contiguous(tl.multiple_of(rm % M, BLOCK_M), BLOCK_M)
        rbn = tl.max_contiguous(tl.multiple_of(rn % N, BLOCK_N), BLOCK_N)
        a_ptrs = A + ram.to(tl.int64)[:, None] * stride_am + rk[None, :]
        b_ptrs = B + rbn.to(tl.int64)[:, None] * stride_bn + rk[None, :]
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.int32)
        for k0 in range(0, K, BLOCK_K):
            if EVEN_K:
                a = tl.load(a_ptrs)
                b = tl.load(b_ptrs)
            else:
                a = tl.load(a_ptrs, mask=(k0 + rk)[None, :] < K, other=0)
                b = tl.load(b_ptrs, mask=(k0 + rk)[None, :] < K, other=0)
            acc = tl.dot(a, tl.trans(b), acc, out_dtype=tl.int32)
            a_ptrs += BLOCK_K
            b_ptrs += BLOCK_K

        mask_m = rm < M
        mask_n = rn < N
        if HAS_OUTLIERS:
            # WS[0:count]: the outlier columns (int32), WS[K]: count (both written on the device)
            IDX = WS
            count = tl.load(WS + K)
            rj = tl.arange(0, BLOCK_J)
            if SUBTRACT_OUTLIERS:
                # Remove the int8 contribution of the outlier columns exactly.
                acc = -acc
                for j0 in range(0, count, BLOCK_J):
                    jm = (j0 + rj) < count
                    cols = tl.load(IDX + j0 + rj, mask=jm, other=0)
                    ca = tl.load(A + ram.to(tl.int64)[:, None] * stride_am + cols[None, :], mask=jm[None, :], other=0)
                    cb = tl.load(B + rbn.to(tl.int64)[:, None] * stride_bn + cols[None, :], mask=jm[None, :], other=0)
                    acc = tl.dot(ca, tl.trans(cb), acc, out_dtype=tl.int32)
                acc = -acc

        if EPILOGUE == 0:
            out = acc
        else:
            row = tl.load(ROW_STATS + rm, mask=mask_m, other=0.0)
            col = tl.load(COL_STATS + rn, mask=mask_n, other=0.0)
            out = acc.to(tl.float32) * (row[:, None] * col[None, :]) * _MMDQ
            if HAS_BIAS:
                out = out + tl.load(BIAS + rn, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            if HAS_OUTLIERS:
                wscale = col * _I127
                for j0 in range(0, count, BLOCK_J):
                    jm = (j0 + rj) < count
                    cols = tl.load(IDX + j0 + rj, mask=jm, other=0)
                    xa = tl.load(X + ram.to(tl.int64)[:, None] * stride_xm + cols[None, :], mask=jm[None, :], other=0.0)
                    cb = tl.load(B + rbn.to(tl.int64)[:, None] * stride_bn + cols[None, :], mask=jm[None, :], other=0)
                    w = (cb.to(tl.float32) * wscale[:, None]).to(xa.dtype)
                    if IEEE:
                        out = tl.dot(xa, tl.trans(w), out, input_precision="ieee", out_dtype=tl.float32)
                    else:
                        out = tl.dot(xa, tl.trans(w), out, out_dtype=tl.float32)
        c_ptrs = C + rm.to(tl.int64)[:, None] * stride_cm + rn[None, :]
        tl.store(c_ptrs, out.to(C.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])

    # int8 -> fp16 for 4 codes in one 32-bit word: bias to unsigned (xor 0x80), place each byte
    # under the fp16 exponent of 1024 (prmt), subtract 1024 + 128 (exact): 5 instructions per
    # 4 codes instead of a quarter-rate I2F per code, which bounded the kernel at 2-16 rows.
    _I8_F16_ASM = tl.constexpr(
        "{ .reg .b32 u, h, c; xor.b32 u, $2, 0x80808080; mov.b32 h, 0x64646464; mov.b32 c, 0x64806480;"
        " prmt.b32 $0, u, h, 0x4140; prmt.b32 $1, u, h, 0x4342; sub.f16x2 $0, $0, c; sub.f16x2 $1, $1, c; }"
    )

    @triton.jit
    def _int8_to_f16(w, ASM: tl.constexpr):
        if ASM:
            return tl.inline_asm_elementwise(_I8_F16_ASM, "=r,=r,r", [w], dtype=tl.float16, is_pure=True, pack=4)
        return w.to(tl.float16)

    @triton.jit
    def _w8a16_kernel(
        X,
        W,
        SCB,
        BIAS,
        OUT,
        PART,
        CNT,
        M,
        N,
        K,
        stride_xm,
        stride_wn,
        stride_om,
        HAS_BIAS: tl.constexpr,
        IEEE: tl.constexpr,
        M_MAJOR: tl.constexpr,
        EVEN_K: tl.constexpr,
        BLOCK_M: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
        SPLIT_K: tl.constexpr,
        FAST_CVT: tl.constexpr = False,
    ):
        # SPLIT_K > 1: program (n, m, s) multiplies the s-th slice of K and writes its scaled
        # float32 partial to PART[s]; the last program of a tile to finish (CNT: one counter
        # per tile, zero between launches) adds the slices and the bias and writes OUT, so a
        # split costs no second launch.
        if M_MAJOR:  # consecutive programs share a weight tile (several row blocks): L2 reuse
            pid_m = tl.program_id(0)
            pid_n = tl.program_id(1)
        else:
            pid_n = tl.program_id(0)
            pid_m = tl.program_id(1)
        rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        rwn = tl.max_contiguous(tl.multiple_of(rn % N, BLOCK_N), BLOCK_N)
        mask_m = rm < M
        if SPLIT_K > 1:
            k_per = tl.cdiv(tl.cdiv(K, SPLIT_K), BLOCK_K) * BLOCK_K
            k_lo = tl.program_id(2) * k_per
            k_hi = tl.minimum(k_lo + k_per, K)
        else:
            k_lo = 0
            k_hi = K
        x_ptrs = X + rm.to(tl.int64)[:, None] * stride_xm + (k_lo + rk)[None, :]
        w_ptrs = W + rwn.to(tl.int64)[:, None] * stride_wn + (k_lo + rk)[None, :]
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k0 in range(k_lo, k_hi, BLOCK_K):
            if EVEN_K:
                x = tl.load(x_ptrs, mask=mask_m[:, None], other=0.0)
                w = tl.load(w_ptrs)
            else:
                km = (k0 + rk)[None, :] < K
                x = tl.load(x_ptrs, mask=mask_m[:, None] & km, other=0.0)
                w = tl.load(w_ptrs, mask=km, other=0)
            if IEEE:
                acc = tl.dot(x, tl.trans(w.to(x.dtype)), acc, input_precision="ieee", out_dtype=tl.float32)
            else:
                if x.dtype == tl.float16:
                    wd = _int8_to_f16(w, FAST_CVT)
                else:
                    wd = w.to(x.dtype)
                acc = tl.dot(x, tl.trans(wd), acc, out_dtype=tl.float32)
            x_ptrs += BLOCK_K
            w_ptrs += BLOCK_K
        mask_n = rn < N
        scale = tl.load(SCB + rn, mask=mask_n, other=0.0) * _I127
        out = acc * scale[None, :]
        omask = mask_m[:, None] & mask_n[None, :]
        o_ptrs = OUT + rm.to(tl.int64)[:, None] * stride_om + rn[None, :]
        if SPLIT_K > 1:
            MN = M * N
            p_ptrs = PART + rm.to(tl.int64)[:, None] * N + rn[None, :]
            tl.store(p_ptrs + tl.program_id(2) * MN, out, mask=omask)
            tl.debug_barrier()  # every thread's partial is written before the counter moves
            tile = pid_m * tl.cdiv(N, BLOCK_N) + pid_n
            done = tl.atomic_add(CNT + tile, 1, sem="acq_rel")
            if done == SPLIT_K - 1:
                res = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
                for s in range(SPLIT_K):  # not unrolled: one partial tile live at a time
                    res += tl.load(p_ptrs + s * MN, mask=omask, other=0.0, cache_modifier=".cg")
                if HAS_BIAS:
                    res += tl.load(BIAS + rn, mask=mask_n, other=0.0).to(tl.float32)[None, :]
                tl.store(o_ptrs, res.to(OUT.dtype.element_ty), mask=omask)
                tl.atomic_xchg(CNT + tile, 0)  # ready for the next launch
        else:
            if HAS_BIAS:
                out = out + tl.load(BIAS + rn, mask=mask_n, other=0.0).to(tl.float32)[None, :]
            tl.store(o_ptrs, out.to(OUT.dtype.element_ty), mask=omask)

    @triton.jit
    def _gemv_kernel(
        X,
        W,
        SCB,
        BIAS,
        OUT,
        N,
        K,
        stride_wn,
        HAS_BIAS: tl.constexpr,
        EVEN_K: tl.constexpr,
        BLOCK_N: tl.constexpr,
        BLOCK_K: tl.constexpr,
    ):
        # One activation row: multiply-add on the CUDA cores, no padding of M to a tensor-core
        # tile, so the only large stream is the int8 weight, read once.
        pid = tl.program_id(0)
        rn = pid * BLOCK_N + tl.arange(0, BLOCK_N)
        rk = tl.arange(0, BLOCK_K)
        rwn = tl.max_contiguous(tl.multiple_of(rn % N, BLOCK_N), BLOCK_N)
        w_ptrs = W + rwn.to(tl.int64)[:, None] * stride_wn + rk[None, :]
        x_ptrs = X + rk
        acc = tl.zeros([BLOCK_N, BLOCK_K], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
            if EVEN_K:
                w = tl.load(w_ptrs, eviction_policy="evict_first")
                x = tl.load(x_ptrs)
            else:
                km = (k0 + rk) < K
                w = tl.load(w_ptrs, mask=km[None, :], other=0, eviction_policy="evict_first")
                x = tl.load(x_ptrs, mask=km, other=0.0)
            acc += w.to(tl.float32) * x.to(tl.float32)[None, :]
            w_ptrs += BLOCK_K
            x_ptrs += BLOCK_K
        mask_n = rn < N
        out = tl.sum(acc, axis=1) * (tl.load(SCB + rn, mask=mask_n, other=0.0) * _I127)
        if HAS_BIAS:
            out = out + tl.load(BIAS + rn, mask=mask_n, other=0.0).to(tl.float32)
        tl.store(OUT + rn, out.to(OUT.dtype.element_ty), mask=mask_n)

    @triton.jit
    def _mm_dequant_kernel(A, ROW, COL, BIAS, OUT, M, N, HAS_BIAS: tl.constexpr, BLOCK: tl.constexpr):
        pid = tl.program_id(0).to(tl.int64)
        offs = pid * BLOCK + tl.arange(0, BLOCK)
        mask = offs < M * N
        r = offs // N
        c = offs % N
        acc = tl.load(A + offs, mask=mask, other=0).to(tl.float32)
        row = tl.load(ROW + r, mask=mask, other=0.0)
        col = tl.load(COL + c, mask=mask, other=0.0)
        out = acc * (row * col) * _MMDQ
        if HAS_BIAS:
            out = out + tl.load(BIAS + c, mask=mask, other=0.0).to(tl.float32)
        tl.store(OUT + offs, out.to(OUT.dtype.element_ty), mask=mask)

    def _gemm_configs() -> list:
        cfg = triton.Config
        return [
            cfg({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 128, "GROUP_M": 8}, num_warps=8, num_stages=3),
            cfg({"BLOCK_M": 256, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}, num_warps=8, num_stages=3),
            cfg({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}, num_warps=8, num_stages=4),
            cfg({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 256, "GROUP_M": 8}, num_warps=8, num_stages=3),
            cfg({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}, num_warps=4, num_stages=4),
        ]

    def _mbucket(M: int) -> int:
        return 1 << max(4, (M - 1).bit_length())

    def _even_k(args: dict) -> bool:
        return args["K"] % args["BLOCK_K"] == 0

    def _quick_bench(kernel_call, quantiles=None):
        return triton.testing.do_bench(kernel_call, warmup=5, rep=20, quantiles=quantiles)

    def _quick_autotune(configs: list, key: list):
        """``triton.autotune`` with a short timing per configuration (the default 25 + 100 ms
        made a layer's first call take over a second per shape) and, where this Triton can,
        the choice kept on disk beside the compiled kernels (later processes skip timing)."""
        params = inspect.signature(triton.autotune).parameters
        kw: dict = {"do_bench": _quick_bench} if "do_bench" in params else {"warmup": 5, "rep": 20}
        if "cache_results" in params:
            kw["cache_results"] = True
        return triton.autotune(configs=configs, key=key, **kw)

    # The epilogue keeps one accumulator live at a time (the int32 one is converted before the
    # 16-bit outlier columns are added), so the outlier variant takes the same tiles.
    _GEMM_TUNED = _quick_autotune(
        _gemm_configs(),
        ["M_BUCKET", "N", "K", "EPILOGUE", "HAS_OUTLIERS", "SUBTRACT_OUTLIERS"],
    )(triton.heuristics({"EVEN_K": _even_k})(triton.jit(_int8_gemm_kernel.fn)))

    # 2-16 rows: the weight stream is the work. Splitting K lets wide column tiles (few
    # re-reads of the activations from L2) still give every SM several programs, at the
    # price of writing and re-reading float32 partials (summed by the last program of each
    # tile): both kinds are tuned, and the faster plan is kept per shape.
    _W8A16_ONE_CONFIGS = [
        triton.Config({"BLOCK_N": 16, "BLOCK_K": 512, "SPLIT_K": 1}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_N": 16, "BLOCK_K": 256, "SPLIT_K": 1}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_N": 16, "BLOCK_K": 128, "SPLIT_K": 1}, num_warps=4, num_stages=6),
        triton.Config({"BLOCK_N": 32, "BLOCK_K": 256, "SPLIT_K": 1}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_N": 64, "BLOCK_K": 256, "SPLIT_K": 1}, num_warps=8, num_stages=3),
    ]
    _W8A16_SPLIT_CONFIGS = [
        triton.Config({"BLOCK_N": 32, "BLOCK_K": 256, "SPLIT_K": 4}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_N": 64, "BLOCK_K": 256, "SPLIT_K": 4}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_N": 64, "BLOCK_K": 128, "SPLIT_K": 8}, num_warps=4, num_stages=5),
        triton.Config({"BLOCK_N": 128, "BLOCK_K": 128, "SPLIT_K": 8}, num_warps=4, num_stages=4),
        triton.Config({"BLOCK_N": 128, "BLOCK_K": 256, "SPLIT_K": 4}, num_warps=8, num_stages=3),
        triton.Config({"BLOCK_N": 64, "BLOCK_K": 512, "SPLIT_K": 2}, num_warps=4, num_stages=3),
    ]

    def _w8a16_tuner(configs: list):
        return _quick_autotune(configs, ["M", "N", "K"])(
            triton.heuristics({"EVEN_K": _even_k})(triton.jit(_w8a16_kernel.fn))
        )

    _W8A16_SMALL = {
        None: _w8a16_tuner(_W8A16_ONE_CONFIGS + _W8A16_SPLIT_CONFIGS),
        "one": _w8a16_tuner(_W8A16_ONE_CONFIGS),
        "split": _w8a16_tuner(_W8A16_SPLIT_CONFIGS),
    }

    # 17-1024 rows: the same kernel with row tiles of 64-128 (16-bit tensor-core matmul, the
    # int8 weight converted in registers); raced against quantize + int8 GEMM per shape.
    _W8A16_BIG = _quick_autotune(
        [
            triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "SPLIT_K": 1}, num_warps=4, num_stages=4),
            triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64, "SPLIT_K": 1}, num_warps=8, num_stages=3),
            triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 128, "SPLIT_K": 1}, num_warps=4, num_stages=4),
            triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 64, "SPLIT_K": 1}, num_warps=4, num_stages=4),
            triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64, "SPLIT_K": 1}, num_warps=8, num_stages=3),
        ],
        ["M", "N", "K"],
    )(triton.heuristics({"EVEN_K": _even_k})(triton.jit(_w8a16_kernel.fn)))

    _GEMV_TUNED = _quick_autotune(
        [
            triton.Config({"BLOCK_N": 8, "BLOCK_K": 1024}, num_warps=4, num_stages=1),
            triton.Config({"BLOCK_N": 4, "BLOCK_K": 2048}, num_warps=4, num_stages=1),
            triton.Config({"BLOCK_N": 16, "BLOCK_K": 512}, num_warps=4, num_stages=1),
            triton.Config({"BLOCK_N": 8, "BLOCK_K": 2048}, num_warps=8, num_stages=1),
            triton.Config({"BLOCK_N": 16, "BLOCK_K": 1024}, num_warps=8, num_stages=1),
        ],
        ["N", "K"],
    )(triton.heuristics({"EVEN_K": _even_k})(triton.jit(_gemv_kernel.fn)))


# Best tile configuration per shape key, read off the autotuner after its first run: later
# calls launch the kernel directly with a precomputed grid, skipping the autotuner's (and
# heuristics') per-call Python work, which at 1-16 tokens costs more than the kernel itself.
_BEST: dict[tuple, tuple] = {}
_TIMINGS: dict[tuple, dict[str, float]] = {}

# K up to this: one pass per row (the row stays in registers); above: two passes (the second
# reads the row again, from L2), which keeps more rows in flight per SM.
ONE_PASS_MAX_K = 8192
ONE_PASS_WARPS = 8  # one pass, K > 2048
ONE_PASS_ROW_ELEMS = 0  # one pass: ROWS per program = this // BLOCK_K, at least 1 (H100: 1 row was fastest)
# w8a16 with fp16 activations: int8 -> fp16 by byte permutes (inline PTX) instead of I2F.
FAST_INT8_CVT = os.environ.get("BNB_INT8_FAST_CVT", "1") != "0"
TWO_PASS_BLOCK, TWO_PASS_WARPS = 4096, 8
# Rows per program of the outlier-column kernel (each program scans the column flags).
_OUTLIER_ROWS = 16


def _grid(kind: str, M: int, N: int, kw: dict) -> tuple:
    if kind == "gemm":
        return (triton.cdiv(M, kw["BLOCK_M"]) * triton.cdiv(N, kw["BLOCK_N"]),)
    if kind == "w8a16":
        return (triton.cdiv(N, kw["BLOCK_N"]), triton.cdiv(M, 16), kw.get("SPLIT_K", 1))
    if kind == "w8a16big":
        return (triton.cdiv(M, kw["BLOCK_M"]), triton.cdiv(N, kw["BLOCK_N"]))
    return (triton.cdiv(N, kw["BLOCK_N"]),)


def _grid_fn(kind: str, M: int, N: int):
    return lambda meta: _grid(kind, M, N, meta)


def _precompile_configs(tuned, grid, args: tuple, flags: dict) -> None:
    """Compile every configuration the autotuner ``tuned`` will time ahead of it, the first
    alone and the others on threads (``_common.compile_ahead``): the autotuner then finds
    them compiled."""

    def tunables(cfg) -> dict:
        # what the autotuner passes when it runs a configuration (Config.all_kwargs: Triton >= 3.1)
        if hasattr(cfg, "all_kwargs"):
            return cfg.all_kwargs()
        return dict(cfg.kwargs, num_warps=cfg.num_warps, num_stages=cfg.num_stages)

    calls = [partial(tuned.fn.warmup, *args, grid=grid, **flags, **tunables(c)) for c in getattr(tuned, "configs", ())]
    device = next((a.device for a in args if isinstance(a, torch.Tensor)), None)
    compile_ahead(device, calls[:1], calls[1:])


def _tune(kind: str, tuned, key: tuple, M: int, N: int, args: tuple, flags: dict) -> tuple:
    """First call for ``key``: let the autotuner pick (it launches the kernel), remember its
    choice (and timings)."""
    grid = _grid_fn(kind, M, N)
    _precompile_configs(tuned, grid, args, flags)
    tuned[grid](*args, **flags)
    cfg = tuned.best_config
    kw = dict(cfg.kwargs)
    best = (kw, cfg.num_warps, cfg.num_stages)
    _BEST[key] = best
    timings = getattr(tuned, "configs_timings", None) or {}
    _TIMINGS[key] = {f"{c.kwargs} w{c.num_warps} s{c.num_stages}": t for c, t in timings.items()}
    return best


class _Step:
    """One kernel launch of a plan: Triton's own launch (``slow``) and, once compiled, the
    direct launch of the compiled kernel with the same arguments (``fast``)."""

    __slots__ = ("ck", "consts", "grid", "kernel", "kw")

    def __init__(self, kernel, grid: tuple, kw: dict) -> None:
        self.kernel = kernel
        self.grid = grid
        self.kw = kw  # constexprs + launch options (num_warps, ...)
        self.ck = None
        self.consts: tuple = ()

    def slow(self, args: tuple) -> None:
        ck = self.kernel[self.grid](*args, **self.kw)
        if self.ck is None and ck is not None and not _INTERPRET:
            self.ck = ck
            self.consts = tuple(self.kw[n] for n in self.kernel.arg_names[len(args) :])


def _launch_step(kind: str, kernel, best: tuple, M: int, N: int, K: int, args: tuple, flags: dict) -> _Step:
    kw, warps, stages = best
    step = _Step(
        kernel,
        _grid(kind, M, N, kw),
        {**flags, **kw, "EVEN_K": K % kw["BLOCK_K"] == 0, "num_warps": warps, "num_stages": stages},
    )
    step.slow(args)
    return step


def best_configs() -> dict[tuple, tuple]:
    """The tile configurations the autotuner picked so far, per (kernel, shape) key."""
    return dict(_BEST)


def tuning_timings() -> dict[tuple, dict[str, float]]:
    """The autotuner's timings (ms) of every configuration it tried, per key (where Triton keeps them)."""
    return dict(_TIMINGS)


def _2d(t: torch.Tensor) -> torch.Tensor:
    if t.dim() != 2:
        t = t.reshape(-1, t.shape[-1])
    if t.shape[-1] > 1 and t.stride(-1) != 1:
        t = t.contiguous()
    return t


class _OnDevice:
    """Make ``device`` current while launching, only when it is not already (the common case
    costs one comparison)."""

    __slots__ = ("ctx",)

    def __init__(self, device: torch.device) -> None:
        index = device.index
        self.ctx = (
            torch.cuda.device(device)
            if device.type == "cuda" and index is not None and index != torch.cuda.current_device()
            else None
        )

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)


# ---------------------------------------------------------------------------------------
# Kernel steps: each builds its launch (arguments in signature order) and its configuration.


def _quant_step(M: int, K: int, threshold: float) -> _Step:
    one_pass = K <= ONE_PASS_MAX_K
    rows = 1
    if one_pass:
        block = triton.next_power_of_2(max(K, 16))
        warps = 4 if block <= 2048 else ONE_PASS_WARPS
        # rows per program: a tuning option (2-4 rows measured slower than 1 on the H100)
        rows = max(1, min(ONE_PASS_ROW_ELEMS // block, triton.next_power_of_2(M)))
    else:
        block, warps = TWO_PASS_BLOCK, TWO_PASS_WARPS
    kw = {"HAS_THRESHOLD": threshold > 0.0, "BLOCK_K": block, "ONE_PASS": one_pass, "ROWS": rows, "num_warps": warps}
    if not _INTERPRET:
        kw["enable_fp_fusion"] = False  # the codes must round x * scale exactly as the reference does
    return _Step(_row_quant_kernel, (triton.cdiv(M, rows),), kw)


def _quant_args(A2, codes, row_stats, fl, threshold: float) -> tuple:
    M, K = A2.shape
    return (
        A2,
        codes,
        row_stats,
        fl if fl is not None else row_stats,
        M,
        K,
        A2.stride(0),
        codes.stride(0),
        threshold,
        1,
    )


def _outlier_step(M: int, K: int, zero_codes: bool) -> _Step:
    rows = _OUTLIER_ROWS if M <= 2048 else 4 * _OUTLIER_ROWS
    block = 256 if _INTERPRET else min(triton.next_power_of_2(max(K, 16)), 8192)
    kw = {
        "ROWS": rows,
        "BLOCK": block,
        "BLOCK_J": 16 if _INTERPRET else 32,
        "ZERO_CODES": zero_codes,
        "num_warps": max(4, min(16, block // 512)),  # at most 16 flags per thread
    }
    return _Step(_outlier_cols_kernel, (triton.cdiv(M, rows) if zero_codes else 1,), kw)


def _outlier_args(fl, ws, codes, M: int, K: int) -> tuple:
    return (fl, ws, codes, M, K, codes.stride(0), 1)


def row_quant(
    A: torch.Tensor, threshold: float = 0.0, zero_cols: bool = True, list_dtype: torch.dtype = torch.int32
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Quantize the rows of ``A`` (fused kernel) and, with a threshold, find the outlier columns.

    Returns ``(codes [rows, K] int8, row_stats [rows] float32, cols)``: ``cols`` (``list_dtype``,
    [K + 1], None without a threshold) holds the ascending outlier columns at ``cols[:n]`` and
    ``n`` at ``cols[K]``, on the device. With ``zero_cols`` every code of an outlier column is 0
    (the reference's codes); else only the outlier elements are. Launches directly (no
    Triton binder) from the second call of a shape on.
    """
    A2 = _2d(A)
    rows, K = A2.shape
    device = A2.device
    codes = torch.empty((rows, K), device=device, dtype=torch.int8)
    row_stats = torch.empty(rows, device=device, dtype=torch.float32)
    has_t = threshold > 0.0
    fl = torch.zeros(K, device=device, dtype=torch.int32) if has_t else None  # flags of epoch 1
    cols = torch.empty(K + 1, device=device, dtype=list_dtype) if has_t else None
    if rows == 0 or K == 0:
        if cols is not None:
            cols[K:] = 0
        return codes, row_stats, cols
    t = float(threshold)
    key = (rows, K, A2.stride(0), A2.dtype, has_t, zero_cols, list_dtype, device.index)
    steps = _QUANT_STEPS.get(key)
    aligned = (A2.data_ptr() & 15) == 0
    if (
        steps is not None
        and _QUANT_DIRECT.get(key)
        and aligned
        and (device.type != "cuda" or torch.cuda.device_count() == 1 or torch.cuda.current_device() == device.index)
    ):
        stream = _stream_of(device.index if device.index is not None else 0)
        ptr = _ptr if _INT_POINTERS else _same
        cp, rp = ptr(codes), ptr(row_stats)
        flp = ptr(fl) if has_t else rp
        q = steps[0]
        direct_launch(q.ck, q.grid, stream, (ptr(A2), cp, rp, flp, rows, K, A2.stride(0), K, t, 1, *q.consts))
        if has_t:
            o = steps[1]
            direct_launch(o.ck, o.grid, stream, (flp, ptr(cols), cp, rows, K, K, 1, *o.consts))
        return codes, row_stats, cols
    fresh = steps is None
    if fresh:
        steps = [_quant_step(rows, K, threshold)]
        if has_t:
            steps.append(_outlier_step(rows, K, zero_cols))
    with _OnDevice(device):
        steps[0].slow(_quant_args(A2, codes, row_stats, fl, t))
        if has_t:
            steps[1].slow(_outlier_args(fl, cols, codes, rows, K))
    if fresh and aligned:
        _QUANT_STEPS[key] = steps
    elif (
        not fresh
        and aligned
        and _DIRECT
        and device.type in _DIRECT_DEVICES
        and steps[0].ck is not None
        and not _capturing(device)
    ):
        # second call of this shape: check a direct launch against Triton's (one host sync)
        _QUANT_DIRECT[key] = True
        try:
            got = row_quant(A2, threshold, zero_cols, list_dtype)
            same = torch.equal(got[0], codes) and torch.equal(got[1], row_stats)
            if has_t:
                n = int(cols[K])
                same = same and int(got[2][K]) == n and torch.equal(got[2][:n], cols[:n])
        except Exception:  # pragma: no cover - depends on the Triton build
            same = False
        _QUANT_DIRECT[key] = same
    return codes, row_stats, cols


def _ptr(t: torch.Tensor) -> int:
    return t.data_ptr()


def _same(t: torch.Tensor) -> torch.Tensor:
    return t


_QUANT_STEPS: dict[tuple, list] = {}  # row_quant's launches per shape (compiled kernels after a call)
_QUANT_DIRECT: dict[tuple, bool] = {}  # whether a direct launch was checked for the shape


def _gemm_args(CA, CB, out, row_stats, col_stats, bias, X, ws) -> tuple:
    M, K = CA.shape
    N = CB.shape[0]
    epilogue = row_stats is not None
    has_out = epilogue and X is not None
    dummy = row_stats if epilogue else out
    return (
        CA,
        CB,
        out,
        row_stats if epilogue else dummy,
        col_stats if epilogue else dummy,
        bias if bias is not None else dummy,
        X if has_out else CA,
        ws if has_out else dummy,
        M,
        N,
        K,
        _mbucket(M),
        CA.stride(0),
        CB.stride(0),
        out.stride(0),
        X.stride(0) if has_out else 0,
    )


def _gemm_flags(epilogue: bool, has_bias: bool, X, subtract_outliers: bool) -> dict:
    has_out = epilogue and X is not None
    return {
        "EPILOGUE": 1 if epilogue else 0,
        "HAS_BIAS": has_bias,
        "HAS_OUTLIERS": has_out,
        "SUBTRACT_OUTLIERS": has_out and subtract_outliers,
        "IEEE": has_out and X.dtype == torch.float32,
        # outlier columns per epilogue step: 16 (the 16-bit dot's minimum; a few columns is
        # the common case), 32 where their int8 product is subtracted (int8 dot minimum)
        "BLOCK_J": 32 if (has_out and subtract_outliers) else 16,
    }


def _gemm_step(M: int, N: int, K: int, args: tuple, flags: dict, out_dtype, a_dtype) -> _Step:
    """Pick the tile configuration (autotuning at the first call of a shape, which launches
    the kernel) and launch it once through Triton."""
    if _INTERPRET:
        best = ({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_M": 4}, 4, 1)
    elif not AUTOTUNE:
        best = ({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}, 8, 3)
    else:
        key = ("gemm", _mbucket(M), N, K, out_dtype, a_dtype, *flags.values())
        best = _BEST.get(key)
        if best is None:
            best = _tune("gemm", _GEMM_TUNED, key, M, N, args, flags)
    return _launch_step("gemm", _int8_gemm_kernel, best, M, N, K, args, flags)


def gemm(
    CA: torch.Tensor,
    CB: torch.Tensor,
    row_stats: torch.Tensor | None = None,
    col_stats: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
    X: torch.Tensor | None = None,
    ws: torch.Tensor | None = None,
    subtract_outliers: bool = True,
) -> torch.Tensor:
    """``CA [M, K] @ CB [N, K].T`` in int32; with ``row_stats``/``col_stats`` dequantized to
    ``dtype`` (+ ``bias``); with ``X``/``ws`` (the outlier columns, see :func:`row_quant`) plus
    the 16-bit outlier columns (``subtract_outliers``: their codes in ``CA`` are not 0)."""
    M, K = CA.shape
    N = CB.shape[0]
    epilogue = row_stats is not None
    out_dtype = (dtype or torch.float16) if epilogue else torch.int32
    out = torch.empty((M, N), device=CA.device, dtype=out_dtype)
    if M == 0 or N == 0:
        return out
    if K == 0:
        out.zero_()
        if epilogue and bias is not None:
            out += bias.to(out.dtype)
        return out
    args = _gemm_args(CA, CB, out, row_stats, col_stats, bias, X, ws)
    flags = _gemm_flags(epilogue, bias is not None, X, subtract_outliers)
    with _OnDevice(CA.device):
        _gemm_step(M, N, K, args, flags, out_dtype, CA.dtype)
    return out


# K is split in at most this many slices (2-16 rows); the partial sums buffer is sized for it
# until the configuration is known.
_MAX_SPLIT = 8


def _tile_counters(M: int, N: int, device: torch.device) -> torch.Tensor:
    """Zeroed split-K counters, one per (16-row, 16-column) tile: enough for every w8a16
    configuration (each launch leaves them at zero)."""
    return torch.zeros(triton.cdiv(M, 16) * triton.cdiv(N, 16), device=device, dtype=torch.int32)


def _w8a16_args(X, CB, SCB, bias, out, part, cnt) -> tuple:
    M, K = X.shape
    return (
        X,
        CB,
        SCB,
        bias if bias is not None else SCB,
        out,
        part if part is not None else out,
        cnt if cnt is not None else SCB,
        M,
        CB.shape[0],
        K,
        X.stride(0),
        CB.stride(0),
        out.stride(0),
    )


def _w8a16_step(
    kind: str, M: int, N: int, K: int, args: tuple, dtype, has_bias: bool, mode: str | None = None
) -> _Step:
    """``mode`` (2-16 rows): None any configuration, "one" one K slice, "split" several."""
    small = kind == "w8a16"
    flags = {"HAS_BIAS": has_bias, "IEEE": dtype == torch.float32, "M_MAJOR": not small}
    flags["FAST_CVT"] = FAST_INT8_CVT and not _INTERPRET and dtype == torch.float16
    if small:
        flags["BLOCK_M"] = 16
    if _INTERPRET:
        if small:
            best = ({"BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 2}, 4, 1)
        else:
            best = ({"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "SPLIT_K": 1}, 4, 1)
    elif not AUTOTUNE:
        if small:
            best = ({"BLOCK_N": 64, "BLOCK_K": 256, "SPLIT_K": 4}, 4, 4)
        else:
            best = ({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64, "SPLIT_K": 1}, 4, 4)
    else:
        key = (kind, mode, M, N, K, dtype, *flags.values())
        best = _BEST.get(key)
        if best is None:
            best = _tune(kind, _W8A16_SMALL[mode] if small else _W8A16_BIG, key, M, N, args, flags)
    return _launch_step(kind, _w8a16_kernel, best, M, N, K, args, flags)


def _zero_k(X: torch.Tensor, N: int, bias: torch.Tensor | None) -> torch.Tensor:
    out = torch.zeros((X.shape[0], N), device=X.device, dtype=X.dtype)
    return out if bias is None else out.add_(bias.to(out.dtype))


def w8a16(X: torch.Tensor, CB: torch.Tensor, SCB: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``X [M, K] @ (CB * SCB / 127).T (+ bias)`` on the tensor cores (M padded to 16),
    reading each weight byte once (K split in slices where that is faster)."""
    M, K = X.shape
    N = CB.shape[0]
    if M == 0 or N == 0 or K == 0:
        return _zero_k(X, N, bias)
    out = torch.empty((M, N), device=X.device, dtype=X.dtype)
    part = torch.empty((_MAX_SPLIT, M, N), device=X.device, dtype=torch.float32)
    cnt = _tile_counters(M, N, X.device)
    with _OnDevice(X.device):
        _w8a16_step("w8a16", M, N, K, _w8a16_args(X, CB, SCB, bias, out, part, cnt), X.dtype, bias is not None)
    return out


def w8a16_big(X: torch.Tensor, CB: torch.Tensor, SCB: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Like :func:`w8a16` for more rows (row tiles of 64-128): one launch, no activation
    quantization, every column (outlier or not) multiplied in 16-bit."""
    M, K = X.shape
    N = CB.shape[0]
    if M == 0 or N == 0 or K == 0:
        return _zero_k(X, N, bias)
    out = torch.empty((M, N), device=X.device, dtype=X.dtype)
    with _OnDevice(X.device):
        _w8a16_step("w8a16big", M, N, K, _w8a16_args(X, CB, SCB, bias, out, None, None), X.dtype, bias is not None)
    return out


def _gemv_args(X, CB, SCB, bias, out) -> tuple:
    return (X, CB, SCB, bias if bias is not None else SCB, out, CB.shape[0], X.shape[1], CB.stride(0))


def _gemv_step(N: int, K: int, args: tuple, dtype, has_bias: bool) -> _Step:
    flags = {"HAS_BIAS": has_bias}
    if _INTERPRET:
        best = ({"BLOCK_N": 4, "BLOCK_K": 32}, 4, 1)
    elif not AUTOTUNE:
        best = ({"BLOCK_N": 8, "BLOCK_K": 1024}, 4, 1)
    else:
        key = ("gemv", N, K, dtype, *flags.values())
        best = _BEST.get(key)
        if best is None:
            best = _tune("gemv", _GEMV_TUNED, key, 1, N, args, flags)
    return _launch_step("gemv", _gemv_kernel, best, 1, N, K, args, flags)


def gemv(X: torch.Tensor, CB: torch.Tensor, SCB: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """One row: ``X [1, K] @ (CB * SCB / 127).T (+ bias)`` on the CUDA cores (no tile padding)."""
    K = X.shape[-1]
    N = CB.shape[0]
    if N == 0 or K == 0:
        return _zero_k(X.reshape(1, K), N, bias)
    out = torch.empty((1, N), device=X.device, dtype=X.dtype)
    with _OnDevice(X.device):
        _gemv_step(N, K, _gemv_args(X, CB, SCB, bias, out), X.dtype, bias is not None)
    return out


# ---------------------------------------------------------------------------------------
# The inference forward of one int8 weight: plans per (rows, dtype, bias, threshold).

_DIRECT = direct_launch_supported()
_DIRECT_DEVICES = ("cuda",)  # tests add "cpu" to check the direct-launch arguments under the interpreter
_INT_POINTERS = True  # direct launches pass addresses (the interpreter test passes tensors)


_stream_of = current_stream  # a module global, so the interpreter test can replace it


_MAX_EPOCH = 1 << 30  # then the flags are zeroed and the epochs start again


def _align16(n: int) -> int:
    return (n + 15) & ~15


class _Plan:
    """One path for one input shape: which buffers a call allocates, the arguments of each
    launch, and the launches. Built (its kernels compiled, autotuned) at the first call; from
    then on launched directly (``direct_launch``: integer pointers, no binder), once a direct
    launch has been checked to give the same result as Triton's own launch."""

    __slots__ = (
        "K", "M", "N", "counters", "dtype", "epoch", "fast", "flags", "kind", "lin", "mode", "offs", "split", "steps",
        "threshold",
    )  # fmt: skip

    def __init__(
        self, lin: "_Int8Linear", kind: str, M: int, dtype: torch.dtype, threshold: float, mode: str | None = None
    ) -> None:
        self.lin = lin
        self.mode = mode  # w8a16: which configurations (see _w8a16_step)
        self.kind = kind  # "gemv" | "w8a16" | "w8a16big" | "int8"
        self.M = M
        self.N = lin.N
        self.K = lin.K
        self.dtype = dtype
        self.threshold = threshold if kind == "int8" else 0.0
        self.steps: list[_Step] | None = None
        self.fast = False
        self.split = 0  # w8a16: slices of K (0: not chosen yet, buffers sized for _MAX_SPLIT)
        # int8 with a threshold: the outlier-column flags, kept between calls; a column is
        # flagged in this call when its flag >= epoch (no zeroing launch per call)
        self.flags: torch.Tensor | None = None
        self.epoch = 0
        self.counters: torch.Tensor | None = None  # w8a16 split over K: one counter per tile
        # int8: one int8 buffer holds the codes [M, K], the row stats (float32) and, with a
        # threshold, the outlier list (int32 [K + 1]); 16-byte aligned offsets
        rs = _align16(M * self.K)
        ws = rs + _align16(4 * M)
        self.offs = (rs, ws, ws + (_align16(4 * (self.K + 1)) if self.threshold > 0.0 else 0))

    def alloc(self, device: torch.device) -> tuple:
        """This call's buffers: (out, scratch, flags)."""
        M, N = self.M, self.N
        if self.kind == "gemv":
            return torch.empty((1, N), device=device, dtype=self.dtype), None, None
        out = torch.empty((M, N), device=device, dtype=self.dtype)
        if self.kind == "w8a16":
            split = self.split or _MAX_SPLIT
            part = torch.empty((split, M, N), device=device, dtype=torch.float32) if split > 1 else None
            if part is not None and self.counters is None:
                self.counters = _tile_counters(M, N, device)  # kept: every launch leaves them at zero
            return out, part, None
        if self.kind == "w8a16big":
            return out, None, None
        buf = torch.empty(self.offs[2], device=device, dtype=torch.int8)
        fl = None
        if self.threshold > 0.0:
            fl = self.flags
            self.epoch += 1
            if fl is None or self.epoch >= _MAX_EPOCH:
                fl = self.flags = torch.zeros(self.K, device=device, dtype=torch.int32)
                self.epoch = 1
        return out, buf, fl

    def args(self, A2: torch.Tensor, bias: torch.Tensor | None, bufs: tuple, ptrs: bool) -> list[tuple]:
        """The arguments of each launch, with tensors (Triton's launch) or, with ``ptrs``,
        integer addresses (direct launch: the launcher does not inspect them)."""
        lin = self.lin
        M, N, K = self.M, self.N, self.K
        out, scratch, fl = bufs
        if ptrs:
            x, cb, scb, o = A2.data_ptr(), lin.cb_ptr, lin.scb_ptr, out.data_ptr()
            b = bias.data_ptr() if bias is not None else None
        else:
            x, cb, scb, o, b = A2, lin.CB, lin.SCB, out, bias
        kind = self.kind
        if kind == "gemv":
            return [(x, cb, scb, scb if b is None else b, o, N, K, K)]
        if kind == "w8a16big" or (kind == "w8a16" and scratch is None):
            return [(x, cb, scb, scb if b is None else b, o, o, scb, M, N, K, K, K, N)]
        if kind == "w8a16":
            part = scratch.data_ptr() if ptrs else scratch
            cnt = self.counters.data_ptr() if ptrs else self.counters
            return [(x, cb, scb, scb if b is None else b, o, part, cnt, M, N, K, K, K, N)]
        o_rs, o_ws, _ = self.offs
        if ptrs:
            base = scratch.data_ptr()
            codes, rs, ws = base, base + o_rs, base + o_ws
            flags = fl.data_ptr() if fl is not None else None
        else:
            codes = scratch[: M * K].view(M, K)
            rs = scratch[o_rs : o_rs + 4 * M].view(torch.float32)
            ws = scratch[o_ws : o_ws + 4 * (K + 1)].view(torch.int32) if fl is not None else None
            flags = fl
        mb = _mbucket(M)
        bb = rs if b is None else b
        if self.threshold > 0.0:
            e = self.epoch
            return [
                (x, codes, rs, flags, M, K, K, K, self.threshold, e),
                (flags, ws, codes, M, K, K, e),
                (codes, cb, o, rs, scb, bb, x, ws, M, N, K, mb, K, K, N, K),
            ]
        return [
            (x, codes, rs, rs, M, K, K, K, 0.0, 1),
            (codes, cb, o, rs, scb, bb, codes, rs, M, N, K, mb, K, K, N, 0),
        ]

    def prepare(self, A2: torch.Tensor, bias: torch.Tensor | None, check: bool) -> torch.Tensor:
        """First call: choose configurations (autotune), launch through Triton and, with
        ``check`` (a plan that is kept), check a direct launch against it (one host sync)."""
        bufs = self.alloc(A2.device)
        argsets = self.args(A2, bias, bufs, False)
        M, N, K, dtype = self.M, self.N, self.K, A2.dtype
        has_bias = bias is not None
        with _OnDevice(A2.device):
            if self.kind == "gemv":
                steps = [_gemv_step(N, K, argsets[0], dtype, has_bias)]
            elif self.kind == "w8a16big":
                steps = [_w8a16_step(self.kind, M, N, K, argsets[0], dtype, has_bias)]
            elif self.kind == "w8a16":
                step = _w8a16_step(self.kind, M, N, K, argsets[0], dtype, has_bias, self.mode)
                self.split = step.kw["SPLIT_K"]
                steps = [step]
            else:
                quant = _quant_step(M, K, self.threshold)
                quant.slow(argsets[0])
                steps = [quant]
                if self.threshold > 0.0:
                    outl = _outlier_step(M, K, True)
                    outl.slow(argsets[1])
                    steps.append(outl)
                flags = _gemm_flags(True, has_bias, A2 if self.threshold > 0.0 else None, False)
                steps.append(_gemm_step(M, N, K, argsets[-1], flags, dtype, torch.int8))
        self.steps = steps
        out = bufs[0]
        if (
            check
            and _DIRECT
            and A2.device.type in _DIRECT_DEVICES
            and all(s.ck is not None for s in steps)
            and _aligned(A2, bias)
            and not _capturing(A2.device)
        ):
            self._check_direct(A2, bias, out)
        return out

    def _check_direct(self, A2: torch.Tensor, bias: torch.Tensor | None, out: torch.Tensor) -> None:
        global _DIRECT
        try:
            got = self.run_direct(A2, bias)
            ok = torch.equal(got, out)
        except Exception as exc:  # pragma: no cover - depends on the Triton build
            ok = False
            reason = repr(exc)
        else:
            reason = "results differ"
        if ok:
            self.fast = True
            return
        _DIRECT = False
        warnings.warn(
            f"bnb-kernels: direct launch of the int8 kernels failed its check ({reason}); using Triton's launcher "
            "(slower per call)",
            RuntimeWarning,
            stacklevel=2,
        )

    def run_direct(self, A2: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        bufs = self.alloc(A2.device)
        stream = _stream_of(self.lin.index)
        for step, args in zip(self.steps, self.args(A2, bias, bufs, _INT_POINTERS)):  # type: ignore[arg-type]
            direct_launch(step.ck, step.grid, stream, args + step.consts)
        return bufs[0]

    def run_triton(self, A2: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        bufs = self.alloc(A2.device)
        with _OnDevice(A2.device):
            for step, args in zip(self.steps, self.args(A2, bias, bufs, False)):  # type: ignore[arg-type]
                step.slow(args)
        return bufs[0]

    def __call__(self, A2: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        if self.fast and _aligned(A2, bias) and self.lin.on_current_device():
            return self.run_direct(A2, bias)
        if self.steps is None:
            return self.prepare(A2, bias, self.lin.keep)
        return self.run_triton(A2, bias)


def _capturing(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _aligned(A2: torch.Tensor, bias: torch.Tensor | None) -> bool:
    # the kernels were compiled for 16-byte aligned pointers (Triton's specialization)
    return (A2.data_ptr() & 15) == 0 and (bias is None or (bias.data_ptr() & 15) == 0)


# Which path is faster, per shape, timed once on the device (each path launched directly,
# so the comparison is of GPU time): one row (gemv on the CUDA cores or w8a16), and
# SMALL_M < rows <= MID_M (w8a16 with row tiles, or quantize + int8 GEMM).
_ONE_ROW: dict[tuple, bool] = {}
_SMALL: dict[tuple, bool] = {}  # 2-16 rows: K split in slices (summed in the kernel) or not
MID_M = 1024
_MID: dict[tuple, bool] = {}
_MAX_PLANS = 64


def _race(a: _Plan, b: _Plan, A2: torch.Tensor, bias: torch.Tensor | None) -> tuple[float, float]:
    from triton.testing import do_bench

    a.prepare(A2, bias, True)
    b.prepare(A2, bias, True)
    ta = do_bench(lambda: a(A2, bias), warmup=10, rep=40, return_mode="median")
    tb = do_bench(lambda: b(A2, bias), warmup=10, rep=40, return_mode="median")
    return ta, tb


class _Int8Linear:
    """An int8 weight ``CB`` [N, K] with its row absmax ``SCB`` bound once: ``run(A, bias,
    threshold)`` is ``int8_linear_fused``. Keeps a plan per input shape, so that a call costs
    the allocation of its outputs and the direct kernel launches."""

    __slots__ = ("CB", "K", "N", "SCB", "cb_ptr", "device", "index", "keep", "multi", "plans", "scb_ptr")

    def __init__(self, CB: torch.Tensor, SCB: torch.Tensor, keep: bool = True) -> None:
        if CB.dtype != torch.int8 or CB.dim() != 2:
            raise ValueError(f"CB must be a 2-d int8 tensor, got {CB.dtype} of shape {tuple(CB.shape)}")
        N, K = CB.shape
        if SCB.dim() != 1 or SCB.shape[0] != N:
            raise ValueError(f"SCB must hold {N} values, got shape {tuple(SCB.shape)}")
        if SCB.device != CB.device:
            raise ValueError(f"SCB is on {SCB.device} but CB on {CB.device}")
        self.CB = CB if CB.is_contiguous() else CB.contiguous()
        self.SCB = (SCB if SCB.dtype == torch.float32 else SCB.float()).contiguous()
        self.cb_ptr = self.CB.data_ptr()
        self.scb_ptr = self.SCB.data_ptr()
        self.N, self.K = N, K
        self.device = CB.device
        cuda = CB.device.type == "cuda"
        self.index = (CB.device.index if CB.device.index is not None else torch.cuda.current_device()) if cuda else 0
        self.multi = cuda and torch.cuda.device_count() > 1
        self.plans: dict[tuple, _Plan] = {}
        self.keep = keep  # False: one call (the op), nothing kept, no check of direct launches

    def on_current_device(self) -> bool:
        return not self.multi or torch.cuda.current_device() == self.index

    def __call__(self, A: torch.Tensor, bias: torch.Tensor | None = None, threshold: float = 0.0) -> torch.Tensor:
        K = self.K
        if A.shape[-1] != K:
            raise ValueError(f"A {tuple(A.shape)} does not match CB {(self.N, K)} (last dimensions differ)")
        A2 = A if A.dim() == 2 else A.reshape(-1, K)
        if not A2.is_contiguous():
            A2 = A2.contiguous()
        if bias is not None and bias.dtype != A2.dtype:
            bias = bias.to(A2.dtype)
        M = A2.shape[0]
        key = (M, A2.dtype, bias is not None, threshold)
        plan = self.plans.get(key)
        if plan is None:
            if M == 0 or K == 0 or self.N == 0:
                out = _zero_k(A2, self.N, bias)
                return out if A.dim() == 2 else out.reshape(*A.shape[:-1], self.N)
            if len(self.plans) >= _MAX_PLANS:
                self.plans.clear()
            out, plan = self._first_call(A2, bias, threshold)
            if self.keep:
                self.plans[key] = plan
        else:
            out = plan(A2, bias)
        return out if A.dim() == 2 else out.reshape(*A.shape[:-1], self.N)

    def _first_call(self, A2: torch.Tensor, bias, threshold: float) -> tuple[torch.Tensor, _Plan]:
        M, N, K = A2.shape[0], self.N, self.K
        dtype = A2.dtype
        race = AUTOTUNE and not _INTERPRET and not _capturing(A2.device)
        if M == 1:
            key = (N, K, dtype, bias is not None)
            use_gemv = _ONE_ROW.get(key, None if race else True)
            if use_gemv is None:
                g = _Plan(self, "gemv", M, dtype, threshold)
                w = _Plan(self, "w8a16", M, dtype, threshold, "one")
                t_g, t_w = _race(g, w, A2, bias)
                use_gemv = _ONE_ROW[key] = t_g <= t_w
                _TIMINGS[("one_row", *key)] = {"gemv": t_g, "w8a16": t_w}
                plan = g if use_gemv else w
                return plan(A2, bias), plan
            plan = _Plan(self, "gemv" if use_gemv else "w8a16", M, dtype, threshold, "one")
        elif M <= SMALL_M:
            key = (M, N, K, dtype, bias is not None)
            use_split = _SMALL.get(key, None if race else True)
            if use_split is None:
                one = _Plan(self, "w8a16", M, dtype, threshold, "one")
                split = _Plan(self, "w8a16", M, dtype, threshold, "split")
                t_one, t_split = _race(one, split, A2, bias)
                use_split = _SMALL[key] = t_split < t_one
                _TIMINGS[("small_rows", *key)] = {"one": t_one, "split": t_split}
                plan = split if use_split else one
                return plan(A2, bias), plan
            plan = _Plan(self, "w8a16", M, dtype, threshold, "split" if use_split else "one")
        elif M <= MID_M and dtype != torch.float32:
            key = (_mbucket(M), N, K, dtype, threshold > 0.0, bias is not None)
            use_w = _MID.get(key, None if race else False)
            if use_w is None:
                w = _Plan(self, "w8a16big", M, dtype, threshold)
                q = _Plan(self, "int8", M, dtype, threshold)
                t_w, t_q = _race(w, q, A2, bias)
                use_w = _MID[key] = t_w < t_q
                _TIMINGS[("mid_rows", *key)] = {"w8a16_big": t_w, "int8": t_q}
                plan = w if use_w else q
                return plan(A2, bias), plan
            plan = _Plan(self, "w8a16big" if use_w else "int8", M, dtype, threshold)
        else:
            plan = _Plan(self, "int8", M, dtype, threshold)
        return plan(A2, bias), plan


def prepare_int8_linear(CB: torch.Tensor, SCB: torch.Tensor):
    """``run(A, bias=None, threshold=0.0)`` equal to ``int8_linear_fused(A, CB, SCB, bias,
    threshold)``, with per-shape launch plans kept between calls (modules cache it)."""
    return _Int8Linear(CB, SCB)


def path_taken(M: int, N: int, K: int, dtype: torch.dtype, threshold: float, has_bias: bool) -> str:
    """Which kernel path ``int8_linear_fused`` takes for this shape (after its first call)."""
    if M == 1:
        one = _ONE_ROW.get((N, K, dtype, has_bias), not AUTOTUNE or _INTERPRET)
        return "gemv (1 row)" if one else "w8a16 (1 row)"
    if M <= SMALL_M:
        split = _SMALL.get((M, N, K, dtype, has_bias), not AUTOTUNE or _INTERPRET)
        return "w8a16 split-K" if split else "w8a16"
    if M <= MID_M and dtype != torch.float32:
        mid = _MID.get((_mbucket(M), N, K, dtype, threshold > 0.0, has_bias))
        if mid:
            return "w8a16 row tiles"
    return "quant + int8 gemm"


def _read_count(count: torch.Tensor) -> int:
    """The device-side counter on the host: a non-blocking copy into pinned memory and a
    stream synchronization. (``.item()`` copies to pageable memory. Reusing one pinned word,
    or polling it or an event instead of synchronizing, did not help on the H100 machine:
    the wait costs about 40 us there either way.)"""
    if count.device.type != "cuda":
        return int(count.item())
    host = torch.empty(1, dtype=count.dtype, pin_memory=True)
    host.copy_(count.reshape(1), non_blocking=True)
    torch.cuda.current_stream(count.device).synchronize()
    return int(host.item())


def _available() -> bool:
    return available()


if HAS_TRITON:

    @register("int8_vectorwise_quant", "triton", "cuda", available=_available)
    def int8_vectorwise_quant(A: torch.Tensor, threshold: float = 0.0):
        torch._check(threshold >= 0.0, lambda: f"threshold must be >= 0, got {threshold}")
        codes, row_stats, cols = row_quant(A, threshold, zero_cols=True, list_dtype=torch.int64)
        codes = codes.reshape(A.shape)
        if threshold > 0.0:
            # the op returns a data-dependent size: its one host synchronization, after every
            # kernel (quantize, outlier columns sorted and zeroed) has been queued
            n = _read_count(cols[-1:])
            return codes, row_stats, cols[:n]
        return codes, row_stats, None

    @register("int8_linear_matmul", "triton", "cuda", available=_available)
    def int8_linear_matmul(A: torch.Tensor, B: torch.Tensor) -> torch.Tensor:
        torch._check(A.dtype == torch.int8 and B.dtype == torch.int8, lambda: "A and B must be int8")
        out = gemm(_2d(A), _2d(B))
        return out.reshape(*A.shape[:-1], B.shape[0])

    @register("int8_linear_matmul.out", "triton", "cuda", available=_available)
    def int8_linear_matmul_out(A: torch.Tensor, B: torch.Tensor, out: torch.Tensor) -> None:
        torch._check(out.dtype == torch.int32, lambda: f"out must be int32, got {out.dtype}")
        out.copy_(gemm(_2d(A), _2d(B)).reshape(out.shape))

    @register("int8_mm_dequant", "triton", "cuda", available=_available)
    def int8_mm_dequant(
        A: torch.Tensor,
        row_stats: torch.Tensor,
        col_stats: torch.Tensor,
        dtype: torch.dtype | None = None,
        bias: torch.Tensor | None = None,
    ) -> torch.Tensor:
        torch._check(A.dtype == torch.int32, lambda: f"A must be int32, got {A.dtype}")
        A2 = A.reshape(-1, A.shape[-1]).contiguous()
        M, N = A2.shape
        out = torch.empty((M, N), device=A.device, dtype=dtype or torch.float16)
        if out.numel():
            row = row_stats.reshape(-1).float()
            col = col_stats.reshape(-1).float()
            with _OnDevice(A.device):
                _mm_dequant_kernel[(triton.cdiv(M * N, 1024),)](
                    A2, row, col, bias if bias is not None else row, out, M, N, HAS_BIAS=bias is not None, BLOCK=1024
                )
        return out.reshape(A.shape)

    @register("int8_scaled_mm", "triton", "cuda", available=_available)
    def int8_scaled_mm(
        A: torch.Tensor,
        B: torch.Tensor,
        row_stats: torch.Tensor,
        col_stats: torch.Tensor,
        bias: torch.Tensor | None = None,
        dtype: torch.dtype | None = None,
    ) -> torch.Tensor:
        out = gemm(_2d(A), _2d(B), row_stats.reshape(-1).float(), col_stats.reshape(-1).float(), bias, dtype)
        return out.reshape(*A.shape[:-1], B.shape[0])

    @register("int8_mixed_scaled_mm", "triton", "cuda", available=_available)
    def int8_mixed_scaled_mm(
        A: torch.Tensor,
        CA: torch.Tensor,
        CB: torch.Tensor,
        SCA: torch.Tensor,
        SCB: torch.Tensor,
        outlier_cols: torch.Tensor | None = None,
        bias: torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        A2 = _2d(A)
        rows = A2.shape[0]
        if outlier_cols is None or outlier_cols.numel() == 0:
            out = gemm(_2d(CA), CB, SCA.reshape(-1).float(), SCB.reshape(-1).float(), bias, A.dtype)
            return out.reshape(*A.shape[:-1], CB.shape[0]), A.new_empty((rows, 0))
        K = A2.shape[1]
        n = outlier_cols.numel()
        ws = torch.empty(K + 1, device=A.device, dtype=torch.int32)
        ws[:n] = outlier_cols.to(device=A.device, dtype=torch.int32)
        ws[K] = n
        # the caller's codes of the outlier columns need not be 0: their int8 part is subtracted
        out = gemm(_2d(CA), CB, SCA.reshape(-1).float(), SCB.reshape(-1).float(), bias, A.dtype, A2, ws, True)
        return out.reshape(*A.shape[:-1], CB.shape[0]), A2[:, outlier_cols.long()]

    @register("int8_linear_fused", "triton", "cuda", available=_available)
    def int8_linear_fused(
        A: torch.Tensor,
        CB: torch.Tensor,
        SCB: torch.Tensor,
        bias: torch.Tensor | None = None,
        threshold: float = 0.0,
    ) -> torch.Tensor:
        return _Int8Linear(CB, SCB, keep=False)(A, bias, float(threshold))

    int8_linear_fused.prepare = prepare_int8_linear  # type: ignore[attr-defined]
