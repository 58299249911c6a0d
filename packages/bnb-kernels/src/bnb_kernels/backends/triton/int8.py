"""Triton GPU kernels of the LLM.int8() ops.

- ``_row_quant_kernel``: one pass over the activations. Per row: the absmax of the
  non-outlier values, the int8 codes (outlier elements get 0) and, with a threshold, the
  outlier columns: a column flag plus a compact device-side list of the flagged columns
  (atomics, only in rows that hold an outlier; no host synchronization). Compiled without
  fused multiply-add so the codes equal the reference's.
- ``_int8_gemm_kernel``: int8 x int8 -> int32 on the tensor cores (``tl.dot``), with the
  dequantization (row scale x column scale x 1/127^2), the bias and the fp16 outlier
  columns applied in the epilogue. The outlier columns come from the device-side list, so
  the loop bound is read on the GPU: a forward can be captured in a CUDA graph. For those
  columns the epilogue first removes their int8 contribution exactly (integer dot
  subtracted from the accumulator), then adds ``A[:, cols] @ dequant(CB[:, cols]).T`` in
  16-bit with float32 accumulation, which is the reference's mixed decomposition.
- ``_w8a16_kernel`` (weight-only): reads each int8 weight byte once, converts it to the
  activation dtype in registers and multiplies the activations as they are (no activation
  quantization: every column, outlier or not, is exact). Row tiles of 16 for 2-16 rows,
  64-128 for 17-1024 rows.
- ``_gemv_kernel``: one row, multiply-add on the CUDA cores (no padding to a tensor-core tile).

``int8_linear_fused`` picks: 1 row: gemv or w8a16, 2-16 rows: w8a16, 17-1024 rows: w8a16
with row tiles or quantize + int8 GEMM, more: quantize + int8 GEMM. Where two candidates
exist, the faster is timed once per shape on the device (whole path, launches included)
and kept. The reference-schema ops reuse the same kernels.
"""

# No `from __future__ import annotations` here: Triton 3.0's interpreter recognizes
# `tl.constexpr` parameters only when the annotation is the object, not a string.
import os

import torch

from ..._registry import register
from ...ops.int8 import INV_127, MM_DEQUANT
from ._common import HAS_TRITON, available, interpreting, tl, triton

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

    @triton.jit
    def _row_quant_kernel(
        X,
        CODES,
        ROW_STATS,
        FLAGS,
        IDX,
        COUNT,
        K,
        stride_xm,
        stride_cm,
        threshold,
        HAS_THRESHOLD: tl.constexpr,
        BLOCK_K: tl.constexpr,
        ONE_PASS: tl.constexpr,
    ):
        row = tl.program_id(0).to(tl.int64)
        x_row = X + row * stride_xm
        c_row = CODES + row * stride_cm
        offs = tl.arange(0, BLOCK_K)
        if ONE_PASS:
            mask = offs < K
            x = tl.load(x_row + offs, mask=mask, other=0.0).to(tl.float32)
            ax = tl.abs(x)
            valid = ax == ax  # not NaN
            if HAS_THRESHOLD:
                outlier = (ax >= threshold) & mask
                valid = valid & (ax < threshold)
            absmax = tl.max(tl.where(valid, ax, 0.0), axis=0)
        else:
            acc = tl.zeros([BLOCK_K], dtype=tl.float32)
            for k0 in range(0, K, BLOCK_K):
                m = (k0 + offs) < K
                a = tl.abs(tl.load(x_row + k0 + offs, mask=m, other=0.0).to(tl.float32))
                ok = a == a
                if HAS_THRESHOLD:
                    ok = ok & (a < threshold)
                acc = tl.maximum(acc, tl.where(ok, a, 0.0))
            absmax = tl.max(acc, axis=0)
        tl.store(ROW_STATS + row, absmax)
        scale = tl.math.div_rn(tl.full([], 1.0, tl.float32), absmax) * 127.0
        if ONE_PASS:
            q = x * scale
            keep = valid & (tl.abs(q) < 1.0e30)
            r = (q + _MAGIC) - _MAGIC
            tl.store(c_row + offs, tl.where(keep, r, 0.0).to(tl.int8), mask=mask)
            if HAS_THRESHOLD:
                if tl.max(outlier.to(tl.int32), axis=0) > 0:  # most rows have none: skip the atomics
                    _flag_outlier_columns(FLAGS, IDX, COUNT, offs, outlier)
        else:
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
                    outl = (av >= threshold) & m
                    if tl.max(outl.to(tl.int32), axis=0) > 0:
                        _flag_outlier_columns(FLAGS, IDX, COUNT, k0 + offs, outl)

    @triton.jit
    def _flag_outlier_columns(FLAGS, IDX, COUNT, cols, outlier):
        # Cheap check first: once a column is flagged, later rows skip the atomics.
        seen = tl.load(FLAGS + cols, mask=outlier, other=1, volatile=True)
        todo = outlier & (seen == 0)
        old = tl.atomic_xchg(FLAGS + cols, tl.full(cols.shape, 1, tl.int32), mask=todo)
        first = todo & (old == 0)
        slot = tl.atomic_add(COUNT + cols * 0, tl.full(cols.shape, 1, tl.int32), mask=first)
        tl.store(IDX + slot, cols.to(tl.int32), mask=first)

    @triton.jit
    def _int8_gemm_kernel(
        A,
        B,
        C,
        ROW_STATS,
        COL_STATS,
        BIAS,
        X,
        IDX,
        COUNT,
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
            count = tl.load(COUNT)
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

    @triton.jit
    def _w8a16_kernel(
        X,
        W,
        SCB,
        BIAS,
        OUT,
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
    ):
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
        x_ptrs = X + rm.to(tl.int64)[:, None] * stride_xm + rk[None, :]
        w_ptrs = W + rwn.to(tl.int64)[:, None] * stride_wn + rk[None, :]
        acc = tl.zeros([BLOCK_M, BLOCK_N], dtype=tl.float32)
        for k0 in range(0, K, BLOCK_K):
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
                acc = tl.dot(x, tl.trans(w.to(x.dtype)), acc, out_dtype=tl.float32)
            x_ptrs += BLOCK_K
            w_ptrs += BLOCK_K
        mask_n = rn < N
        scale = tl.load(SCB + rn, mask=mask_n, other=0.0) * _I127
        out = acc * scale[None, :]
        if HAS_BIAS:
            out = out + tl.load(BIAS + rn, mask=mask_n, other=0.0).to(tl.float32)[None, :]
        o_ptrs = OUT + rm.to(tl.int64)[:, None] * stride_om + rn[None, :]
        tl.store(o_ptrs, out.to(OUT.dtype.element_ty), mask=mask_m[:, None] & mask_n[None, :])

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

    # The epilogue keeps one accumulator live at a time (the int32 one is converted before the
    # 16-bit outlier columns are added), so the outlier variant takes the same tiles.
    _GEMM_TUNED = triton.autotune(
        configs=_gemm_configs(),
        key=["M_BUCKET", "N", "K", "EPILOGUE", "HAS_OUTLIERS", "SUBTRACT_OUTLIERS"],
    )(triton.heuristics({"EVEN_K": _even_k})(triton.jit(_int8_gemm_kernel.fn)))

    _W8A16_TUNED = triton.autotune(
        configs=[
            triton.Config({"BLOCK_N": 16, "BLOCK_K": 512}, num_warps=4, num_stages=4),
            triton.Config({"BLOCK_N": 16, "BLOCK_K": 256}, num_warps=4, num_stages=4),
            triton.Config({"BLOCK_N": 16, "BLOCK_K": 128}, num_warps=4, num_stages=6),
            triton.Config({"BLOCK_N": 32, "BLOCK_K": 256}, num_warps=4, num_stages=4),
            triton.Config({"BLOCK_N": 32, "BLOCK_K": 512}, num_warps=4, num_stages=3),
            triton.Config({"BLOCK_N": 64, "BLOCK_K": 256}, num_warps=8, num_stages=3),
            triton.Config({"BLOCK_N": 64, "BLOCK_K": 128}, num_warps=4, num_stages=4),
            triton.Config({"BLOCK_N": 128, "BLOCK_K": 128}, num_warps=8, num_stages=3),
        ],
        key=["M", "N", "K"],
    )(triton.heuristics({"EVEN_K": _even_k})(triton.jit(_w8a16_kernel.fn)))

    # 17-1024 rows: the same kernel with row tiles of 64-128 (16-bit tensor-core matmul, the
    # int8 weight converted in registers); raced against quantize + int8 GEMM per shape.
    _W8A16_BIG = triton.autotune(
        configs=[
            triton.Config({"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=4, num_stages=4),
            triton.Config({"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 64}, num_warps=8, num_stages=3),
            triton.Config({"BLOCK_M": 64, "BLOCK_N": 64, "BLOCK_K": 128}, num_warps=4, num_stages=4),
            triton.Config({"BLOCK_M": 128, "BLOCK_N": 64, "BLOCK_K": 64}, num_warps=4, num_stages=4),
            triton.Config({"BLOCK_M": 128, "BLOCK_N": 256, "BLOCK_K": 64}, num_warps=8, num_stages=3),
        ],
        key=["M", "N", "K"],
    )(triton.heuristics({"EVEN_K": _even_k})(triton.jit(_w8a16_kernel.fn)))

    _GEMV_TUNED = triton.autotune(
        configs=[
            triton.Config({"BLOCK_N": 8, "BLOCK_K": 1024}, num_warps=4, num_stages=1),
            triton.Config({"BLOCK_N": 4, "BLOCK_K": 2048}, num_warps=4, num_stages=1),
            triton.Config({"BLOCK_N": 16, "BLOCK_K": 512}, num_warps=4, num_stages=1),
            triton.Config({"BLOCK_N": 8, "BLOCK_K": 2048}, num_warps=8, num_stages=1),
            triton.Config({"BLOCK_N": 16, "BLOCK_K": 1024}, num_warps=8, num_stages=1),
        ],
        key=["N", "K"],
    )(triton.heuristics({"EVEN_K": _even_k})(triton.jit(_gemv_kernel.fn)))


# Best tile configuration per shape key, read off the autotuner after its first run: later
# calls launch the kernel directly with a precomputed grid, skipping the autotuner's (and
# heuristics') per-call Python work, which at 1-16 tokens costs more than the kernel itself.
_BEST: dict[tuple, tuple] = {}
_TIMINGS: dict[tuple, dict[str, float]] = {}


def _grid_fn(kind: str, M: int, N: int):
    if kind == "gemm":
        return lambda meta: (triton.cdiv(M, meta["BLOCK_M"]) * triton.cdiv(N, meta["BLOCK_N"]),)
    if kind == "w8a16":
        return lambda meta: (triton.cdiv(N, meta["BLOCK_N"]), triton.cdiv(M, 16))
    if kind == "w8a16big":
        return lambda meta: (triton.cdiv(M, meta["BLOCK_M"]), triton.cdiv(N, meta["BLOCK_N"]))
    return lambda meta: (triton.cdiv(N, meta["BLOCK_N"]),)


def _grid(kind: str, M: int, N: int, kw: dict) -> tuple:
    if kind == "gemm":
        return (triton.cdiv(M, kw["BLOCK_M"]) * triton.cdiv(N, kw["BLOCK_N"]),)
    if kind == "w8a16":
        return (triton.cdiv(N, kw["BLOCK_N"]), triton.cdiv(M, 16))
    if kind == "w8a16big":
        return (triton.cdiv(M, kw["BLOCK_M"]), triton.cdiv(N, kw["BLOCK_N"]))
    return (triton.cdiv(N, kw["BLOCK_N"]),)


def _tune(kind: str, tuned, key: tuple, M: int, N: int, args: tuple, flags: dict) -> tuple:
    """First call for ``key``: let the autotuner pick, remember its choice (and timings)."""
    tuned[_grid_fn(kind, M, N)](*args, **flags)
    cfg = tuned.best_config
    kw = dict(cfg.kwargs)
    best = (kw, cfg.num_warps, cfg.num_stages)
    _BEST[key] = best
    timings = getattr(tuned, "configs_timings", None) or {}
    _TIMINGS[key] = {f"{c.kwargs} w{c.num_warps} s{c.num_stages}": t for c, t in timings.items()}
    return best


def _launch_best(kind: str, raw, best: tuple, M: int, N: int, K: int, args: tuple, flags: dict) -> None:
    kw, warps, stages = best
    grid = _grid(kind, M, N, kw)
    raw[grid](*args, **flags, **kw, EVEN_K=K % kw["BLOCK_K"] == 0, num_warps=warps, num_stages=stages)


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


def row_quant(
    A: torch.Tensor, threshold: float = 0.0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None, torch.Tensor | None]:
    """Run the fused row-quantization kernel.

    Returns ``(codes [rows, K] int8, row_stats [rows] float32, flags, idx, count)``; the last
    three (int32, device side: per-column flag, the compact list of flagged columns and its
    length) are None without a threshold. ``codes`` are 0 at outlier elements only; whole
    outlier columns are not cleared here.
    """
    A2 = _2d(A)
    rows, K = A2.shape
    device = A2.device
    codes = torch.empty((rows, K), device=device, dtype=torch.int8)
    row_stats = torch.empty(rows, device=device, dtype=torch.float32)
    flags = idx = count = None
    has_t = threshold > 0.0
    if has_t:
        ws = torch.zeros(K + 1, device=device, dtype=torch.int32)
        flags, count = ws[:K], ws[K:]
        idx = torch.empty(max(K, 1), device=device, dtype=torch.int32)
    if rows == 0:
        return codes, row_stats, flags, idx, count
    one_pass = K <= 16384
    block = triton.next_power_of_2(max(K, 16)) if one_pass else 4096
    warps = 4 if block <= 2048 else (8 if block <= 8192 else 16)
    dummy = row_stats
    # No fused multiply-add: the codes must round x * scale exactly as the reference does.
    opts = {} if _INTERPRET else {"enable_fp_fusion": False}
    with _OnDevice(device):
        _row_quant_kernel[(rows,)](
            A2,
            codes,
            row_stats,
            flags if has_t else dummy,
            idx if has_t else dummy,
            count if has_t else dummy,
            K,
            A2.stride(0),
            codes.stride(0),
            float(threshold),
            HAS_THRESHOLD=has_t,
            BLOCK_K=block,
            ONE_PASS=one_pass,
            num_warps=warps,
            **opts,
        )
    return codes, row_stats, flags, idx, count


def gemm(
    CA: torch.Tensor,
    CB: torch.Tensor,
    row_stats: torch.Tensor | None = None,
    col_stats: torch.Tensor | None = None,
    bias: torch.Tensor | None = None,
    dtype: torch.dtype | None = None,
    X: torch.Tensor | None = None,
    idx: torch.Tensor | None = None,
    count: torch.Tensor | None = None,
    subtract_outliers: bool = True,
) -> torch.Tensor:
    """``CA [M, K] @ CB [N, K].T`` in int32; with ``row_stats``/``col_stats`` dequantized to
    ``dtype`` (+ ``bias``); with ``X``/``idx``/``count`` plus the 16-bit outlier columns."""
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
    has_out = epilogue and X is not None
    dummy = row_stats if epilogue else out
    mb = _mbucket(M)
    args = (
        CA,
        CB,
        out,
        row_stats if epilogue else dummy,
        col_stats if epilogue else dummy,
        bias if bias is not None else dummy,
        X if has_out else CA,
        idx if has_out else dummy,
        count if has_out else dummy,
        M,
        N,
        K,
        mb,
        CA.stride(0),
        CB.stride(0),
        out.stride(0),
        X.stride(0) if has_out else 0,
    )
    flags = {
        "EPILOGUE": 1 if epilogue else 0,
        "HAS_BIAS": bias is not None,
        "HAS_OUTLIERS": has_out,
        "SUBTRACT_OUTLIERS": has_out and subtract_outliers,
        "IEEE": has_out and X.dtype == torch.float32,
        "BLOCK_J": 32,
    }
    with _OnDevice(CA.device):
        if _INTERPRET:
            kw = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32, "GROUP_M": 4}
            _launch_best("gemm", _int8_gemm_kernel, (kw, 4, 1), M, N, K, args, flags)
        elif not AUTOTUNE:
            kw = {"BLOCK_M": 128, "BLOCK_N": 128, "BLOCK_K": 128, "GROUP_M": 8}
            _launch_best("gemm", _int8_gemm_kernel, (kw, 8, 3), M, N, K, args, flags)
        else:
            key = ("gemm", mb, N, K, out_dtype, CA.dtype, *flags.values())
            best = _BEST.get(key)
            if best is None:
                _tune("gemm", _GEMM_TUNED, key, M, N, args, flags)
            else:
                _launch_best("gemm", _int8_gemm_kernel, best, M, N, K, args, flags)
    return out


def w8a16(X: torch.Tensor, CB: torch.Tensor, SCB: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """``X [M, K] @ (CB * SCB / 127).T (+ bias)`` on the tensor cores (M padded to 16),
    reading each weight byte once."""
    M, K = X.shape
    N = CB.shape[0]
    out = torch.empty((M, N), device=X.device, dtype=X.dtype)
    if M == 0 or N == 0:
        return out
    if K == 0:
        out.zero_()
        return out if bias is None else out.add_(bias.to(out.dtype))
    args = (X, CB, SCB, bias if bias is not None else SCB, out, M, N, K, X.stride(0), CB.stride(0), out.stride(0))
    flags = {"HAS_BIAS": bias is not None, "IEEE": X.dtype == torch.float32, "M_MAJOR": False, "BLOCK_M": 16}
    with _OnDevice(X.device):
        if _INTERPRET:
            _launch_best("w8a16", _w8a16_kernel, ({"BLOCK_N": 16, "BLOCK_K": 32}, 4, 1), M, N, K, args, flags)
        elif not AUTOTUNE:
            _launch_best("w8a16", _w8a16_kernel, ({"BLOCK_N": 32, "BLOCK_K": 256}, 4, 4), M, N, K, args, flags)
        else:
            key = ("w8a16", M, N, K, X.dtype, *flags.values())
            best = _BEST.get(key)
            if best is None:
                _tune("w8a16", _W8A16_TUNED, key, M, N, args, flags)
            else:
                _launch_best("w8a16", _w8a16_kernel, best, M, N, K, args, flags)
    return out


def gemv(X: torch.Tensor, CB: torch.Tensor, SCB: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """One row: ``X [1, K] @ (CB * SCB / 127).T (+ bias)`` on the CUDA cores (no tile padding)."""
    K = X.shape[-1]
    N = CB.shape[0]
    out = torch.empty((1, N), device=X.device, dtype=X.dtype)
    if N == 0:
        return out
    if K == 0:
        out.zero_()
        return out if bias is None else out.add_(bias.to(out.dtype))
    args = (X, CB, SCB, bias if bias is not None else SCB, out, N, K, CB.stride(0))
    flags = {"HAS_BIAS": bias is not None}
    with _OnDevice(X.device):
        if _INTERPRET:
            _launch_best("gemv", _gemv_kernel, ({"BLOCK_N": 4, "BLOCK_K": 32}, 4, 1), 1, N, K, args, flags)
        elif not AUTOTUNE:
            _launch_best("gemv", _gemv_kernel, ({"BLOCK_N": 8, "BLOCK_K": 1024}, 4, 1), 1, N, K, args, flags)
        else:
            key = ("gemv", N, K, X.dtype, *flags.values())
            best = _BEST.get(key)
            if best is None:
                _tune("gemv", _GEMV_TUNED, key, 1, N, args, flags)
            else:
                _launch_best("gemv", _gemv_kernel, best, 1, N, K, args, flags)
    return out


# For one row, which of gemv (CUDA cores) and w8a16 (tensor cores) is faster, per shape:
# timed once on the device at the first call (both are exact up to float32 summation order).
_ONE_ROW: dict[tuple, bool] = {}


def _one_row(X: torch.Tensor, CB: torch.Tensor, SCB: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    if _INTERPRET or not AUTOTUNE:
        return gemv(X, CB, SCB, bias)
    key = (CB.shape[0], X.shape[1], X.dtype, bias is not None)
    use_gemv = _ONE_ROW.get(key)
    if use_gemv is None:
        from triton.testing import do_bench

        gemv(X, CB, SCB, bias)
        w8a16(X, CB, SCB, bias)
        t_gemv = do_bench(lambda: gemv(X, CB, SCB, bias), warmup=10, rep=40, return_mode="median")
        t_mma = do_bench(lambda: w8a16(X, CB, SCB, bias), warmup=10, rep=40, return_mode="median")
        use_gemv = _ONE_ROW[key] = t_gemv <= t_mma
        _TIMINGS[("one_row", *key)] = {"gemv": t_gemv, "w8a16": t_mma}
    return gemv(X, CB, SCB, bias) if use_gemv else w8a16(X, CB, SCB, bias)


def w8a16_big(X: torch.Tensor, CB: torch.Tensor, SCB: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Like :func:`w8a16` for more rows (row tiles of 64-128): one launch, no activation
    quantization, every column (outlier or not) multiplied in 16-bit."""
    M, K = X.shape
    N = CB.shape[0]
    out = torch.empty((M, N), device=X.device, dtype=X.dtype)
    if M == 0 or N == 0 or K == 0:
        return w8a16(X, CB, SCB, bias)
    args = (X, CB, SCB, bias if bias is not None else SCB, out, M, N, K, X.stride(0), CB.stride(0), out.stride(0))
    flags = {"HAS_BIAS": bias is not None, "IEEE": X.dtype == torch.float32, "M_MAJOR": True}
    with _OnDevice(X.device):
        if _INTERPRET:
            kw = {"BLOCK_M": 16, "BLOCK_N": 16, "BLOCK_K": 32}
            _launch_best("w8a16big", _w8a16_kernel, (kw, 4, 1), M, N, K, args, flags)
        elif not AUTOTUNE:
            kw = {"BLOCK_M": 64, "BLOCK_N": 128, "BLOCK_K": 64}
            _launch_best("w8a16big", _w8a16_kernel, (kw, 4, 4), M, N, K, args, flags)
        else:
            key = ("w8a16big", M, N, K, X.dtype, *flags.values())
            best = _BEST.get(key)
            if best is None:
                _tune("w8a16big", _W8A16_BIG, key, M, N, args, flags)
            else:
                _launch_best("w8a16big", _w8a16_kernel, best, M, N, K, args, flags)
    return out


def _int8_path(A2: torch.Tensor, CB: torch.Tensor, scb: torch.Tensor, bias, threshold: float, dtype) -> torch.Tensor:
    codes, row_stats, _flags, idx, count = row_quant(A2, threshold)
    if threshold > 0.0:
        return gemm(codes, CB, row_stats, scb, bias, dtype, A2, idx, count, True)
    return gemm(codes, CB, row_stats, scb, bias, dtype)


# Rows up to this many may take w8a16_big instead of quantize + int8 GEMM; which one is
# decided per shape on the device at the first call, timing each path as a whole (launches
# included: at a few hundred rows the host work of the two-kernel int8 path can dominate).
MID_M = 1024
_MID: dict[tuple, bool] = {}


def _mid_rows(A2: torch.Tensor, CB: torch.Tensor, scb: torch.Tensor, bias, threshold: float) -> torch.Tensor:
    dtype = A2.dtype
    if _INTERPRET or not AUTOTUNE or dtype == torch.float32:
        return _int8_path(A2, CB, scb, bias, threshold, dtype)
    key = (_mbucket(A2.shape[0]), CB.shape[0], A2.shape[1], dtype, threshold > 0.0, bias is not None)
    use_w8a16 = _MID.get(key)
    if use_w8a16 is None:
        from triton.testing import do_bench

        w8a16_big(A2, CB, scb, bias)
        _int8_path(A2, CB, scb, bias, threshold, dtype)
        t_w = do_bench(lambda: w8a16_big(A2, CB, scb, bias), warmup=10, rep=50, return_mode="median")
        t_q = do_bench(lambda: _int8_path(A2, CB, scb, bias, threshold, dtype), warmup=10, rep=50, return_mode="median")
        use_w8a16 = _MID[key] = t_w < t_q
        _TIMINGS[("mid_rows", *key)] = {"w8a16_big": t_w, "int8": t_q}
    if use_w8a16:
        return w8a16_big(A2, CB, scb, bias)
    return _int8_path(A2, CB, scb, bias, threshold, dtype)


def path_taken(M: int, N: int, K: int, dtype: torch.dtype, threshold: float, has_bias: bool) -> str:
    """Which kernel path ``int8_linear_fused`` takes for this shape (after its first call)."""
    if M == 1:
        one = _ONE_ROW.get((N, K, dtype, has_bias), not AUTOTUNE or _INTERPRET)
        return "gemv (1 row)" if one else "w8a16 (1 row)"
    if M <= SMALL_M:
        return "w8a16"
    if M <= MID_M and dtype != torch.float32:
        mid = _MID.get((_mbucket(M), N, K, dtype, threshold > 0.0, has_bias))
        if mid:
            return "w8a16 row tiles"
    return "quant + int8 gemm"


def _read_count(count: torch.Tensor) -> int:
    """The device-side int32 counter on the host: a non-blocking copy into pinned memory and a
    stream synchronization (cheaper than ``.item()``'s pageable copy)."""
    if count.device.type != "cuda":
        return int(count.item())
    host = torch.empty(1, dtype=torch.int32, pin_memory=True)
    host.copy_(count, non_blocking=True)
    torch.cuda.current_stream(count.device).synchronize()
    return int(host[0])


def _available() -> bool:
    return available()


if HAS_TRITON:

    @register("int8_vectorwise_quant", "triton", "cuda", available=_available)
    def int8_vectorwise_quant(A: torch.Tensor, threshold: float = 0.0):
        torch._check(threshold >= 0.0, lambda: f"threshold must be >= 0, got {threshold}")
        codes, row_stats, _flags, idx, count = row_quant(A, threshold)
        outlier_cols = None
        if threshold > 0.0:
            n = _read_count(count)  # the op returns a data-dependent size: one host sync
            if n == 0:
                outlier_cols = torch.empty(0, device=A.device, dtype=torch.int64)
            else:
                outlier_cols = torch.sort(idx[:n].to(torch.int64)).values
                if codes.shape[0] > 1:
                    codes[:, outlier_cols] = 0
        return codes.reshape(A.shape), row_stats, outlier_cols

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
        idx = outlier_cols.to(device=A.device, dtype=torch.int32)
        count = torch.full((1,), idx.numel(), device=A.device, dtype=torch.int32)
        out = gemm(_2d(CA), CB, SCA.reshape(-1).float(), SCB.reshape(-1).float(), bias, A.dtype, A2, idx, count, True)
        return out.reshape(*A.shape[:-1], CB.shape[0]), A2[:, outlier_cols.long()]

    @register("int8_linear_fused", "triton", "cuda", available=_available)
    def int8_linear_fused(
        A: torch.Tensor,
        CB: torch.Tensor,
        SCB: torch.Tensor,
        bias: torch.Tensor | None = None,
        threshold: float = 0.0,
    ) -> torch.Tensor:
        # Plain checks: this runs once per layer per token, torch._check costs microseconds.
        if CB.dtype != torch.int8 or CB.dim() != 2:
            raise ValueError(f"CB must be a 2-d int8 tensor, got {CB.dtype} of shape {tuple(CB.shape)}")
        N, K = CB.shape
        if A.shape[-1] != K:
            raise ValueError(f"A {tuple(A.shape)} does not match CB {tuple(CB.shape)} (last dimensions differ)")
        if SCB.dim() != 1 or SCB.shape[0] != N:
            raise ValueError(f"SCB must hold {N} values, got shape {tuple(SCB.shape)}")
        A2 = _2d(A)
        scb = SCB if SCB.dtype == torch.float32 else SCB.float()
        if bias is not None and bias.dtype != A.dtype:
            bias = bias.to(A.dtype)
        M = A2.shape[0]
        if M == 1:
            out = _one_row(A2, CB, scb, bias)
        elif M <= SMALL_M:
            out = w8a16(A2, CB, scb, bias)
        elif M <= MID_M:
            out = _mid_rows(A2, CB, scb, bias, threshold)
        else:
            out = _int8_path(A2, CB, scb, bias, threshold, A.dtype)
        return out if A.dim() == 2 else out.reshape(*A.shape[:-1], N)
