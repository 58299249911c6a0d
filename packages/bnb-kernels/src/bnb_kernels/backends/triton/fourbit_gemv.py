"""Triton 4-bit GEMV for 1-4 tokens (CUDA): pure weight bandwidth, no tensor cores.

Weight format (as everywhere in bnb-kernels): packed uint8 ``[N, K/2]``, row-major, the high
nibble holds the even input feature; one absmax per ``BLOCKSIZE`` consecutive elements of
the flattened ``[N, K]`` weight, optionally nested (``a8[blk]`` indexes ``code2``, times
``absmax[blk // 256]``, plus ``offset``); a weight value is ``lut[nibble] * scale``.

How it is laid out (all checked in the SASS for sm_90 without a GPU; see the brief's notes):

- A program owns ``BN`` (1, 2 or 4) output features and all ``ROWS`` (1-4) token rows, so the
  weight is read and decoded once for all tokens; it walks K in steps of ``BK`` elements.
- Words layout (rows start on a quantization block, K % BLOCKSIZE == 0): a weight row's step
  is a [4, G] int32 tile, word (c, g) = bytes 16g + 4c .. +3. Triton gives each thread the 4
  words of one 16-byte group (one 128-bit load) and warps split G, so a group's 32 elements
  share one scale, applied once per group; the activation pairs of those bytes ([4, G, 4]
  int32 words, bf16/fp16 (even, odd) in one word, fp32 pairs in 64 bits) land in the same
  threads with no shared-memory exchange (no barrier in the loop).
- Decoding: the nibble's byte offset is OR-ed into the 64-byte aligned table's address (one
  shift and one LOP3 per nibble) and the 16-entry fp32 table is read from L1: two gathers
  per byte. The 8 products of a word are one FMA chain.
- ``DECODE`` (config field 6): the nibbles are decoded with byte permutes on the table held
  in registers (fourbit_decode.py: 16 ``prmt`` + 5 logic ops + 8 exact fp16->fp32
  conversions per word of 8 values; the table rounded to fp16), 16-bit activations and the
  words layout only (``_gemv_prmt``). Every per-step tensor there is 1-D over the step's
  groups (a group's 4 words are 4 [G] tensors), so under any Triton version a thread owns
  whole groups of weight, activations and scales: no layout conversion and no cross-thread
  reduction in the loop; the activations of a word (16 aligned bytes) are one 128-bit
  load through inline PTX (``gemv_x_ok`` asks 16-byte aligned rows). SASS of the loop for
  sm_90, bf16, 1 token, per 32 weight bytes at BN=2: 437 instructions on Triton 3.6 (130
  PRMT, 64 HADD2, 60 FFMA, 18 LDG of which 4 LDG.E.128; 440 on 3.9) against 628 with the
  gathers on 3.6 (94 LDG, 20 BAR, 16 SHFL, 22 shared-memory ops; 768 on 3.9, where the
  gather tile goes through shared memory 32 times per step); BN=4: 812 per 64 bytes
  (12.7 per byte); 4 tokens: 807 per 32 bytes. On the H100 (2026-11-25, scripts/gpu-final.sh)
  the permute path passed the GPU check against the table lookup and the reference, and the
  autotuned layer ran 1 token of 8192->28672 in 78 us (1.56 TB/s) where the best gather
  config had taken 105-125 us; which config won was not recorded, so ``gemv_config`` (the
  untimed default) still names a gather config.
- ``PIPE``: the next step's weight words and scale inputs are loaded before the current
  step is decoded, so every thread keeps a step of loads in flight while it computes.
- Byte layout (any even K, or ``WORDS=0``): a [BN, 4, G, 4] byte tile with the same thread
  mapping; when rows do not start on a block every byte looks its scale up.
- ``SPLIT`` > 1 splits K over programs; they add fp32 partials atomically into a zeroed fp32
  workspace, which :func:`gemv_launch` allocates and converts.

Accumulation is fp32; the output has the activation dtype.

Measured on an H100 (bf16, nf4, block size 64, nested; scripts/gpu-bench-gemv.py): 1 token
at 0.9-0.97 TB/s on the large shapes (1.2-1.35x the previous kernel), 4 tokens 2.3-3.5x the
previous kernel. Ablations (same run) put the loop at about 1.35 TB/s with only the weight
loads and about as long again with everything but the weight loads: both the memory-level
parallelism (hence ``PIPE``) and the decode instructions limit it.
"""

# No `from __future__ import annotations` here: Triton 3.0's interpreter recognizes
# `tl.constexpr` parameters only when the annotation is the object, not a string.
import os

import torch

from ._common import HAS_TRITON, interpreting, tl, triton

if HAS_TRITON:
    from .fourbit_decode import decode_word, table_planes

__all__ = [
    "GEMV_CONFIGS",
    "PRMT_ENV",
    "aligned_lut",
    "gemv_candidates",
    "gemv_config",
    "gemv_constexprs",
    "gemv_grid",
    "gemv_kernel",
    "gemv_launch",
    "gemv_x_ok",
]

if HAS_TRITON:

    @triton.jit
    def _scale(blk, absmax_ptr, a8_ptr, code2_ptr, offset, NESTED: tl.constexpr):
        """fp32 scale of quantization block ``blk`` (indices are in range: no mask)."""
        if NESTED:
            q = tl.load(a8_ptr + blk).to(tl.int32)
            s = tl.load(code2_ptr + q) * tl.load(absmax_ptr + blk // 256) + offset
        else:
            s = tl.load(absmax_ptr + blk)
        return s

    @triton.jit
    def _x_pairs(x_ptr, row, stride_xm, j, jmask):
        """Activations of row ``row`` at features (2j, 2j+1) as two fp32 tensors shaped like
        ``j``, read as one 32-bit (16-bit dtypes) or 64-bit (fp32) word per pair."""
        DT = x_ptr.dtype.element_ty
        base = x_ptr + row.to(tl.int64) * stride_xm
        if DT == tl.float32:
            w = tl.load(base.to(tl.pointer_type(tl.int64)) + j, mask=jmask, other=0)
            xe = w.to(tl.int32).to(tl.float32, bitcast=True)
            xo = (w >> 32).to(tl.int32).to(tl.float32, bitcast=True)
        else:
            w = tl.load(base.to(tl.pointer_type(tl.int32)) + j, mask=jmask, other=0)
            if DT == tl.bfloat16:
                xe = (w << 16).to(tl.float32, bitcast=True)
                xo = (w & -65536).to(tl.float32, bitcast=True)
            else:
                xe = w.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
                xo = (w >> 16).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
        return xe, xo

    @triton.jit
    def _row_partial(vh, vl, s, x_ptr, row, stride_xm, j, jmask, GROUP_SCALE: tl.constexpr):
        """One row's products with the decoded [BN, 4, G, 4] byte tile, summed per 16-byte
        group and scaled: [BN, G]. The high/low nibble sums are separate reductions of plain
        products, so they compile to FMA chains."""
        xe, xo = _x_pairs(x_ptr, row, stride_xm, j, jmask)
        if GROUP_SCALE:
            ph = tl.sum(tl.sum(vh * xe[None, :, :, :], axis=3), axis=1)
            pl = tl.sum(tl.sum(vl * xo[None, :, :, :], axis=3), axis=1)
            p = (ph + pl) * s
        else:
            p = tl.sum(tl.sum((vh * xe[None, :, :, :] + vl * xo[None, :, :, :]) * s, axis=3), axis=1)
        return p

    @triton.jit
    def _finish(acc, row, rn, nmask, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr):
        res = tl.sum(acc, axis=1)
        if HAS_BIAS:
            b = tl.load(bias_ptr + rn, mask=nmask, other=0.0).to(tl.float32)
            if SPLIT > 1:
                b = b * (pid_k == 0).to(tl.float32)  # added once
            res += b
        optr = out_ptr + row.to(tl.int64) * stride_om + rn
        if SPLIT > 1:
            tl.atomic_add(optr, res, mask=nmask)
        else:
            tl.store(optr, res.to(out_ptr.dtype.element_ty), mask=nmask)

    @triton.jit
    def _split4(a):
        """The 4 slices of an [A, B, 4] tensor along its last (in-thread) axis."""
        a01, a23 = tl.split(tl.reshape(a, (a.shape[0], a.shape[1], 2, 2)))
        a0, a1 = tl.split(a01)
        a2, a3 = tl.split(a23)
        return a0, a1, a2, a3

    @triton.jit
    def _words_partial(h0, h1, h2, h3, l0, l1, l2, l3, s, x_ptr, row, stride_xm, j, jmask, onehot):
        """Words layout: one token row's products with one weight row's decoded codes
        (h*/l*: high/low nibble of byte t of each word, [4, G]), summed per 16-byte group
        as one FMA chain per word, scaled and placed in that weight row's slot: [BN, G]."""
        xe, xo = _x_pairs(x_ptr, row, stride_xm, j, jmask)
        e0, e1, e2, e3 = _split4(xe)
        o0, o1, o2, o3 = _split4(xo)
        p = h0 * e0 + l0 * o0 + h1 * e1 + l1 * o1 + h2 * e2 + l2 * o2 + h3 * e3 + l3 * o3
        return onehot[:, None] * (tl.sum(p, axis=0) * s)[None, :]

    @triton.jit
    def _fetch(wq, a8_ptr, absmax_ptr, n, kw, half_k, kb, k_hi, jw, rg, BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr):
        """The global loads of one weight row's step at byte ``kb``: its [4, G] words and the
        scale inputs of its G groups (nested: the 8-bit codes and their second-level absmax;
        plain: the fp32 absmax, returned twice). Steps at or past ``k_hi`` load nothing."""
        gmask = (kb + rg * 16) < k_hi  # whole groups (k_hi is a multiple of 16)
        wbase = tl.multiple_of(n * kw + kb // 4, 4)
        w = tl.load(wq + wbase + jw, mask=gmask[None, :], other=0)
        blk = (n * half_k + tl.minimum(kb + rg * 16, half_k - 16)) // (BLOCKSIZE // 2)
        if NESTED:
            q = tl.load(a8_ptr + blk, mask=gmask, other=0).to(tl.int32)
            am = tl.load(absmax_ptr + blk // 256, mask=gmask, other=0.0)
        else:
            am = tl.load(absmax_ptr + blk, mask=gmask, other=0.0)
            q = am
        return w, q, am

    @triton.jit
    def _row_step(
        w, q, am, code2_ptr, offset, lut_base, shift, x_ptr, row0, stride_xm, j, jmask, onehot,
        NESTED: tl.constexpr, ROWS: tl.constexpr,
    ):  # fmt: skip
        """Decode one weight row's step (its words ``w`` and scale inputs) and return its
        contributions to the ROWS token rows' [BN, G] accumulators."""
        if NESTED:
            s = tl.load(code2_ptr + q) * am + offset
        else:
            s = am
        # Byte offsets (4 * nibble) of the table entries, OR-ed into the low bits of the
        # 64-byte aligned table's address: one shift and one LOP3 per nibble.
        wu = w.to(tl.uint32, bitcast=True)[:, :, None]
        lo = (((wu << 2) >> shift) & 0x3C).to(tl.int64) | lut_base
        hi = (((wu >> 2) >> shift) & 0x3C).to(tl.int64) | lut_base
        h0, h1, h2, h3 = _split4(tl.load(hi.to(tl.pointer_type(tl.float32))))
        l0, l1, l2, l3 = _split4(tl.load(lo.to(tl.pointer_type(tl.float32))))
        p0 = _words_partial(h0, h1, h2, h3, l0, l1, l2, l3, s, x_ptr, row0, stride_xm, j, jmask, onehot)
        p1 = p0
        p2 = p0
        p3 = p0
        if ROWS > 1:
            p1 = _words_partial(h0, h1, h2, h3, l0, l1, l2, l3, s, x_ptr, row0 + 1, stride_xm, j, jmask, onehot)
        if ROWS > 2:
            p2 = _words_partial(h0, h1, h2, h3, l0, l1, l2, l3, s, x_ptr, row0 + 2, stride_xm, j, jmask, onehot)
        if ROWS > 3:
            p3 = _words_partial(h0, h1, h2, h3, l0, l1, l2, l3, s, x_ptr, row0 + 3, stride_xm, j, jmask, onehot)
        return p0, p1, p2, p3

    @triton.jit
    def _gemv_words(
        x_ptr, w_ptr, absmax_ptr, a8_ptr, code2_ptr, offset, lut_ptr, N, K, stride_xm, pid_n, row0, k_lo, k_hi,
        BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr, BN: tl.constexpr, G: tl.constexpr, ROWS: tl.constexpr,
        PIPE: tl.constexpr,
    ):  # fmt: skip
        """Main loop for rows that start on a quantization block (K % BLOCKSIZE == 0, so
        K/2 is a multiple of 16): each weight row's step is read as [4, G] int32 words,
        word (c, g) = bytes g*16 + 4c .. +3; a thread owns whole 16-byte groups (one
        128-bit load, one scale) and the activation words of those bytes, in the same
        layout, for all token rows. BN <= 4 weight rows, unrolled. PIPE: the next step's
        weight words and scale inputs are loaded before this step is decoded, so each
        thread keeps a step of loads in flight while it computes."""
        HB: tl.constexpr = G * 16
        half_k = tl.multiple_of(K // 2, 16)
        kw = tl.multiple_of(K // 8, 4)  # int32 words per weight row
        wq = w_ptr.to(tl.pointer_type(tl.int32))
        rg = tl.arange(0, G)
        jw = rg[None, :] * 4 + tl.arange(0, 4)[:, None]  # [4, G] word of the step
        jb = rg[None, :, None] * 16 + tl.arange(0, 4)[:, None, None] * 4 + tl.arange(0, 4)[None, None, :]  # [4, G, 4]
        shift = (tl.arange(0, 4)[None, None, :] * 8).to(tl.uint32)  # byte t of a word
        lut_base = lut_ptr.to(tl.int64)
        rsel = tl.arange(0, BN)
        # weight rows of this program (rows past N re-read row N-1 and are never stored)
        n0 = tl.minimum(pid_n * BN, N - 1).to(tl.int64)
        n1 = tl.minimum(pid_n * BN + 1, N - 1).to(tl.int64)
        n2 = tl.minimum(pid_n * BN + 2, N - 1).to(tl.int64)
        n3 = tl.minimum(pid_n * BN + 3, N - 1).to(tl.int64)
        acc0 = tl.zeros((BN, G), dtype=tl.float32)
        acc1 = tl.zeros((BN, G), dtype=tl.float32)
        acc2 = tl.zeros((BN, G), dtype=tl.float32)
        acc3 = tl.zeros((BN, G), dtype=tl.float32)
        if PIPE:
            w0, q0, a0 = _fetch(wq, a8_ptr, absmax_ptr, n0, kw, half_k, k_lo, k_hi, jw, rg, BLOCKSIZE, NESTED)
            if BN > 1:
                w1, q1, a1 = _fetch(wq, a8_ptr, absmax_ptr, n1, kw, half_k, k_lo, k_hi, jw, rg, BLOCKSIZE, NESTED)
            if BN > 2:
                w2, q2, a2 = _fetch(wq, a8_ptr, absmax_ptr, n2, kw, half_k, k_lo, k_hi, jw, rg, BLOCKSIZE, NESTED)
                w3, q3, a3 = _fetch(wq, a8_ptr, absmax_ptr, n3, kw, half_k, k_lo, k_hi, jw, rg, BLOCKSIZE, NESTED)
        for kb in range(k_lo, k_hi, HB):
            j = kb + jb  # [4, G, 4] byte within a row
            jmask = j < k_hi
            if PIPE:
                cw0, cq0, ca0 = w0, q0, a0
                w0, q0, a0 = _fetch(wq, a8_ptr, absmax_ptr, n0, kw, half_k, kb + HB, k_hi, jw, rg, BLOCKSIZE, NESTED)
                if BN > 1:
                    cw1, cq1, ca1 = w1, q1, a1
                    w1, q1, a1 = _fetch(
                        wq, a8_ptr, absmax_ptr, n1, kw, half_k, kb + HB, k_hi, jw, rg, BLOCKSIZE, NESTED
                    )
                if BN > 2:
                    cw2, cq2, ca2 = w2, q2, a2
                    w2, q2, a2 = _fetch(
                        wq, a8_ptr, absmax_ptr, n2, kw, half_k, kb + HB, k_hi, jw, rg, BLOCKSIZE, NESTED
                    )
                    cw3, cq3, ca3 = w3, q3, a3
                    w3, q3, a3 = _fetch(
                        wq, a8_ptr, absmax_ptr, n3, kw, half_k, kb + HB, k_hi, jw, rg, BLOCKSIZE, NESTED
                    )
            else:
                cw0, cq0, ca0 = _fetch(wq, a8_ptr, absmax_ptr, n0, kw, half_k, kb, k_hi, jw, rg, BLOCKSIZE, NESTED)
                if BN > 1:
                    cw1, cq1, ca1 = _fetch(wq, a8_ptr, absmax_ptr, n1, kw, half_k, kb, k_hi, jw, rg, BLOCKSIZE, NESTED)
                if BN > 2:
                    cw2, cq2, ca2 = _fetch(wq, a8_ptr, absmax_ptr, n2, kw, half_k, kb, k_hi, jw, rg, BLOCKSIZE, NESTED)
                    cw3, cq3, ca3 = _fetch(wq, a8_ptr, absmax_ptr, n3, kw, half_k, kb, k_hi, jw, rg, BLOCKSIZE, NESTED)
            p0, p1, p2, p3 = _row_step(
                cw0, cq0, ca0, code2_ptr, offset, lut_base, shift, x_ptr, row0, stride_xm, j, jmask,
                (rsel == 0).to(tl.float32), NESTED, ROWS,
            )  # fmt: skip
            acc0 += p0
            acc1 += p1
            acc2 += p2
            acc3 += p3
            if BN > 1:
                p0, p1, p2, p3 = _row_step(
                    cw1, cq1, ca1, code2_ptr, offset, lut_base, shift, x_ptr, row0, stride_xm, j, jmask,
                    (rsel == 1).to(tl.float32), NESTED, ROWS,
                )  # fmt: skip
                acc0 += p0
                acc1 += p1
                acc2 += p2
                acc3 += p3
            if BN > 2:
                p0, p1, p2, p3 = _row_step(
                    cw2, cq2, ca2, code2_ptr, offset, lut_base, shift, x_ptr, row0, stride_xm, j, jmask,
                    (rsel == 2).to(tl.float32), NESTED, ROWS,
                )  # fmt: skip
                acc0 += p0
                acc1 += p1
                acc2 += p2
                acc3 += p3
                p0, p1, p2, p3 = _row_step(
                    cw3, cq3, ca3, code2_ptr, offset, lut_base, shift, x_ptr, row0, stride_xm, j, jmask,
                    (rsel == 3).to(tl.float32), NESTED, ROWS,
                )  # fmt: skip
                acc0 += p0
                acc1 += p1
                acc2 += p2
                acc3 += p3
        return acc0, acc1, acc2, acc3

    @triton.jit
    def _gemv_bytes(
        x_ptr, w_ptr, absmax_ptr, a8_ptr, code2_ptr, offset, lut_ptr, N, K, stride_xm, pid_n, row0, k_lo, k_hi,
        BLOCKSIZE: tl.constexpr, GROUP_SCALE: tl.constexpr, NESTED: tl.constexpr, BN: tl.constexpr,
        G: tl.constexpr, ROWS: tl.constexpr,
    ):  # fmt: skip
        """Main loop for any even K: a step is a [BN, 4, G, 4] byte tile (byte g*16 + 4c + t
        of each of the BN rows); Triton gives a thread the 4 bytes of (c, g) for every c and
        row (32-bit loads), so with GROUP_SCALE a thread owns whole 16-byte groups; without,
        every byte looks its scale up."""
        HB: tl.constexpr = G * 16
        half_k = K // 2
        rn_c = tl.minimum(pid_n * BN + tl.arange(0, BN), N - 1)  # rows past N: never stored
        row_byte = rn_c.to(tl.int64) * half_k  # [BN]
        rg = tl.arange(0, G)
        jb = rg[None, :, None] * 16 + tl.arange(0, 4)[:, None, None] * 4 + tl.arange(0, 4)[None, None, :]  # [4, G, 4]
        acc0 = tl.zeros((BN, G), dtype=tl.float32)
        acc1 = tl.zeros((BN, G), dtype=tl.float32)
        acc2 = tl.zeros((BN, G), dtype=tl.float32)
        acc3 = tl.zeros((BN, G), dtype=tl.float32)
        for kb in range(k_lo, k_hi, HB):
            j = kb + jb
            jmask = j < k_hi
            byte_idx = row_byte[:, None, None, None] + j[None, :, :, :]  # [BN, 4, G, 4]
            b = tl.load(w_ptr + byte_idx, mask=jmask[None, :, :, :], other=0).to(tl.int32)
            vh = tl.load(lut_ptr + (b >> 4))
            vl = tl.load(lut_ptr + (b & 15))
            if GROUP_SCALE:
                c0 = tl.minimum(kb + rg * 16, half_k - 16)
                blk = (row_byte[:, None] + c0[None, :]) // (BLOCKSIZE // 2)
                s = _scale(blk, absmax_ptr, a8_ptr, code2_ptr, offset, NESTED)  # [BN, G]
            else:
                blk = tl.where(jmask[None, :, :, :], byte_idx, row_byte[:, None, None, None]) * 2 // BLOCKSIZE
                s = _scale(blk, absmax_ptr, a8_ptr, code2_ptr, offset, NESTED)  # [BN, 4, G, 4]
            acc0 += _row_partial(vh, vl, s, x_ptr, row0, stride_xm, j, jmask, GROUP_SCALE)
            if ROWS > 1:
                acc1 += _row_partial(vh, vl, s, x_ptr, row0 + 1, stride_xm, j, jmask, GROUP_SCALE)
            if ROWS > 2:
                acc2 += _row_partial(vh, vl, s, x_ptr, row0 + 2, stride_xm, j, jmask, GROUP_SCALE)
            if ROWS > 3:
                acc3 += _row_partial(vh, vl, s, x_ptr, row0 + 3, stride_xm, j, jmask, GROUP_SCALE)
        return acc0, acc1, acc2, acc3

    # ---- permute decode (DECODE > 0, 16-bit activations, rows start on a block) ----------
    # 16 bytes of activations at a 16-byte aligned address ($4), zeros where $5 == 0
    _XLOAD = tl.constexpr(
        "{\n.reg .pred p;\nsetp.ne.b32 p, $5, 0;\nmov.b32 $0, 0;\nmov.b32 $1, 0;\nmov.b32 $2, 0;\n"
        "mov.b32 $3, 0;\n@p ld.global.v4.b32 {$0, $1, $2, $3}, [$4];\n}"
    )
    # Every per-step tensor is 1-D over the step's G 16-byte groups (the 4 words of a group
    # are 4 separate [G] tensors), so whatever layout Triton picks, a thread owns whole
    # groups of the weight, the activations and the scales alike: no layout conversion, no
    # cross-thread reduction in the loop (Triton 3.6 spread a [4, G] tile's words over
    # threads, 3.9 did not).

    @triton.jit
    def _p_fetch(wq, a8_ptr, absmax_ptr, n, kw, half_k, kb, k_hi, rg, BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr):
        """Weight row ``n`` at step byte ``kb``: the 4 words of each group ([G] each) and the
        scale inputs (nested: 8-bit code and second-level absmax; plain: absmax twice)."""
        gmask = (kb + rg * 16) < k_hi
        p = wq + (n * kw + kb // 4) + rg * 4
        w0 = tl.load(p, mask=gmask, other=0)
        w1 = tl.load(p + 1, mask=gmask, other=0)
        w2 = tl.load(p + 2, mask=gmask, other=0)
        w3 = tl.load(p + 3, mask=gmask, other=0)
        blk = (n * half_k + tl.minimum(kb + rg * 16, half_k - 16)) // (BLOCKSIZE // 2)
        if NESTED:
            q = tl.load(a8_ptr + blk, mask=gmask, other=0).to(tl.int32)
            am = tl.load(absmax_ptr + blk // 256, mask=gmask, other=0.0)
        else:
            am = tl.load(absmax_ptr + blk, mask=gmask, other=0.0)
            q = am
        return w0, w1, w2, w3, q, am

    @triton.jit
    def _p_dot(
        v0, v1, v2, v3, v4, v5, v6, v7, x_ptr, row, stride_xm, kb, rg, gmask, C: tl.constexpr, ASM: tl.constexpr
    ):  # fmt: skip
        """Products of word C's 8 decoded values with token row ``row``'s activations (the
        4 pair words of that word's bytes, 16 aligned bytes: one 128-bit load with ASM, as
        Triton would split it into four), one FMA chain: [G]."""
        if ASM:
            base = (x_ptr + row.to(tl.int64) * stride_xm).to(tl.int64)
            addr = base + (kb + 4 * C + rg * 16).to(tl.int64) * 4
            a0, a1, a2, a3 = tl.inline_asm_elementwise(
                _XLOAD, "=r,=r,=r,=r,l,r", [addr, gmask.to(tl.int32)],
                dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1,
            )  # fmt: skip
        else:
            base = (x_ptr + row.to(tl.int64) * stride_xm).to(tl.pointer_type(tl.int32)) + kb + 4 * C
            px = base + rg * 16
            a0 = tl.load(px, mask=gmask, other=0)
            a1 = tl.load(px + 1, mask=gmask, other=0)
            a2 = tl.load(px + 2, mask=gmask, other=0)
            a3 = tl.load(px + 3, mask=gmask, other=0)
        if x_ptr.dtype.element_ty == tl.bfloat16:  # exact: the bf16 bits are the fp32's top half
            e0 = (a0 << 16).to(tl.float32, bitcast=True)
            o0 = (a0 & -65536).to(tl.float32, bitcast=True)
            e1 = (a1 << 16).to(tl.float32, bitcast=True)
            o1 = (a1 & -65536).to(tl.float32, bitcast=True)
            e2 = (a2 << 16).to(tl.float32, bitcast=True)
            o2 = (a2 & -65536).to(tl.float32, bitcast=True)
            e3 = (a3 << 16).to(tl.float32, bitcast=True)
            o3 = (a3 & -65536).to(tl.float32, bitcast=True)
        else:
            e0 = a0.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
            o0 = (a0 >> 16).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
            e1 = a1.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
            o1 = (a1 >> 16).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
            e2 = a2.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
            o2 = (a2 >> 16).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
            e3 = a3.to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
            o3 = (a3 >> 16).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)
        # one dependent chain: FFMA throughout
        p = v0 * e0
        p = p + v1 * o0
        p = p + v2 * e1
        p = p + v3 * o1
        p = p + v4 * e2
        p = p + v5 * o2
        p = p + v6 * e3
        p = p + v7 * o3
        return p

    @triton.jit
    def _p_word(
        w, g0, g1, g2, g3, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3, x_ptr, row0, stride_xm, kb, rg, gmask,
        C: tl.constexpr, ROWS: tl.constexpr, ASM: tl.constexpr,
    ):  # fmt: skip
        """Decode word C of each group and add its products to the ROWS group sums."""
        v0, v1, v2, v3, v4, v5, v6, v7 = decode_word(w, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3, ASM)
        g0 += _p_dot(v0, v1, v2, v3, v4, v5, v6, v7, x_ptr, row0, stride_xm, kb, rg, gmask, C, ASM)
        if ROWS > 1:
            g1 += _p_dot(v0, v1, v2, v3, v4, v5, v6, v7, x_ptr, row0 + 1, stride_xm, kb, rg, gmask, C, ASM)
        if ROWS > 2:
            g2 += _p_dot(v0, v1, v2, v3, v4, v5, v6, v7, x_ptr, row0 + 2, stride_xm, kb, rg, gmask, C, ASM)
        if ROWS > 3:
            g3 += _p_dot(v0, v1, v2, v3, v4, v5, v6, v7, x_ptr, row0 + 3, stride_xm, kb, rg, gmask, C, ASM)
        return g0, g1, g2, g3

    @triton.jit
    def _p_row(
        w0, w1, w2, w3, q, am, code2_ptr, offset, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3,
        x_ptr, row0, stride_xm, kb, rg, gmask, NESTED: tl.constexpr, ROWS: tl.constexpr, ASM: tl.constexpr,
    ):  # fmt: skip
        """One weight row's step: its scaled group sums for the ROWS token rows ([G] each)."""
        if NESTED:
            s = tl.load(code2_ptr + q) * am + offset
        else:
            s = am
        g0 = tl.zeros_like(s)
        g1 = g0
        g2 = g0
        g3 = g0
        g0, g1, g2, g3 = _p_word(
            w0, g0, g1, g2, g3, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3,
            x_ptr, row0, stride_xm, kb, rg, gmask, 0, ROWS, ASM,
        )  # fmt: skip
        g0, g1, g2, g3 = _p_word(
            w1, g0, g1, g2, g3, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3,
            x_ptr, row0, stride_xm, kb, rg, gmask, 1, ROWS, ASM,
        )  # fmt: skip
        g0, g1, g2, g3 = _p_word(
            w2, g0, g1, g2, g3, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3,
            x_ptr, row0, stride_xm, kb, rg, gmask, 2, ROWS, ASM,
        )  # fmt: skip
        g0, g1, g2, g3 = _p_word(
            w3, g0, g1, g2, g3, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3,
            x_ptr, row0, stride_xm, kb, rg, gmask, 3, ROWS, ASM,
        )  # fmt: skip
        return g0 * s, g1 * s, g2 * s, g3 * s

    @triton.jit
    def _p_finish(acc, row, n, N, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr):
        res = tl.sum(acc, axis=0)
        nmask = n < N
        if HAS_BIAS:
            b = tl.load(bias_ptr + n, mask=nmask, other=0.0).to(tl.float32)
            if SPLIT > 1:
                b = b * (pid_k == 0).to(tl.float32)  # added once
            res += b
        optr = out_ptr + row.to(tl.int64) * stride_om + n
        if SPLIT > 1:
            tl.atomic_add(optr, res, mask=nmask)
        else:
            tl.store(optr, res.to(out_ptr.dtype.element_ty), mask=nmask)

    @triton.jit
    def _p_finish_rows(
        a0, a1, a2, a3, row0, n, N, bias_ptr, out_ptr, stride_om, pid_k,
        HAS_BIAS: tl.constexpr, SPLIT: tl.constexpr, ROWS: tl.constexpr,
    ):  # fmt: skip
        _p_finish(a0, row0, n, N, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT)
        if ROWS > 1:
            _p_finish(a1, row0 + 1, n, N, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT)
        if ROWS > 2:
            _p_finish(a2, row0 + 2, n, N, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT)
        if ROWS > 3:
            _p_finish(a3, row0 + 3, n, N, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT)

    @triton.jit
    def _gemv_prmt(
        x_ptr, w_ptr, absmax_ptr, a8_ptr, code2_ptr, offset, lut_ptr, bias_ptr, out_ptr, N, K, stride_xm, stride_om,
        pid_n, row0, pid_k, k_lo, k_hi,
        BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr, HAS_BIAS: tl.constexpr, BN: tl.constexpr, G: tl.constexpr,
        ROWS: tl.constexpr, SPLIT: tl.constexpr, PIPE: tl.constexpr, ASM: tl.constexpr,
    ):  # fmt: skip
        """The words layout with the permute decode: BN <= 4 weight rows, ROWS <= 4 token
        rows, [G] accumulators per (token row, weight row); stores its own results. PIPE:
        the next step's words and scale inputs are loaded before this step is decoded."""
        HB: tl.constexpr = G * 16
        half_k = tl.multiple_of(K // 2, 16)
        kw = tl.multiple_of(K // 8, 4)
        wq = w_ptr.to(tl.pointer_type(tl.int32))
        rg = tl.arange(0, G)
        pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3 = table_planes(lut_ptr)
        n0 = tl.minimum(pid_n * BN, N - 1).to(tl.int64)
        n1 = tl.minimum(pid_n * BN + 1, N - 1).to(tl.int64)
        n2 = tl.minimum(pid_n * BN + 2, N - 1).to(tl.int64)
        n3 = tl.minimum(pid_n * BN + 3, N - 1).to(tl.int64)
        z = tl.zeros((G,), dtype=tl.float32)
        # acc{token row}{weight row}
        a00, a10, a20, a30 = z, z, z, z
        a01, a11, a21, a31 = z, z, z, z
        a02, a12, a22, a32 = z, z, z, z
        a03, a13, a23, a33 = z, z, z, z
        if PIPE:
            x00, x01, x02, x03, xq0, xa0 = _p_fetch(
                wq, a8_ptr, absmax_ptr, n0, kw, half_k, k_lo, k_hi, rg, BLOCKSIZE, NESTED
            )
            if BN > 1:
                x10, x11, x12, x13, xq1, xa1 = _p_fetch(
                    wq, a8_ptr, absmax_ptr, n1, kw, half_k, k_lo, k_hi, rg, BLOCKSIZE, NESTED
                )
            if BN > 2:
                x20, x21, x22, x23, xq2, xa2 = _p_fetch(
                    wq, a8_ptr, absmax_ptr, n2, kw, half_k, k_lo, k_hi, rg, BLOCKSIZE, NESTED
                )
                x30, x31, x32, x33, xq3, xa3 = _p_fetch(
                    wq, a8_ptr, absmax_ptr, n3, kw, half_k, k_lo, k_hi, rg, BLOCKSIZE, NESTED
                )
        for kb in range(k_lo, k_hi, HB):
            gmask = (kb + rg * 16) < k_hi
            if PIPE:
                c00, c01, c02, c03, cq0, ca0 = x00, x01, x02, x03, xq0, xa0
                x00, x01, x02, x03, xq0, xa0 = _p_fetch(
                    wq, a8_ptr, absmax_ptr, n0, kw, half_k, kb + HB, k_hi, rg, BLOCKSIZE, NESTED
                )
                if BN > 1:
                    c10, c11, c12, c13, cq1, ca1 = x10, x11, x12, x13, xq1, xa1
                    x10, x11, x12, x13, xq1, xa1 = _p_fetch(
                        wq, a8_ptr, absmax_ptr, n1, kw, half_k, kb + HB, k_hi, rg, BLOCKSIZE, NESTED
                    )
                if BN > 2:
                    c20, c21, c22, c23, cq2, ca2 = x20, x21, x22, x23, xq2, xa2
                    x20, x21, x22, x23, xq2, xa2 = _p_fetch(
                        wq, a8_ptr, absmax_ptr, n2, kw, half_k, kb + HB, k_hi, rg, BLOCKSIZE, NESTED
                    )
                    c30, c31, c32, c33, cq3, ca3 = x30, x31, x32, x33, xq3, xa3
                    x30, x31, x32, x33, xq3, xa3 = _p_fetch(
                        wq, a8_ptr, absmax_ptr, n3, kw, half_k, kb + HB, k_hi, rg, BLOCKSIZE, NESTED
                    )
            else:
                c00, c01, c02, c03, cq0, ca0 = _p_fetch(
                    wq, a8_ptr, absmax_ptr, n0, kw, half_k, kb, k_hi, rg, BLOCKSIZE, NESTED
                )
                if BN > 1:
                    c10, c11, c12, c13, cq1, ca1 = _p_fetch(
                        wq, a8_ptr, absmax_ptr, n1, kw, half_k, kb, k_hi, rg, BLOCKSIZE, NESTED
                    )
                if BN > 2:
                    c20, c21, c22, c23, cq2, ca2 = _p_fetch(
                        wq, a8_ptr, absmax_ptr, n2, kw, half_k, kb, k_hi, rg, BLOCKSIZE, NESTED
                    )
                    c30, c31, c32, c33, cq3, ca3 = _p_fetch(
                        wq, a8_ptr, absmax_ptr, n3, kw, half_k, kb, k_hi, rg, BLOCKSIZE, NESTED
                    )
            p0, p1, p2, p3 = _p_row(
                c00, c01, c02, c03, cq0, ca0, code2_ptr, offset, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3,
                x_ptr, row0, stride_xm, kb, rg, gmask, NESTED, ROWS, ASM,
            )  # fmt: skip
            a00 += p0
            a10 += p1
            a20 += p2
            a30 += p3
            if BN > 1:
                p0, p1, p2, p3 = _p_row(
                    c10, c11, c12, c13, cq1, ca1, code2_ptr, offset, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3,
                    x_ptr, row0, stride_xm, kb, rg, gmask, NESTED, ROWS, ASM,
                )  # fmt: skip
                a01 += p0
                a11 += p1
                a21 += p2
                a31 += p3
            if BN > 2:
                p0, p1, p2, p3 = _p_row(
                    c20, c21, c22, c23, cq2, ca2, code2_ptr, offset, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3,
                    x_ptr, row0, stride_xm, kb, rg, gmask, NESTED, ROWS, ASM,
                )  # fmt: skip
                a02 += p0
                a12 += p1
                a22 += p2
                a32 += p3
                p0, p1, p2, p3 = _p_row(
                    c30, c31, c32, c33, cq3, ca3, code2_ptr, offset, pl0, pl1, pl2, pl3, ph0, ph1, ph2, ph3,
                    x_ptr, row0, stride_xm, kb, rg, gmask, NESTED, ROWS, ASM,
                )  # fmt: skip
                a03 += p0
                a13 += p1
                a23 += p2
                a33 += p3
        nb = pid_n * BN
        _p_finish_rows(a00, a10, a20, a30, row0, nb, N, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT, ROWS)
        if BN > 1:
            _p_finish_rows(
                a01, a11, a21, a31, row0, nb + 1, N, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT, ROWS
            )
        if BN > 2:
            _p_finish_rows(
                a02, a12, a22, a32, row0, nb + 2, N, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT, ROWS
            )
            _p_finish_rows(
                a03, a13, a23, a33, row0, nb + 3, N, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT, ROWS
            )

    @triton.jit
    def gemv_kernel(
        x_ptr, w_ptr, absmax_ptr, a8_ptr, code2_ptr, offset_ptr, lut_ptr, bias_ptr, out_ptr,
        N, K, stride_xm, stride_om,
        BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr, HAS_BIAS: tl.constexpr, ALIGNED: tl.constexpr,
        BN: tl.constexpr, BK: tl.constexpr,
        ROWS: tl.constexpr = 1, SPLIT: tl.constexpr = 1, WORDS: tl.constexpr = 1, PIPE: tl.constexpr = 0,
        DECODE: tl.constexpr = 0,
    ):  # fmt: skip
        """out[r, n] = sum_k x[r, k] * W[n, k] (+ bias[n]) for token rows r = program_id(1) *
        ROWS ... + ROWS - 1 and BN features n; grid (cdiv(N, BN), M // ROWS, SPLIT). With
        SPLIT > 1, ``out_ptr`` is a zeroed fp32 [M, N] workspace the programs add into.
        BK input features per step (a multiple of 32); warps split the step's 16-byte
        groups, so BK >= 1024 * num_warps keeps every row of a group in one thread."""
        G: tl.constexpr = BK // 32  # 16-byte groups per row per step
        # A group (32 elements) lies in one quantization block when rows start on a block
        # and blocks are multiples of 32 elements: then one scale per group.
        GROUP_SCALE: tl.constexpr = ALIGNED and (BLOCKSIZE % 32 == 0)
        pid_n = tl.program_id(0)
        row0 = tl.program_id(1) * ROWS
        pid_k = tl.program_id(2)
        rn = pid_n * BN + tl.arange(0, BN)
        nmask = rn < N
        half_k = K // 2
        if NESTED:
            offset = tl.load(offset_ptr).to(tl.float32)
        else:
            offset = 0.0
        if SPLIT > 1:
            k_per = tl.cdiv(tl.cdiv(half_k, G * 16), SPLIT) * (G * 16)
            k_lo = pid_k * k_per
            k_hi = tl.minimum(half_k, k_lo + k_per)
        else:
            k_lo = 0
            k_hi = half_k
        if DECODE > 0 and WORDS and GROUP_SCALE and BN <= 4 and x_ptr.dtype.element_ty != tl.float32:
            # permute decode (the table rounded to fp16: 16-bit activations only)
            _gemv_prmt(
                x_ptr, w_ptr, absmax_ptr, a8_ptr, code2_ptr, offset, lut_ptr, bias_ptr, out_ptr, N, K, stride_xm,
                stride_om, pid_n, row0, pid_k, k_lo, k_hi, BLOCKSIZE, NESTED, HAS_BIAS, BN, G, ROWS, SPLIT, PIPE,
                DECODE == 1,
            )  # fmt: skip
        else:
            if WORDS and GROUP_SCALE and BN <= 4:
                acc0, acc1, acc2, acc3 = _gemv_words(
                    x_ptr, w_ptr, absmax_ptr, a8_ptr, code2_ptr, offset, lut_ptr, N, K, stride_xm, pid_n, row0,
                    k_lo, k_hi, BLOCKSIZE, NESTED, BN, G, ROWS, PIPE,
                )  # fmt: skip
            else:
                acc0, acc1, acc2, acc3 = _gemv_bytes(
                    x_ptr, w_ptr, absmax_ptr, a8_ptr, code2_ptr, offset, lut_ptr, N, K, stride_xm, pid_n, row0,
                    k_lo, k_hi, BLOCKSIZE, GROUP_SCALE, NESTED, BN, G, ROWS,
                )  # fmt: skip
            _finish(acc0, row0, rn, nmask, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT)
            if ROWS > 1:
                _finish(acc1, row0 + 1, rn, nmask, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT)
            if ROWS > 2:
                _finish(acc2, row0 + 2, rn, nmask, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT)
            if ROWS > 3:
                _finish(acc3, row0 + 3, rn, nmask, bias_ptr, out_ptr, stride_om, pid_k, HAS_BIAS, SPLIT)


# ------------------------------------------------------------------------------------------
# Configs and launch
#
# A config is (BN, BK, num_warps, SPLIT[, PIPE]): BN output features per program (1, 2 or 4
# for the words layout), BK input features per step (a power of two >= 32; BK >= 1024 *
# num_warps keeps the conflict-free layout), SPLIT programs along K (1: none; > 1 adds fp32
# partials atomically), PIPE (default 0): prefetch the next step's loads, DECODE (default 0):
# 1 = decode the nibbles with byte permutes on a table in registers (fourbit_decode.py;
# 16-bit activations and the words layout only, else ignored; integer emulation of the
# same permutes under the interpreter).
#
# H100 (bf16, nf4, block size 64, nested, 2026-11-25, scripts/gpu-bench-gemv.py), us:
#   config          4096^2  4096->14336  14336->4096  8192->28672  28672->8192
#   (2,2048,2,1) M=1  16.0      42.9         41.4        133.9        134.1
#   (4,2048,2,1) M=1  16.5      39.8         43.4        125.3        144.4
#   (1,4096,4,1) M=1  18.4      46.8         46.7        140.2        132.3
#   (2,2048,2,1) M=4  61.9      70.9         72.7        240.6        251.8
#   (4,2048,2,1) M=4  27.6      83.7         82.1        293.2        291.2
#   (2,4096,4,1) M=4  28.6     129.1         82.9        264.0        253.0
# PIPE configs were not timed on a GPU yet (the autotuner of fourbit_matmul.py times all).

GEMV_CONFIGS: dict[str, list[tuple[int, ...]]] = {
    # bf16 / fp16 activations, 1 token
    "16bit": [
        (2, 2048, 2, 1),
        (4, 2048, 2, 1),
        (1, 4096, 4, 1),
        (2, 1024, 1, 1),
        (2, 2048, 2, 1, 1),
        (4, 2048, 2, 1, 1),
        (2, 1024, 1, 1, 1),
        (1, 2048, 2, 1, 1),
        # permute decode (field 6), not timed on a GPU yet
        (2, 2048, 2, 1, 0, 1),
        (4, 2048, 2, 1, 0, 1),
        (2, 2048, 2, 1, 1, 1),
        (4, 2048, 2, 1, 1, 1),
        (1, 4096, 4, 1, 0, 1),
        (2, 2048, 2, 2),
    ],
    # bf16 / fp16 activations, 2-4 tokens
    "16bit_rows": [
        (2, 2048, 2, 1),
        (4, 2048, 2, 1),
        (2, 4096, 4, 1),
        (1, 4096, 4, 1),
        (2, 2048, 2, 1, 1),
        (4, 2048, 2, 1, 1),
        (2, 2048, 2, 1, 0, 1),
        (4, 2048, 2, 1, 0, 1),
        (2, 4096, 4, 1, 0, 1),
    ],
    "fp32": [
        (2, 2048, 2, 1),
        (1, 2048, 2, 1),
        (2, 2048, 2, 1, 1),
        (2, 2048, 2, 2),
    ],
}


PRMT_ENV = "BNB_4BIT_PRMT"


def gemv_candidates(M: int, dtype: torch.dtype) -> list[tuple[int, ...]]:
    """Configs worth timing for M (1-4) token rows of ``dtype`` activations: with 16-bit
    activations the permute-decode configs and the untimed defaults (a permute config was
    the fastest GEMV in every 1-4 token cell of the H100 runs of 2026-11-25, and every
    config listed is a kernel to compile on a layer's first call); ``BNB_4BIT_PRMT=0``
    gives the table-lookup configs instead."""
    if dtype == torch.float32:
        return list(GEMV_CONFIGS["fp32"])
    cands = list(GEMV_CONFIGS["16bit" if M == 1 else "16bit_rows"])
    permute = [c for c in cands if len(c) > 5 and c[5]]
    if os.environ.get(PRMT_ENV, "1") in ("0", ""):
        return [c for c in cands if c not in permute]
    return permute + [c for c in ((2, 2048, 2, 1), (4, 2048, 2, 1)) if c in cands]


def gemv_config(M: int, N: int, K: int, dtype: torch.dtype) -> tuple[int, ...]:
    """The config to use before (or without) timing candidates on the device."""
    if dtype != torch.float32 and M > 1 and N * K <= (1 << 24):
        return (4, 2048, 2, 1)
    return (2, 2048, 2, 1)


def _split(split: int, K: int, BK: int) -> int:
    return max(1, min(split, triton.cdiv(K, BK)))


def gemv_grid(config: tuple, M: int, N: int, K: int) -> tuple[int, int, int]:
    """Grid of ``gemv_kernel`` for ``config``: ROWS = M (1-4) token rows per program."""
    BN, BK, _, split = config[:4]
    return (triton.cdiv(N, BN), 1, _split(split, K, BK))


def gemv_constexprs(config: tuple, M: int, K: int, blocksize: int, nested: bool, has_bias: bool) -> dict:
    """Keyword arguments of ``gemv_kernel[grid](...)`` after its 13 positional ones: every
    constexpr of the kernel, in its argument order, then ``num_warps``. With SPLIT > 1 the
    ``out_ptr`` argument must be a zeroed fp32 [M, N] workspace (see :func:`gemv_launch`)."""
    BN, BK, warps, split = config[:4]
    if not 1 <= M <= 4:
        raise ValueError(f"gemv_kernel handles 1 to 4 token rows, got {M}")
    return dict(
        BLOCKSIZE=blocksize,
        NESTED=nested,
        HAS_BIAS=has_bias,
        ALIGNED=K % blocksize == 0,
        BN=BN,
        BK=BK,
        ROWS=M,
        SPLIT=_split(split, K, BK),
        WORDS=True,
        PIPE=bool(config[4]) if len(config) > 4 else False,
        DECODE=(2 if interpreting() else 1) if len(config) > 5 and config[5] else 0,
        num_warps=warps,
    )


def gemv_x_ok(x: torch.Tensor) -> bool:
    """Whether ``gemv_kernel`` may read ``x`` [M, K] as it is: rows are read as 32-bit
    (16-bit dtypes) or 64-bit (fp32) pairs, so they must start on such a boundary; when a
    row is a whole number of 16-byte units (every K of the words layout), on a 16-byte
    boundary (the permute path reads 128 bits at a time; a contiguous copy qualifies)."""
    row_bytes = x.shape[-1] * x.element_size()
    word = 16 if row_bytes % 16 == 0 else (8 if x.dtype == torch.float32 else 4)
    return x.stride(-1) == 1 and x.data_ptr() % word == 0 and (x.stride(0) * x.element_size()) % word == 0


_ALIGNED_LUTS: dict[tuple[int, torch.device], torch.Tensor] = {}


def aligned_lut(lut: torch.Tensor) -> torch.Tensor:
    """``lut`` (fp32 [16]) at a 64-byte aligned address, as ``gemv_kernel`` requires (the
    words path ORs the entry offset into the address). Fresh tensors already are."""
    if lut.dtype == torch.float32 and lut.is_contiguous() and lut.data_ptr() % 64 == 0:
        return lut
    key = (lut.data_ptr(), lut.device)
    t = _ALIGNED_LUTS.get(key)
    if t is None or not torch.equal(t, lut.float()):
        buf = torch.empty(32, dtype=torch.float32, device=lut.device)
        start = (-buf.data_ptr() % 64) // 4
        t = buf[start : start + 16]
        t.copy_(lut.reshape(-1))
        _ALIGNED_LUTS[key] = t
    return t


def gemv_launch(
    config: tuple,
    x: torch.Tensor,
    w: torch.Tensor,
    absmax: torch.Tensor,
    a8: torch.Tensor,
    code2: torch.Tensor,
    offset: torch.Tensor,
    lut: torch.Tensor,
    bias: torch.Tensor | None,
    out: torch.Tensor,
    N: int,
    K: int,
    blocksize: int,
    nested: bool,
    *,
    words: bool = True,
) -> torch.Tensor:
    """``out = x @ W.T (+ bias)`` for x [M, K] (M <= 4; fp16/bf16/fp32; K even), ``w`` the
    flat uint8 packed weight, ``absmax`` fp32 (the nested second level when ``nested``, with
    ``a8`` the uint8 codes, ``code2`` fp32 [256] and ``offset`` an fp32 scalar tensor; else
    pass ``absmax`` for all three), ``lut`` fp32 [16], ``bias`` in x's dtype or None, ``out``
    a contiguous [M, N] tensor of x's dtype. Split-K configs add fp32 partials into a
    zeroed workspace that is then cast into ``out``. ``words=False`` forces the byte-tile
    layout (for tests and benchmarks; it is used anyway when K % blocksize != 0). Returns
    ``out``."""
    M = x.shape[0]
    if K % 2 or x.shape[-1] != K:
        raise ValueError(f"gemv_kernel needs an even K matching x's {x.shape[-1]} features, got K={K}")
    if not gemv_x_ok(x):
        x = x.clone(memory_format=torch.contiguous_format)
    lut = aligned_lut(lut)
    kw = gemv_constexprs(config, M, K, blocksize, nested, bias is not None)
    if not words:
        kw["WORDS"] = False
    grid = gemv_grid(config, M, N, K)
    bias_arg = absmax if bias is None else bias
    if kw["SPLIT"] == 1:
        gemv_kernel[grid](x, w, absmax, a8, code2, offset, lut, bias_arg, out, N, K, x.stride(0), out.stride(0), **kw)
        return out
    ws = torch.zeros((M, N), dtype=torch.float32, device=x.device)
    gemv_kernel[grid](x, w, absmax, a8, code2, offset, lut, bias_arg, ws, N, K, x.stride(0), N, **kw)
    out.copy_(ws)
    return out
