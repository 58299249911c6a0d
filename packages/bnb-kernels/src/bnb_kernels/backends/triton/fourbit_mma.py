"""Tensor-core 4-bit GEMV for 1-16 tokens (CUDA): the packed weight decoded in registers
straight into ``mma.sync`` fragments, no shared memory, no FMA per weight.

Why: the CUDA-core GEMV (fourbit_gemv.py) spends about 6.8 instructions per weight (decode,
fp16 -> fp32 widening, one FFMA) and is issue-bound at 1 token (8192->28672 in 78 us, 1.56
TB/s); the ``tl.dot`` kernel (fourbit_matmul.py) pays a shared-memory round trip and waits
on its MMA. Here the tensor cores do the multiply-accumulate and the fp32 sums: a weight
costs its byte-permute decode (about 2.6 instructions, fourbit_decode.decode_pairs_raw)
and little else (4.8 instructions per weight in the SASS of the loop at 1 token). On the
H100 it is the fastest path at 2-8 tokens on every anchor shape, but at about 1.4 TB/s it
is latency-bound, and the GEMV stays faster at 1 token (benchmarks/linear4bit-notes.md).

Layout (one ``m16n8k16`` MMA per 16 weight rows x 64 input features x 8 tokens):

- Every tensor is 1-D with one element per thread (``32 * WARPS`` elements); the lane and
  warp of the element come from ``%tid.x`` (inline PTX), so what a thread loads and feeds
  to the MMA depends on the hardware lane alone, whatever layout Triton picks.
- Lane ``l = 4 * g + t`` of a warp owns weight rows ``R = 16 * tile + g`` and ``R + 8`` and,
  in each 64-feature chunk, features ``16 t .. 16 t + 15``: 8 bytes of each row (one
  64-bit load), decoded into 8 pair words each. The MMA's K index is a renumbering of
  those features (MMA j takes pairs j and j + 4 of every lane), the B fragment is the
  activations of the same features (two 128-bit loads) for token ``g`` of the token tile,
  so D[g][2t], D[g][2t + 1] (rows R, tokens 2t, 2t + 1) and D[g + 8][...] (row R + 8)
  land in lane l. Four MMAs cover the chunk.
- A chunk never straddles a quantization block (block sizes >= 64, rows start on a
  block), so each MMA chain is a plain sum of codes times activations, and the block's
  fp32 scale multiplies its result (4 FFMA per chunk): no rounding of code times scale.
  The codes are the table rounded to the activation dtype (bf16: relative error <= 2**-9
  per code value).
- A warp owns one 16-row tile; ``TT`` token tiles of 8 share the decode (16 tokens: two
  MMAs per fragment); ``CH`` consecutive chunks per loop iteration have their loads issued
  together (``PIPE``: the next group's too); ``SPLIT`` programs share K, each
  writes an fp32 partial, the last one of a row tile (a counter, reset after use) sums them.

``ASM=False`` (the interpreter) emulates the ``%tid.x`` read, the decode and the MMA with
tensor ops that follow the PTX ISA's fragment layout (ptx_emulator.py runs the PTX text).
"""

# No `from __future__ import annotations`: Triton 3.0's interpreter needs `tl.constexpr`
# annotations as objects.
import torch

from ._common import HAS_TRITON, interpreting, tl, triton

if HAS_TRITON:
    from .fourbit_decode import decode_pairs_raw, pair_halves, table_planes16

__all__ = [
    "MMA_ASM",
    "mma_candidates",
    "mma_config",
    "mma_constexprs",
    "mma_grid",
    "mma_kernel",
    "mma_ok",
    "mma_row_programs",
    "mma_tiles",
]

# Four chained m16n8k16 MMAs, C = 0 first. A: the 8 pair words of row R ($4..$11) and of
# row R + 8 ($12..$19); B: the 8 activation pair words ($20..$27); MMA j takes pairs j and
# j + 4. D: $0..$3 (fp32).
_MMA_TEMPLATE = (
    "{\n.reg .f32 z;\nmov.f32 z, 0f00000000;\n"
    + "".join(
        "mma.sync.aligned.m16n8k16.row.col.f32.{T}.{T}.f32 {$0, $1, $2, $3}, "
        f"{{${4 + j}, ${12 + j}, ${8 + j}, ${16 + j}}}, {{${20 + j}, ${24 + j}}}, "
        + ("{z, z, z, z};\n" if j == 0 else "{$0, $1, $2, $3};\n")
        for j in range(4)
    )
    + "}"
)
MMA_ASM = {
    torch.bfloat16: _MMA_TEMPLATE.replace("{T}", "bf16"),
    torch.float16: _MMA_TEMPLATE.replace("{T}", "f16"),
}
_MMA_CONSTRAINTS = "=f,=f,=f,=f," + ",".join(["r"] * 24)
# 16 bytes of activations at a 16-byte aligned address ($4), through the read-only path
_X128 = "ld.global.nc.v4.b32 {$0, $1, $2, $3}, [$4];"
# 8 weight bytes (8-byte aligned, read once: no L1 allocation)
_W64 = "ld.global.nc.L1::no_allocate.v2.b32 {$0, $1}, [$2];"

if HAS_TRITON:
    _MMA_BF16 = tl.constexpr(MMA_ASM[torch.bfloat16])
    _MMA_F16 = tl.constexpr(MMA_ASM[torch.float16])
    _MMA_CONS = tl.constexpr(_MMA_CONSTRAINTS)
    _X128_ASM = tl.constexpr(_X128)
    _W64_ASM = tl.constexpr(_W64)

    @triton.jit
    def _thread_ids(WARPS: tl.constexpr, ASM: tl.constexpr):
        """(lane, warp) of each element: from ``%tid.x`` on the GPU, the element index
        under the interpreter (where the tensor is the warp's lanes in order)."""
        e = tl.arange(0, 32 * WARPS)
        if ASM:
            tid = tl.inline_asm_elementwise("mov.u32 $0, %tid.x;", "=r,r", [e], dtype=tl.int32, is_pure=True, pack=1)
        else:
            tid = e
        return tid % 32, tid // 32

    @triton.jit
    def _cross(a, b, WARPS: tl.constexpr):
        """[WARPS, 8, 8, 4]: a[w, g, t] * b[w, j, t] for lane-indexed a, b ([32 * WARPS])."""
        a4 = tl.reshape(a, (WARPS, 8, 1, 4))
        b4 = tl.reshape(b, (WARPS, 1, 8, 4))
        return a4 * b4

    @triton.jit
    def _pick(Dm, WARPS: tl.constexpr, ODD: tl.constexpr):
        """Lane (g, t) takes D[w, g, 2t + ODD] of ``Dm`` [WARPS, 8 rows, 8 tokens]:
        [32 * WARPS]."""
        j = tl.arange(0, 8)[None, None, None, :]
        t = tl.arange(0, 4)[None, None, :, None]
        sel = tl.where(j == 2 * t + ODD, 1.0, 0.0)
        return tl.reshape(tl.sum(tl.reshape(Dm, (WARPS, 8, 1, 8)) * sel, axis=3), (32 * WARPS,))

    @triton.jit
    def _mma_emulated(
        p0, p1, p2, p3, p4, p5, p6, p7, q0, q1, q2, q3, q4, q5, q6, q7,
        x0, x1, x2, x3, x4, x5, x6, x7, DT: tl.constexpr, WARPS: tl.constexpr,
    ):  # fmt: skip
        """The four MMAs of ``MMA_ASM`` with tensor ops: row R (pairs p), row R + 8 (pairs
        q), activations x; lanes of a warp are consecutive elements."""
        DR = tl.zeros((WARPS, 8, 8, 4), dtype=tl.float32)
        DS = tl.zeros((WARPS, 8, 8, 4), dtype=tl.float32)
        for i in tl.static_range(8):
            if i == 0:
                p, q, x = p0, q0, x0
            elif i == 1:
                p, q, x = p1, q1, x1
            elif i == 2:
                p, q, x = p2, q2, x2
            elif i == 3:
                p, q, x = p3, q3, x3
            elif i == 4:
                p, q, x = p4, q4, x4
            elif i == 5:
                p, q, x = p5, q5, x5
            elif i == 6:
                p, q, x = p6, q6, x6
            else:
                p, q, x = p7, q7, x7
            plo, phi = pair_halves(p, DT)
            qlo, qhi = pair_halves(q, DT)
            xlo, xhi = pair_halves(x, DT)
            DR += _cross(plo, xlo, WARPS) + _cross(phi, xhi, WARPS)
            DS += _cross(qlo, xlo, WARPS) + _cross(qhi, xhi, WARPS)
        DRs = tl.sum(DR, axis=3)  # [WARPS, rows g, tokens j]
        DSs = tl.sum(DS, axis=3)
        return _pick(DRs, WARPS, 0), _pick(DRs, WARPS, 1), _pick(DSs, WARPS, 0), _pick(DSs, WARPS, 1)

    @triton.jit
    def _mma(
        p0, p1, p2, p3, p4, p5, p6, p7, q0, q1, q2, q3, q4, q5, q6, q7,
        x0, x1, x2, x3, x4, x5, x6, x7, DT: tl.constexpr, WARPS: tl.constexpr, ASM: tl.constexpr,
    ):  # fmt: skip
        if ASM:
            if DT == tl.bfloat16:
                d0, d1, d2, d3 = tl.inline_asm_elementwise(
                    _MMA_BF16, _MMA_CONS,
                    [p0, p1, p2, p3, p4, p5, p6, p7, q0, q1, q2, q3, q4, q5, q6, q7, x0, x1, x2, x3, x4, x5, x6, x7],
                    dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True, pack=1,
                )  # fmt: skip
            else:
                d0, d1, d2, d3 = tl.inline_asm_elementwise(
                    _MMA_F16, _MMA_CONS,
                    [p0, p1, p2, p3, p4, p5, p6, p7, q0, q1, q2, q3, q4, q5, q6, q7, x0, x1, x2, x3, x4, x5, x6, x7],
                    dtype=(tl.float32, tl.float32, tl.float32, tl.float32), is_pure=True, pack=1,
                )  # fmt: skip
        else:
            d0, d1, d2, d3 = _mma_emulated(
                p0, p1, p2, p3, p4, p5, p6, p7, q0, q1, q2, q3, q4, q5, q6, q7,
                x0, x1, x2, x3, x4, x5, x6, x7, DT, WARPS,
            )  # fmt: skip
        return d0, d1, d2, d3

    @triton.jit
    def _load_x(x_ptr, tok, stride_xm, f0, ASM: tl.constexpr):
        """Activations of token row ``tok`` at features f0 .. f0 + 15 (f0 a multiple of 16):
        8 pair words (features 2i, 2i + 1 in word i, the lower one in the low half)."""
        if ASM:
            addr = (x_ptr + tok * stride_xm + f0).to(tl.int64)
            x0, x1, x2, x3 = tl.inline_asm_elementwise(
                _X128_ASM, "=r,=r,=r,=r,l", [addr],
                dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1,
            )  # fmt: skip
            x4, x5, x6, x7 = tl.inline_asm_elementwise(
                _X128_ASM, "=r,=r,=r,=r,l", [addr + 16],
                dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1,
            )  # fmt: skip
        else:
            base = (x_ptr + tok * stride_xm + f0).to(tl.pointer_type(tl.int32))
            x0 = tl.load(base)
            x1 = tl.load(base + 1)
            x2 = tl.load(base + 2)
            x3 = tl.load(base + 3)
            x4 = tl.load(base + 4)
            x5 = tl.load(base + 5)
            x6 = tl.load(base + 6)
            x7 = tl.load(base + 7)
        return x0, x1, x2, x3, x4, x5, x6, x7

    @triton.jit
    def _fetch(w64, a8_ptr, absmax_ptr, row, c, t, K, BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr, ASM: tl.constexpr):
        """Chunk ``c`` of weight row ``row`` for lane ``t``: its 8 bytes (int64) and the
        scale inputs of the block (nested: the 8-bit code and the second-level absmax). On
        the GPU the 8 bytes are read by inline PTX marked as having side effects, so that
        LLVM keeps the load where it is written (it sinks plain loads next to their use)."""
        if ASM:
            addr = (w64 + (row * (K // 16) + c * 4 + t)).to(tl.int64)
            lo, hi = tl.inline_asm_elementwise(
                _W64_ASM, "=r,=r,l", [addr], dtype=(tl.int32, tl.int32), is_pure=False, pack=1
            )
            v = (hi.to(tl.int64) << 32) | (lo.to(tl.int64) & 0xFFFFFFFF)
        else:
            v = tl.load(w64 + (row * (K // 16) + c * 4 + t), eviction_policy="evict_first")
        blk = row * (K // BLOCKSIZE) + (c * 64) // BLOCKSIZE
        if NESTED:
            s8 = tl.load(a8_ptr + blk).to(tl.int32)
            am = tl.load(absmax_ptr + blk // 256)
        else:
            am = tl.load(absmax_ptr + blk)
            s8 = blk
        return v, s8, am

    @triton.jit
    def _fetch2(
        w64, a8_ptr, absmax_ptr, la, lb, c, chunks, t, K,
        BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr, ASM: tl.constexpr,
    ):  # fmt: skip
        """Chunk ``c`` (clamped to the last one) of rows ``la`` and ``lb``: ``_fetch`` twice."""
        cc = tl.minimum(c, chunks - 1)
        va, s8a, ama = _fetch(w64, a8_ptr, absmax_ptr, la, cc, t, K, BLOCKSIZE, NESTED, ASM)
        vb, s8b, amb = _fetch(w64, a8_ptr, absmax_ptr, lb, cc, t, K, BLOCKSIZE, NESTED, ASM)
        return va, s8a, ama, vb, s8b, amb

    @triton.jit
    def _scale(s8, am, code2_ptr, offset, NESTED: tl.constexpr):
        if NESTED:
            return tl.load(code2_ptr + s8) * am + offset
        return am

    @triton.jit
    def _decode8(v, l0, l1, l2, l3, h0, h1, h2, h3, ASM: tl.constexpr):
        """The 16 codes of int64 ``v`` (8 weight bytes) as 8 pair words."""
        p0, p1, p2, p3 = decode_pairs_raw(v.to(tl.int32), l0, l1, l2, l3, h0, h1, h2, h3, ASM)
        p4, p5, p6, p7 = decode_pairs_raw((v >> 32).to(tl.int32), l0, l1, l2, l3, h0, h1, h2, h3, ASM)
        return p0, p1, p2, p3, p4, p5, p6, p7

    @triton.jit
    def _tile_chunk(
        va, vb, sa, sb, x0, x1, x2, x3, x4, x5, x6, x7, y0, y1, y2, y3, y4, y5, y6, y7,
        a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, h0, h1, h2, h3,
        DT: tl.constexpr, WARPS: tl.constexpr, TT: tl.constexpr, ASM: tl.constexpr,
    ):  # fmt: skip
        """One row tile's chunk: decode rows R (``va``) and R + 8 (``vb``), MMA with the
        token tiles' activations ``x`` (and ``y`` when TT == 2), add scale times the
        result into the accumulators a0..a7."""
        p0, p1, p2, p3, p4, p5, p6, p7 = _decode8(va, l0, l1, l2, l3, h0, h1, h2, h3, ASM)
        q0, q1, q2, q3, q4, q5, q6, q7 = _decode8(vb, l0, l1, l2, l3, h0, h1, h2, h3, ASM)
        d0, d1, d2, d3 = _mma(
            p0, p1, p2, p3, p4, p5, p6, p7, q0, q1, q2, q3, q4, q5, q6, q7,
            x0, x1, x2, x3, x4, x5, x6, x7, DT, WARPS, ASM,
        )  # fmt: skip
        a0 += sa * d0
        a1 += sa * d1
        a2 += sb * d2
        a3 += sb * d3
        if TT > 1:
            e0, e1, e2, e3 = _mma(
                p0, p1, p2, p3, p4, p5, p6, p7, q0, q1, q2, q3, q4, q5, q6, q7,
                y0, y1, y2, y3, y4, y5, y6, y7, DT, WARPS, ASM,
            )  # fmt: skip
            a4 += sa * e0
            a5 += sa * e1
            a6 += sb * e2
            a7 += sb * e3
        return a0, a1, a2, a3, a4, a5, a6, a7

    @triton.jit
    def _store_tile(
        a0, a1, a2, a3, a4, a5, a6, a7, row_a, t, M, N, bias_ptr, out_ptr, ws_ptr, stride_om, part,
        HAS_BIAS: tl.constexpr, TT: tl.constexpr, FINAL: tl.constexpr, OUT_DT: tl.constexpr,
    ):  # fmt: skip
        """Rows ``row_a`` and ``row_a + 8``, tokens 2t, 2t + 1 (+ 8 for the second token
        tile). FINAL: bias added, cast, stored to ``out``; else the fp32 partial to
        ``ws`` at ``part``."""
        row_b = row_a + 8
        for k in tl.static_range(2 * TT):
            tok = (k // 2) * 8 + 2 * t
            if k == 0:
                va, vb = a0, a2
            elif k == 1:
                va, vb = a1, a3
                tok += 1
            elif k == 2:
                va, vb = a4, a6
            else:
                va, vb = a5, a7
                tok += 1
            ma = (tok < M) & (row_a < N)
            mb = (tok < M) & (row_b < N)
            if FINAL:
                if HAS_BIAS:
                    va += tl.load(bias_ptr + row_a, mask=row_a < N, other=0.0).to(tl.float32)
                    vb += tl.load(bias_ptr + row_b, mask=row_b < N, other=0.0).to(tl.float32)
                tl.store(out_ptr + tok * stride_om + row_a, va.to(OUT_DT), mask=ma)
                tl.store(out_ptr + tok * stride_om + row_b, vb.to(OUT_DT), mask=mb)
            else:
                tl.store(ws_ptr + part + tok * N + row_a, va, mask=ma)
                tl.store(ws_ptr + part + tok * N + row_b, vb, mask=mb)

    @triton.jit
    def _fetch_group(
        w64, a8_ptr, absmax_ptr, la, lb, c, chunks, t, K,
        BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr, ASM: tl.constexpr, CH: tl.constexpr,
    ):  # fmt: skip
        """Chunks c .. c + CH - 1 of rows ``la``, ``lb``: 6 values per chunk (``_fetch2``),
        4 chunks' worth (slots past CH repeat chunk c, so no load is issued for them)."""
        va0, sa0, ma0, vb0, sb0, mb0 = _fetch2(w64, a8_ptr, absmax_ptr, la, lb, c, chunks, t, K, BLOCKSIZE, NESTED, ASM)
        va1, sa1, ma1, vb1, sb1, mb1 = va0, sa0, ma0, vb0, sb0, mb0
        va2, sa2, ma2, vb2, sb2, mb2 = va0, sa0, ma0, vb0, sb0, mb0
        va3, sa3, ma3, vb3, sb3, mb3 = va0, sa0, ma0, vb0, sb0, mb0
        if CH > 1:
            va1, sa1, ma1, vb1, sb1, mb1 = _fetch2(
                w64, a8_ptr, absmax_ptr, la, lb, c + 1, chunks, t, K, BLOCKSIZE, NESTED, ASM
            )  # fmt: skip
        if CH > 2:
            va2, sa2, ma2, vb2, sb2, mb2 = _fetch2(
                w64, a8_ptr, absmax_ptr, la, lb, c + 2, chunks, t, K, BLOCKSIZE, NESTED, ASM
            )  # fmt: skip
            va3, sa3, ma3, vb3, sb3, mb3 = _fetch2(
                w64, a8_ptr, absmax_ptr, la, lb, c + 3, chunks, t, K, BLOCKSIZE, NESTED, ASM
            )  # fmt: skip
        # fmt: off
        return (va0, sa0, ma0, vb0, sb0, mb0, va1, sa1, ma1, vb1, sb1, mb1, va2, sa2, ma2, vb2, sb2, mb2, va3, sa3, ma3, vb3, sb3, mb3)
        # fmt: on

    @triton.jit
    def _compute_chunk(
        va, sa, ma, vb, sb, mb, x_ptr, tok0, tok1, stride_xm, cc, live, t, code2_ptr, offset,
        a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, h0, h1, h2, h3,
        NESTED: tl.constexpr, DT: tl.constexpr, WARPS: tl.constexpr, TT: tl.constexpr, ASM: tl.constexpr,
    ):  # fmt: skip
        """Chunk ``cc`` of one row tile (its fetched words and scale inputs): activations,
        scales (zero unless ``live``), decode, MMA, accumulate."""
        f0 = cc * 64 + t * 16
        x0, x1, x2, x3, x4, x5, x6, x7 = _load_x(x_ptr, tok0, stride_xm, f0, ASM)
        if TT > 1:
            y0, y1, y2, y3, y4, y5, y6, y7 = _load_x(x_ptr, tok1, stride_xm, f0, ASM)
        else:
            y0, y1, y2, y3, y4, y5, y6, y7 = x0, x1, x2, x3, x4, x5, x6, x7
        s_a = tl.where(live, _scale(sa, ma, code2_ptr, offset, NESTED), 0.0)
        s_b = tl.where(live, _scale(sb, mb, code2_ptr, offset, NESTED), 0.0)
        return _tile_chunk(
            va, vb, s_a, s_b, x0, x1, x2, x3, x4, x5, x6, x7, y0, y1, y2, y3, y4, y5, y6, y7,
            a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, h0, h1, h2, h3, DT, WARPS, TT, ASM,
        )  # fmt: skip

    @triton.jit
    def _compute_group(
        va0, sa0, ma0, vb0, sb0, mb0, va1, sa1, ma1, vb1, sb1, mb1, va2, sa2, ma2, vb2, sb2, mb2, va3, sa3, ma3, vb3, sb3, mb3,
        x_ptr, tok0, tok1, stride_xm, c, c1, chunks, t, code2_ptr, offset,
        a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, h0, h1, h2, h3,
        NESTED: tl.constexpr, DT: tl.constexpr, WARPS: tl.constexpr, TT: tl.constexpr, CH: tl.constexpr,
        ASM: tl.constexpr,
    ):  # fmt: skip
        """The CH chunks of a fetched group (a chunk past c1 re-read chunk ``chunks - 1``
        and counts zero)."""
        a0, a1, a2, a3, a4, a5, a6, a7 = _compute_chunk(
            va0, sa0, ma0, vb0, sb0, mb0, x_ptr, tok0, tok1, stride_xm, tl.minimum(c, chunks - 1), c < c1, t,
            code2_ptr, offset, a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, h0, h1, h2, h3,
            NESTED, DT, WARPS, TT, ASM,
        )  # fmt: skip
        if CH > 1:
            a0, a1, a2, a3, a4, a5, a6, a7 = _compute_chunk(
                va1, sa1, ma1, vb1, sb1, mb1, x_ptr, tok0, tok1, stride_xm, tl.minimum(c + 1, chunks - 1),
                c + 1 < c1, t, code2_ptr, offset, a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, h0, h1, h2, h3,
                NESTED, DT, WARPS, TT, ASM,
            )  # fmt: skip
        if CH > 2:
            a0, a1, a2, a3, a4, a5, a6, a7 = _compute_chunk(
                va2, sa2, ma2, vb2, sb2, mb2, x_ptr, tok0, tok1, stride_xm, tl.minimum(c + 2, chunks - 1),
                c + 2 < c1, t, code2_ptr, offset, a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, h0, h1, h2, h3,
                NESTED, DT, WARPS, TT, ASM,
            )  # fmt: skip
            a0, a1, a2, a3, a4, a5, a6, a7 = _compute_chunk(
                va3, sa3, ma3, vb3, sb3, mb3, x_ptr, tok0, tok1, stride_xm, tl.minimum(c + 3, chunks - 1),
                c + 3 < c1, t, code2_ptr, offset, a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, h0, h1, h2, h3,
                NESTED, DT, WARPS, TT, ASM,
            )  # fmt: skip
        return a0, a1, a2, a3, a4, a5, a6, a7

    @triton.jit
    def mma_kernel(
        x_ptr, w_ptr, absmax_ptr, a8_ptr, code2_ptr, offset_ptr, lut_ptr, bias_ptr, out_ptr, ws_ptr, cnt_ptr,
        M, N, K, stride_xm, stride_om,
        BLOCKSIZE: tl.constexpr, NESTED: tl.constexpr, HAS_BIAS: tl.constexpr,
        WARPS: tl.constexpr, TT: tl.constexpr, SPLIT: tl.constexpr, CH: tl.constexpr,
        PIPE: tl.constexpr, ILV: tl.constexpr, ASM: tl.constexpr,
    ):  # fmt: skip
        """``out[m, n] = sum_k x[m, k] W[n, k] (+ bias[n])`` for M <= 8 * TT tokens, 16 weight
        rows per warp; grid (cdiv(N, 16 * WARPS), SPLIT), or (SPLIT, cdiv(N, 16 * WARPS))
        with ILV. Requires K % 64 == 0, BLOCKSIZE >= 64 with K % BLOCKSIZE == 0, the weight
        8-byte and the activation rows 16-byte aligned (see :func:`mma_ok`). SPLIT > 1:
        ``ws`` holds SPLIT fp32 [M, N] partials and ``cnt`` one zeroed int32 counter per
        program along N."""
        DT: tl.constexpr = x_ptr.dtype.element_ty
        lane, warp = _thread_ids(WARPS, ASM)
        g = lane // 4
        t = lane % 4
        if ILV:  # a row tile's SPLIT programs are launched next to each other
            pid_k = tl.program_id(0)
            pid_n = tl.program_id(1)
        else:
            pid_n = tl.program_id(0)
            pid_k = tl.program_id(1)
        row = (pid_n * WARPS + warp) * 16 + g
        # rows past N and tokens past M read valid memory (clamped) and are never stored
        la = tl.minimum(row, N - 1)
        lb = tl.minimum(row + 8, N - 1)
        tok0 = tl.minimum(g, M - 1)
        tok1 = tl.minimum(g + 8, M - 1)
        w64 = w_ptr.to(tl.pointer_type(tl.int64))
        if NESTED:
            offset = tl.load(offset_ptr)
        else:
            offset = 0.0
        l0, l1, l2, l3, h0, h1, h2, h3 = table_planes16(lut_ptr, DT)
        chunks = K // 64
        if ILV:
            # groups of CH chunks dealt round-robin to the SPLIT programs: together they read
            # SPLIT * CH * 32 contiguous bytes of each row at a time
            c0 = pid_k * CH
            c1 = chunks
            STEP: tl.constexpr = SPLIT * CH
        else:
            per = tl.cdiv(chunks, SPLIT)
            c0 = pid_k * per
            c1 = tl.minimum(chunks, c0 + per)
            STEP: tl.constexpr = CH
        a0 = tl.zeros((32 * WARPS,), tl.float32)
        a1 = a0
        a2 = a0
        a3 = a0
        a4 = a0
        a5 = a0
        a6 = a0
        a7 = a0
        # CH (1, 2 or 4) consecutive chunks per iteration, every weight and scale load of the
        # group issued first (ptxas keeps them where they are written when it has the
        # registers): more bytes in flight, 32 * CH contiguous bytes per row. PIPE: the next
        # group's loads are issued before this group is decoded.
        # fmt: off
        if PIPE:
            nva0, nsa0, nma0, nvb0, nsb0, nmb0, nva1, nsa1, nma1, nvb1, nsb1, nmb1, nva2, nsa2, nma2, nvb2, nsb2, nmb2, nva3, nsa3, nma3, nvb3, nsb3, nmb3 = _fetch_group(
                w64, a8_ptr, absmax_ptr, la, lb, c0, chunks, t, K, BLOCKSIZE, NESTED, ASM, CH)
        for c in range(c0, c1, STEP):
            if PIPE:
                va0, sa0, ma0, vb0, sb0, mb0, va1, sa1, ma1, vb1, sb1, mb1, va2, sa2, ma2, vb2, sb2, mb2, va3, sa3, ma3, vb3, sb3, mb3 = (
                    nva0, nsa0, nma0, nvb0, nsb0, nmb0, nva1, nsa1, nma1, nvb1, nsb1, nmb1, nva2, nsa2, nma2, nvb2, nsb2, nmb2, nva3, nsa3, nma3, nvb3, nsb3, nmb3)
                nva0, nsa0, nma0, nvb0, nsb0, nmb0, nva1, nsa1, nma1, nvb1, nsb1, nmb1, nva2, nsa2, nma2, nvb2, nsb2, nmb2, nva3, nsa3, nma3, nvb3, nsb3, nmb3 = _fetch_group(
                    w64, a8_ptr, absmax_ptr, la, lb, c + STEP, chunks, t, K, BLOCKSIZE, NESTED, ASM, CH)
            else:
                va0, sa0, ma0, vb0, sb0, mb0, va1, sa1, ma1, vb1, sb1, mb1, va2, sa2, ma2, vb2, sb2, mb2, va3, sa3, ma3, vb3, sb3, mb3 = _fetch_group(
                    w64, a8_ptr, absmax_ptr, la, lb, c, chunks, t, K, BLOCKSIZE, NESTED, ASM, CH)
            a0, a1, a2, a3, a4, a5, a6, a7 = _compute_group(
                va0, sa0, ma0, vb0, sb0, mb0, va1, sa1, ma1, vb1, sb1, mb1, va2, sa2, ma2, vb2, sb2, mb2, va3, sa3, ma3, vb3, sb3, mb3,
                x_ptr, tok0, tok1, stride_xm, c, c1, chunks, t, code2_ptr, offset,
                a0, a1, a2, a3, a4, a5, a6, a7, l0, l1, l2, l3, h0, h1, h2, h3,
                NESTED, DT, WARPS, TT, CH, ASM)
        # fmt: on
        OUT_DT: tl.constexpr = out_ptr.dtype.element_ty
        if SPLIT == 1:
            _store_tile(
                a0, a1, a2, a3, a4, a5, a6, a7, row, t, M, N, bias_ptr, out_ptr, ws_ptr, stride_om, 0,
                HAS_BIAS, TT, True, OUT_DT,
            )  # fmt: skip
        else:
            _store_tile(
                a0, a1, a2, a3, a4, a5, a6, a7, row, t, M, N, bias_ptr, out_ptr, ws_ptr, stride_om, pid_k * (M * N),
                HAS_BIAS, TT, False, OUT_DT,
            )  # fmt: skip
            tl.debug_barrier()  # every thread's partial is written before the counter moves
            done = tl.atomic_add(cnt_ptr + pid_n, 1, sem="acq_rel")
            if done == SPLIT - 1:
                a0, a1, a2, a3, a4, a5, a6, a7 = _sum_parts(row, t, M, N, ws_ptr, SPLIT, TT)
                _store_tile(
                    a0, a1, a2, a3, a4, a5, a6, a7, row, t, M, N, bias_ptr, out_ptr, ws_ptr, stride_om, 0,
                    HAS_BIAS, TT, True, OUT_DT,
                )  # fmt: skip
                tl.atomic_xchg(cnt_ptr + pid_n, 0)  # ready for the next launch

    @triton.jit
    def _part_sum(ws_ptr, MN, idx, mask, SPLIT: tl.constexpr):
        s = tl.zeros(idx.shape, tl.float32)
        for i in range(SPLIT):  # not unrolled
            s += tl.load(ws_ptr + i * MN + idx, mask=mask, other=0.0, cache_modifier=".cg")
        return s

    @triton.jit
    def _sum_parts(row_a, t, M, N, ws_ptr, SPLIT: tl.constexpr, TT: tl.constexpr):
        """The 8 accumulators of ``_store_tile``'s layout, summed over the SPLIT partials."""
        MN = M * N
        row_b = row_a + 8
        tok = 2 * t
        a0 = _part_sum(ws_ptr, MN, tok * N + row_a, (tok < M) & (row_a < N), SPLIT)
        a1 = _part_sum(ws_ptr, MN, (tok + 1) * N + row_a, (tok + 1 < M) & (row_a < N), SPLIT)
        a2 = _part_sum(ws_ptr, MN, tok * N + row_b, (tok < M) & (row_b < N), SPLIT)
        a3 = _part_sum(ws_ptr, MN, (tok + 1) * N + row_b, (tok + 1 < M) & (row_b < N), SPLIT)
        if TT > 1:
            a4 = _part_sum(ws_ptr, MN, (tok + 8) * N + row_a, (tok + 8 < M) & (row_a < N), SPLIT)
            a5 = _part_sum(ws_ptr, MN, (tok + 9) * N + row_a, (tok + 9 < M) & (row_a < N), SPLIT)
            a6 = _part_sum(ws_ptr, MN, (tok + 8) * N + row_b, (tok + 8 < M) & (row_b < N), SPLIT)
            a7 = _part_sum(ws_ptr, MN, (tok + 9) * N + row_b, (tok + 9 < M) & (row_b < N), SPLIT)
        else:
            a4, a5, a6, a7 = a0, a1, a2, a3
        return a0, a1, a2, a3, a4, a5, a6, a7


# ------------------------------------------------------------------------------------------
# Configs: (WARPS, SPLIT, CH chunks per iteration, MAXNREG, PIPE, ILV); TT (token tiles of 8)
# follows from M. MAXNREG (0: ptxas's choice) caps the registers per thread: with room (128
# for 4 chunks) ptxas issues a group's loads first instead of moving each next to its use
# (SASS for sm_90: without it, one chunk of loads in flight per warp); 16 tokens add 40.
# PIPE prefetches the next group; ILV deals groups of CH chunks round-robin to the SPLIT
# programs of a row tile (launched next to each other) instead of giving each a contiguous
# K range.
#
# H100 (bf16, nf4 bs64 nested; scripts/gpu-check-mma.py, kernel us, 2026-11-25, three runs of
# 12-13 layouts on the five anchor shapes): at 1-8 tokens the winners were 4 chunks per
# iteration with 128 registers (4 or 8 warps), 2 chunks with the next group prefetched
# (plain or interleaved split-K) and 4 chunks prefetched with 168 registers; at 16 tokens 2
# chunks with 96 registers, and 4 chunks interleaved. 2 row tiles of 16 per warp (168
# registers, since removed), 2 warps and no register cap lost everywhere. Each entry:
# (warps, chunks, registers, prefetch, interleave, split: "auto", "double" or "ilv").
_FEW_TOKENS = [
    (4, 4, 128, 0, 0, "auto"),
    (8, 4, 128, 0, 0, "auto"),
    (4, 2, 128, 1, 0, "auto"),
    (4, 4, 168, 1, 0, "auto"),
    (4, 2, 128, 1, 1, "ilv"),
]
_SIXTEEN_TOKENS = [
    (4, 2, 96, 0, 0, "auto"),
    (4, 2, 96, 0, 0, "double"),
    (4, 4, 128, 0, 1, "ilv"),
]
_TARGET_WARPS = 132 * 16  # about 16 resident warps per SM of an H100
# The register cap is passed where this Triton's CUDA options have ``maxnreg`` (checked here).
_HAS_MAXNREG = False
if HAS_TRITON:
    try:
        import dataclasses

        from triton.backends.nvidia.compiler import CUDAOptions

        _HAS_MAXNREG = any(f.name == "maxnreg" for f in dataclasses.fields(CUDAOptions))
    except Exception:  # pragma: no cover - depends on the Triton build
        _HAS_MAXNREG = False


def mma_tiles(M: int) -> int:
    """Token tiles of 8 for M tokens (the kernel takes 1 or 2)."""
    return 1 if M <= 8 else 2


def _auto_split(N: int, K: int, ch: int) -> int:
    """Split-K for about _TARGET_WARPS warps, each range at least two iterations long."""
    tiles = triton.cdiv(N, 16)
    return max(1, min(16, K // 64 // (2 * ch), round(_TARGET_WARPS / max(1, tiles))))


def mma_candidates(M: int, N: int, K: int) -> list[tuple[int, ...]]:
    """The configs worth timing for M tokens (the winners of the H100 runs above)."""
    out = []
    for warps, ch, regs, pipe, ilv, split in _FEW_TOKENS if M <= 8 else _SIXTEEN_TOKENS:
        sp = _auto_split(N, K, ch)
        if split == "double":
            sp = max(1, min(K // 64 // ch, 2 * sp))
        elif split == "ilv":  # at least 4 programs per row tile reading the rows together
            sp = max(2, min(K // 64 // ch, max(4, sp)))
        out.append((warps, sp, ch, regs, pipe, ilv))
    return list(dict.fromkeys(out))


def mma_config(M: int, N: int, K: int) -> tuple[int, ...]:
    """The config used without timing (within 6% of the best on the anchor shapes at 4
    tokens; 2 chunks per iteration at 9-16 tokens)."""
    if M > 8:
        return (4, _auto_split(N, K, 2), 2, 96, 0, 0)
    return (4, _auto_split(N, K, 4), 4, 128, 0, 0)


def mma_row_programs(config: tuple, N: int) -> int:
    """Programs along N (one split-K counter each): 16 rows per warp."""
    return triton.cdiv(N, 16 * config[0])


def mma_grid(config: tuple, N: int, K: int) -> tuple[int, int]:
    """(row programs, split) or, with ILV, (split, row programs)."""
    split = max(1, min(config[1], K // 64))
    rows = mma_row_programs(config, N)
    return (split, rows) if len(config) > 5 and config[5] else (rows, split)


def mma_constexprs(config: tuple, M: int, K: int, blocksize: int, nested: bool, has_bias: bool) -> dict:
    """Keyword arguments of ``mma_kernel[grid](...)``: every constexpr, then the launch
    options (num_warps, and maxnreg where the config caps registers and Triton takes it)."""
    warps, split, ch = config[:3]
    regs = config[3] if len(config) > 3 else 0
    pipe = bool(config[4]) if len(config) > 4 else False
    ilv = bool(config[5]) if len(config) > 5 else False
    if not 1 <= M <= 16:
        raise ValueError(f"mma_kernel handles 1 to 16 token rows, got {M}")
    if ch not in (1, 2, 4):
        raise ValueError(f"mma_kernel takes 1, 2 or 4 chunks per iteration, got {config}")
    kw = dict(
        BLOCKSIZE=blocksize,
        NESTED=nested,
        HAS_BIAS=has_bias,
        WARPS=warps,
        TT=mma_tiles(M),
        SPLIT=max(1, min(split, K // 64)),
        CH=ch,
        PIPE=pipe,
        ILV=ilv,
        ASM=not interpreting(),
        num_warps=warps,
    )
    if regs and _HAS_MAXNREG and not interpreting():
        kw["maxnreg"] = min(255, regs + (40 if kw["TT"] > 1 else 0))
    return kw


def mma_ok(M: int, K: int, blocksize: int, dtype: torch.dtype) -> bool:
    """Whether the shape suits ``mma_kernel`` (the pointers' alignment is checked per call)."""
    return (
        1 <= M <= 16
        and dtype in (torch.float16, torch.bfloat16)
        and K % 64 == 0
        and blocksize >= 64
        and K % blocksize == 0
    )


def mma_x_ok(x: torch.Tensor) -> bool:
    """Whether ``x`` [M, K] can be read as it is: 128-bit loads need 16-byte aligned rows."""
    return x.stride(-1) == 1 and x.data_ptr() % 16 == 0 and (x.stride(0) * x.element_size()) % 16 == 0


def mma_launch(
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
) -> torch.Tensor:
    """``out = x @ W.T (+ bias)`` for x [M, K] (M <= 16, fp16/bf16), ``w`` the flat uint8
    packed weight (8-byte aligned), the scale arguments as ``fourbit_gemv.gemv_launch`` takes
    them, ``out`` a contiguous [M, N] tensor of x's dtype; split-K partials and counters in
    fresh buffers (the 4-bit matmul's plans keep theirs). For tests and benchmarks."""
    M = x.shape[0]
    if not mma_ok(M, K, blocksize, x.dtype) or x.shape[-1] != K:
        raise ValueError(
            f"mma_kernel needs 1-16 fp16/bf16 token rows, K % 64 == 0 and blocksize >= 64 dividing K; "
            f"got M={M}, K={K}, blocksize={blocksize}, {x.dtype}"
        )
    if w.data_ptr() % 8:
        raise ValueError("mma_kernel reads the packed weight 8 bytes at a time: it must be 8-byte aligned")
    if not mma_x_ok(x):
        x = x.clone(memory_format=torch.contiguous_format)
    kw = mma_constexprs(config, M, K, blocksize, nested, bias is not None)
    grid = mma_grid(config, N, K)
    ws = torch.empty(max(1, kw["SPLIT"] * M * N), dtype=torch.float32, device=x.device)
    cnt = torch.zeros(mma_row_programs(config, N), dtype=torch.int32, device=x.device)
    bias_arg = absmax if bias is None else bias
    mma_kernel[grid](x, w, absmax, a8, code2, offset, lut, bias_arg, out, ws, cnt, M, N, K, x.stride(0), N, **kw)
    return out
