"""Decoding packed 4-bit codes with byte permutes (PTX ``prmt``) instead of table gathers.

The 16 code values (nf4 or fp4, in [-1, 1]) are held as fp16 bit patterns, split into a
low-byte plane ``L0..L3`` and a high-byte plane ``H0..H3`` (four 32-bit words each: byte
``i`` of word ``k`` is the low / high byte of entry ``4k + i``). One ``prmt`` picks four
bytes out of two registers, each by a 3-bit selector nibble of its control word, so:

- a 32-bit word ``w`` of 8 nibbles (byte ``t`` = features ``2t`` (high nibble) and
  ``2t + 1`` (low nibble), the weight format of bnb-kernels) gives the selectors
  ``s = w & 0x77777777`` (bit 3 of a selector nibble is prmt's sign-replicate mode, so it
  is masked off) and the choice words ``c = ((w >> 1) & 0x44444444) | 0x32103210``;
- for the 4 nibbles of the low half: ``prmt(L0, L1, s)`` gives the low bytes of entries
  0-7, ``prmt(L2, L3, s)`` those of entries 8-15, and ``prmt(., ., c)`` keeps per byte the
  one that bit 3 of the nibble selects; the same three for the high plane; two more
  ``prmt`` interleave low and high bytes into two fp16x2 words and four ``cvt.f32.f16``
  (exact) widen them. The upper half does the same with ``s >> 16`` and ``c >> 16``
  (prmt reads only the low 16 bits of its control).

Per word (8 values): 16 ``prmt`` + 5 selector instructions on the integer pipe and 8
conversions, instead of 8 address computations and 8 shared/L1 gathers. The values are the
code rounded to fp16 (relative error <= 2**-12), then used in fp32.

:func:`decode_word` is the Triton helper (``ASM=True``: one inline-asm block per word;
``ASM=False``: the same permutes emulated with integer ops, for the interpreter, which
cannot run inline asm). :func:`prmt_reference` / :func:`decode_reference` emulate the
instruction in torch so tests check the bit logic on any machine.
"""

# No `from __future__ import annotations`: Triton 3.0's interpreter needs `tl.constexpr`
# annotations as objects.
import torch

from ._common import HAS_TRITON, tl, triton
from .ptx_emulator import bits16 as _bits16
from .ptx_emulator import from_bits16 as _from_bits16
from .ptx_emulator import prmt_reference, run_ptx

__all__ = [
    "DECODE_ASM",
    "PAIR_ASM",
    "RAW_PAIR_ASM",
    "decode_pairs",
    "decode_pairs_raw",
    "decode_pairs_raw_reference",
    "decode_pairs_reference",
    "decode_reference",
    "decode_word",
    "fp16_planes",
    "lookup_pairs_reference",
    "lookup_reference",
    "pair_halves",
    "pair_planes",
    "prmt_reference",
    "table_planes",
    "table_planes16",
]

# One word in ($8), the 8 plane words ($9..$16: L0..L3, H0..H3) in, 8 fp32 out ($0..$7:
# features 0..7 of the word). Output byte k of a prmt is chosen by nibble k of its control;
# nibble 0 of a word is the low nibble of byte 0 = feature 1, nibble 1 = feature 0, etc.
_DECODE_HALF = """prmt.b32 a, $9, $10, s;
prmt.b32 b, $11, $12, s;
prmt.b32 l, a, b, c;
prmt.b32 a, $13, $14, s;
prmt.b32 b, $15, $16, s;
prmt.b32 h, a, b, c;
prmt.b32 p, l, h, 0x5140;
prmt.b32 q, l, h, 0x7362;
mov.b32 {x, y}, p;
cvt.f32.f16 ${O1}, x;
cvt.f32.f16 ${O0}, y;
mov.b32 {x, y}, q;
cvt.f32.f16 ${O3}, x;
cvt.f32.f16 ${O2}, y;
"""


def _decode_asm_half(first: int) -> str:
    """One half of the word: features ``first`` .. ``first + 3`` out."""
    half = _DECODE_HALF
    for k in range(4):
        half = half.replace(f"{{O{k}}}", str(first + k))
    return half


DECODE_ASM = (
    "{\n.reg .b32 s, c, a, b, l, h, p, q;\n.reg .b16 x, y;\nand.b32 s, $8, 0x77777777;\nshr.u32 c, $8, 1;\n"
    "and.b32 c, c, 0x44444444;\nor.b32 c, c, 0x32103210;\n"
    + _decode_asm_half(0)
    + "shr.u32 s, s, 16;\nshr.u32 c, c, 16;\n"
    + _decode_asm_half(4)
    + "}"
)
_CONSTRAINTS = "=r,=r,=r,=r,=r,=r,=r,=r,r,r,r,r,r,r,r,r,r"


def fp16_planes(lut: torch.Tensor) -> list[int]:
    """The 8 plane words (L0..L3, H0..H3) of a 16-entry table, as Python ints in
    [0, 2**32), the table rounded to fp16 (what :func:`table_planes` builds in a kernel)."""
    return pair_planes(lut, torch.float16)


def decode_reference(words: torch.Tensor, planes: list[int], asm: str = DECODE_ASM) -> torch.Tensor:
    """Runs the PTX text ``asm`` (default :data:`DECODE_ASM`, the block the kernels use) on
    32-bit ``words`` (any int tensor) with :func:`ptx_emulator.run_ptx`: fp32 [..., 8],
    features 0..7."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    regs: dict[str, torch.Tensor] = {"$8": w}
    for i, p in enumerate(planes):
        regs[f"${9 + i}"] = torch.full_like(w, p)
    run_ptx(asm, regs)
    return torch.stack([regs[f"${i}"] for i in range(8)], dim=-1)


def lookup_reference(words: torch.Tensor, lut: torch.Tensor) -> torch.Tensor:
    """Plain table lookup (the table rounded to fp16): fp32 [..., 8], features 0..7 of each
    32-bit word (byte t = features 2t (high nibble), 2t + 1 (low nibble))."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    table = lut.reshape(-1).to(torch.float16).float()
    out = []
    for t in range(4):
        byte = (w >> (8 * t)) & 0xFF
        out += [table[byte >> 4], table[byte & 15]]
    return torch.stack(out, dim=-1)


# The tensor-core variant (``decode_pairs``): the planes hold the table as bf16 or fp16 bit
# patterns (the MMA operand's dtype), so the final two prmt of each half are already packed
# 16-bit pairs, one per byte: the high nibble's value (the lower K index) in the low half.
# Each pair is multiplied by the block's scale pair (the scale in both halves) in one
# packed fma (+ -0.0: one rounding of the exact product, signed zeros kept). Entries 0-7 /
# 8-15 are picked by a lop3 with a byte mask (0xFF where bit 3 of the nibble is set) that
# one prmt in sign-replicate mode makes from the word and the word shifted left by 4 (the
# bit 3 of each nibble lands on a byte's sign bit in one of them). One word in ($4), the 8
# plane words ($5..$12: L0..L3, H0..H3), the scale pair ($13) in; 4 pair words out
# ($0..$3: bytes 0..3 of the word). Per word of 8 values: 3 selector instructions, 2 mask
# prmt, 12 prmt + 4 lop3 for the values, 4 fma.
_PAIR_HALF = """prmt.b32 m, t, $4, {MASK};
prmt.b32 a, $5, $6, s;
prmt.b32 b, $7, $8, s;
lop3.b32 l, a, b, m, 0xD8;
prmt.b32 a, $9, $10, s;
prmt.b32 b, $11, $12, s;
lop3.b32 h, a, b, m, 0xD8;
prmt.b32 p, l, h, 0x4051;
fma.rn.{T} ${O0}, p, $13, z;
prmt.b32 p, l, h, 0x6273;
fma.rn.{T} ${O1}, p, $13, z;
"""


def _word_asm(half: str, regs: str, setup: str = "") -> str:
    """One word's block from a half template: bytes 0-1 (outputs $0, $1), then bytes 2-3
    ($2, $3) with the selectors shifted down."""
    return (
        "{\n.reg .b32 " + regs + ";\n" + setup + "shl.b32 t, $4, 4;\nand.b32 s, $4, 0x77777777;\n"
        + half.replace("{MASK}", "0xD9C8").replace("{O0}", "0").replace("{O1}", "1")
        + "shr.u32 s, s, 16;\n"
        + half.replace("{MASK}", "0xFBEA").replace("{O0}", "2").replace("{O1}", "3")
        + "}"
    )  # fmt: skip


_PAIR_TEMPLATE = _word_asm(_PAIR_HALF, "s, t, m, a, b, l, h, p, z", "mov.b32 z, 0x80008000;\n")
PAIR_ASM = {
    torch.bfloat16: _PAIR_TEMPLATE.replace("{T}", "bf16x2"),
    torch.float16: _PAIR_TEMPLATE.replace("{T}", "f16x2"),
}
_PAIR_CONSTRAINTS = "=r,=r,=r,=r,r,r,r,r,r,r,r,r,r,r"

# The same permutes without the scaling (``decode_pairs_raw``): the pairs are the codes in
# the planes' dtype, for kernels that scale the MMA's fp32 result instead. One word in ($4),
# the 8 plane words ($5..$12) in, 4 pair words out ($0..$3). Per word of 8 values: 3
# selector instructions, 2 mask prmt, 12 prmt + 4 lop3.
_RAW_HALF = _PAIR_HALF.replace(
    "prmt.b32 p, l, h, 0x4051;\nfma.rn.{T} ${O0}, p, $13, z;", "prmt.b32 ${O0}, l, h, 0x4051;"
).replace("prmt.b32 p, l, h, 0x6273;\nfma.rn.{T} ${O1}, p, $13, z;", "prmt.b32 ${O1}, l, h, 0x6273;")
RAW_PAIR_ASM = _word_asm(_RAW_HALF, "s, t, m, a, b, l, h")
_RAW_CONSTRAINTS = "=r,=r,=r,=r,r,r,r,r,r,r,r,r,r"


def pair_planes(lut: torch.Tensor, dtype: torch.dtype) -> list[int]:
    """The 8 plane words (L0..L3, H0..H3) of a 16-entry table rounded to ``dtype`` (bf16 or
    fp16), as Python ints in [0, 2**32) (what :func:`table_planes16` builds in a kernel)."""
    bits = _bits16(lut.reshape(-1).float(), dtype)
    if bits.numel() != 16:
        raise ValueError(f"a 4-bit code table has 16 entries, got {bits.numel()}")
    b = bits.tolist()
    lo = [sum((b[4 * k + i] & 0xFF) << (8 * i) for i in range(4)) for k in range(4)]
    hi = [sum((b[4 * k + i] >> 8) << (8 * i) for i in range(4)) for k in range(4)]
    return lo + hi


def scale_pair(scale: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The scale rounded to ``dtype`` in both 16-bit halves of an int64-held 32-bit word."""
    bits = _bits16(scale, dtype)
    return bits | (bits << 16)


def decode_pairs_reference(
    words: torch.Tensor, planes: list[int], scale: torch.Tensor, dtype: torch.dtype, asm: str | None = None
) -> torch.Tensor:
    """Runs the PTX text ``asm`` (default ``PAIR_ASM[dtype]``) on 32-bit ``words`` with the
    scale ``scale`` (fp32, broadcast to ``words``) by a small interpreter of its
    instructions (:func:`ptx_emulator.run_ptx`):
    ``dtype`` [..., 8], features 0..7 of each word (byte t = features 2t, 2t + 1)."""
    asm = PAIR_ASM[dtype] if asm is None else asm
    w = words.to(torch.int64) & 0xFFFFFFFF
    regs: dict[str, torch.Tensor] = {"$4": w, "$13": torch.broadcast_to(scale_pair(scale, dtype), w.shape)}
    for i, p in enumerate(planes):
        regs[f"${5 + i}"] = torch.full_like(w, p)
    run_ptx(asm, regs)
    pairs = torch.stack([regs[f"${i}"] for i in range(4)], dim=-1)
    return torch.stack([_from_bits16(pairs, dtype), _from_bits16(pairs >> 16, dtype)], dim=-1).flatten(-2)


def decode_pairs_raw_reference(words: torch.Tensor, planes: list[int], dtype: torch.dtype) -> torch.Tensor:
    """Runs :data:`RAW_PAIR_ASM` on 32-bit ``words`` with :func:`ptx_emulator.run_ptx`:
    ``dtype`` [..., 8], features 0..7 of each word (the codes, unscaled)."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    regs: dict[str, torch.Tensor] = {"$4": w}
    for i, p in enumerate(planes):
        regs[f"${5 + i}"] = torch.full_like(w, p)
    run_ptx(RAW_PAIR_ASM, regs)
    pairs = torch.stack([regs[f"${i}"] for i in range(4)], dim=-1)
    return torch.stack([_from_bits16(pairs, dtype), _from_bits16(pairs >> 16, dtype)], dim=-1).flatten(-2)


def lookup_pairs_reference(
    words: torch.Tensor, lut: torch.Tensor, scale: torch.Tensor, dtype: torch.dtype
) -> torch.Tensor:
    """Plain table lookup: the code rounded to ``dtype`` times the scale (broadcast to
    ``words``) rounded to ``dtype``, the product rounded to ``dtype`` (exact in fp32 before
    that): ``dtype`` [..., 8], features 0..7 of each 32-bit word."""
    w = words.to(torch.int64) & 0xFFFFFFFF
    table = lut.reshape(-1).float().to(dtype).float()
    codes = []
    for t in range(4):
        byte = (w >> (8 * t)) & 0xFF
        codes += [table[byte >> 4], table[byte & 15]]
    s = torch.broadcast_to(scale.float().to(dtype).float(), w.shape)[..., None]
    return (torch.stack(codes, dim=-1) * s).to(dtype)


if HAS_TRITON:
    _ASM = tl.constexpr(DECODE_ASM)
    _CONS = tl.constexpr(_CONSTRAINTS)

    @triton.jit
    def _entry_bits(lut_ptr, i: tl.constexpr):
        """fp16 bit pattern (in the low 16 bits of an int32) of table entry ``i``."""
        return tl.load(lut_ptr + i).to(tl.float16).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF

    @triton.jit
    def _plane_word(lut_ptr, k: tl.constexpr, SHIFT: tl.constexpr):
        e0 = (_entry_bits(lut_ptr, 4 * k) >> SHIFT) & 0xFF
        e1 = (_entry_bits(lut_ptr, 4 * k + 1) >> SHIFT) & 0xFF
        e2 = (_entry_bits(lut_ptr, 4 * k + 2) >> SHIFT) & 0xFF
        e3 = (_entry_bits(lut_ptr, 4 * k + 3) >> SHIFT) & 0xFF
        return e0 | (e1 << 8) | (e2 << 16) | (e3 << 24)

    @triton.jit
    def table_planes(lut_ptr):
        """The 8 plane words (int32 scalars L0..L3, H0..H3) of the fp32 [16] table at
        ``lut_ptr``, rounded to fp16: 16 scalar loads, once per program."""
        l0 = _plane_word(lut_ptr, 0, 0)
        l1 = _plane_word(lut_ptr, 1, 0)
        l2 = _plane_word(lut_ptr, 2, 0)
        l3 = _plane_word(lut_ptr, 3, 0)
        h0 = _plane_word(lut_ptr, 0, 8)
        h1 = _plane_word(lut_ptr, 1, 8)
        h2 = _plane_word(lut_ptr, 2, 8)
        h3 = _plane_word(lut_ptr, 3, 8)
        return l0, l1, l2, l3, h0, h1, h2, h3

    @triton.jit
    def _prmt(a, b, c):
        """Integer emulation of ``prmt.b32`` (generic mode, selector bit 3 never set here)."""
        src = (b.to(tl.uint32, bitcast=True).to(tl.uint64) << 32) | a.to(tl.uint32, bitcast=True).to(tl.uint64)
        cu = c.to(tl.uint32, bitcast=True).to(tl.uint64)
        d0 = (src >> ((cu & 7) * 8)) & 0xFF
        d1 = (src >> (((cu >> 4) & 7) * 8)) & 0xFF
        d2 = (src >> (((cu >> 8) & 7) * 8)) & 0xFF
        d3 = (src >> (((cu >> 12) & 7) * 8)) & 0xFF
        return (d0 | (d1 << 8) | (d2 << 16) | (d3 << 24)).to(tl.uint32).to(tl.int32, bitcast=True)

    @triton.jit
    def _half(x):
        """fp32 of the fp16 bit pattern in the low 16 bits of int32 ``x``."""
        return (x & 0xFFFF).to(tl.int16).to(tl.float16, bitcast=True).to(tl.float32)

    @triton.jit
    def _decode_half(s, c, l0, l1, l2, l3, h0, h1, h2, h3):
        lo = _prmt(_prmt(l0, l1, s), _prmt(l2, l3, s), c)
        hi = _prmt(_prmt(h0, h1, s), _prmt(h2, h3, s), c)
        p = _prmt(lo, hi, tl.full(s.shape, 0x5140, tl.int32))
        q = _prmt(lo, hi, tl.full(s.shape, 0x7362, tl.int32))
        return _half(p >> 16), _half(p), _half(q >> 16), _half(q)

    @triton.jit
    def decode_word(w, l0, l1, l2, l3, h0, h1, h2, h3, ASM: tl.constexpr):
        """Features 0..7 of each int32 word of ``w`` (8 packed nibbles, see the module
        notes) as 8 fp32 tensors shaped like ``w``; the plane words come from
        :func:`table_planes`. ASM: inline PTX (CUDA); else integer emulation (interpreter)."""
        if ASM:
            v0, v1, v2, v3, v4, v5, v6, v7 = tl.inline_asm_elementwise(
                _ASM,
                _CONS,
                [w, l0, l1, l2, l3, h0, h1, h2, h3],
                dtype=(tl.float32, tl.float32, tl.float32, tl.float32, tl.float32, tl.float32, tl.float32, tl.float32),
                is_pure=True,
                pack=1,
            )
        else:
            s = w & 0x77777777
            c = ((w >> 1) & 0x44444444) | 0x32103210
            v0, v1, v2, v3 = _decode_half(s, c, l0, l1, l2, l3, h0, h1, h2, h3)
            v4, v5, v6, v7 = _decode_half(s >> 16, c >> 16, l0, l1, l2, l3, h0, h1, h2, h3)
        return v0, v1, v2, v3, v4, v5, v6, v7

    _PAIR_BF16 = tl.constexpr(PAIR_ASM[torch.bfloat16])
    _PAIR_F16 = tl.constexpr(PAIR_ASM[torch.float16])
    _PAIR_CONS = tl.constexpr(_PAIR_CONSTRAINTS)

    @triton.jit
    def _entry_bits16(lut_ptr, i: tl.constexpr, DT: tl.constexpr):
        """``DT`` (bf16 / fp16) bit pattern (low 16 bits of an int32) of table entry ``i``."""
        return tl.load(lut_ptr + i).to(DT).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF

    @triton.jit
    def _plane_word16(lut_ptr, k: tl.constexpr, SHIFT: tl.constexpr, DT: tl.constexpr):
        e0 = (_entry_bits16(lut_ptr, 4 * k, DT) >> SHIFT) & 0xFF
        e1 = (_entry_bits16(lut_ptr, 4 * k + 1, DT) >> SHIFT) & 0xFF
        e2 = (_entry_bits16(lut_ptr, 4 * k + 2, DT) >> SHIFT) & 0xFF
        e3 = (_entry_bits16(lut_ptr, 4 * k + 3, DT) >> SHIFT) & 0xFF
        return e0 | (e1 << 8) | (e2 << 16) | (e3 << 24)

    @triton.jit
    def table_planes16(lut_ptr, DT: tl.constexpr):
        """The 8 plane words (int32 scalars L0..L3, H0..H3) of the fp32 [16] table at
        ``lut_ptr`` rounded to ``DT`` (bf16 or fp16), for :func:`decode_pairs`."""
        l0 = _plane_word16(lut_ptr, 0, 0, DT)
        l1 = _plane_word16(lut_ptr, 1, 0, DT)
        l2 = _plane_word16(lut_ptr, 2, 0, DT)
        l3 = _plane_word16(lut_ptr, 3, 0, DT)
        h0 = _plane_word16(lut_ptr, 0, 8, DT)
        h1 = _plane_word16(lut_ptr, 1, 8, DT)
        h2 = _plane_word16(lut_ptr, 2, 8, DT)
        h3 = _plane_word16(lut_ptr, 3, 8, DT)
        return l0, l1, l2, l3, h0, h1, h2, h3

    @triton.jit
    def pair_halves(p, DT: tl.constexpr):
        """fp32 of the two 16-bit ``DT`` values packed in int32 ``p`` (low half first)."""
        lo = (p & 0xFFFF).to(tl.int16).to(DT, bitcast=True).to(tl.float32)
        hi = ((p >> 16) & 0xFFFF).to(tl.int16).to(DT, bitcast=True).to(tl.float32)
        return lo, hi

    @triton.jit
    def _scaled_pair(p, sp, DT: tl.constexpr):
        """Emulation of the packed fma: both 16-bit halves of ``p`` times those of ``sp``,
        each product rounded once to ``DT`` (exact in fp32 before that)."""
        pl, ph = pair_halves(p, DT)
        sl, sh = pair_halves(sp, DT)
        lo = (pl * sl).to(DT).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
        hi = (ph * sh).to(DT).to(tl.int16, bitcast=True).to(tl.int32) & 0xFFFF
        return lo | (hi << 16)

    @triton.jit
    def _nibble_mask(w, SH: tl.constexpr):
        """0xFF in byte k where bit 3 of nibble k of ``w >> SH`` is set (what the sign-mode
        prmt of the PTX makes)."""
        v = w >> SH
        m0 = ((v >> 3) & 1) * 0xFF
        m1 = ((v >> 7) & 1) * 0xFF
        m2 = ((v >> 11) & 1) * 0xFF
        m3 = ((v >> 15) & 1) * 0xFF
        return m0 | (m1 << 8) | (m2 << 16) | (m3 << 24)

    @triton.jit
    def _raw_half(w, l0, l1, l2, l3, h0, h1, h2, h3, SH: tl.constexpr):
        """The two pair words of bytes SH / 8 and SH / 8 + 1 of ``w`` (unscaled)."""
        s = (w & 0x77777777) >> SH
        m = _nibble_mask(w, SH)
        lo = (_prmt(l0, l1, s) & ~m) | (_prmt(l2, l3, s) & m)
        hi = (_prmt(h0, h1, s) & ~m) | (_prmt(h2, h3, s) & m)
        return _prmt(lo, hi, tl.full(s.shape, 0x4051, tl.int32)), _prmt(lo, hi, tl.full(s.shape, 0x6273, tl.int32))

    @triton.jit
    def _pairs_half(w, sp, l0, l1, l2, l3, h0, h1, h2, h3, DT: tl.constexpr, SH: tl.constexpr):
        p0, p1 = _raw_half(w, l0, l1, l2, l3, h0, h1, h2, h3, SH)
        return _scaled_pair(p0, sp, DT), _scaled_pair(p1, sp, DT)

    _RAW = tl.constexpr(RAW_PAIR_ASM)
    _RAW_CONS = tl.constexpr(_RAW_CONSTRAINTS)

    @triton.jit
    def decode_pairs_raw(w, l0, l1, l2, l3, h0, h1, h2, h3, ASM: tl.constexpr):
        """Bytes 0..3 of each int32 word of ``w`` decoded, unscaled, as 4 int32 tensors shaped
        like ``w``: per byte its two codes in the planes' dtype packed in one word (the high
        nibble's in the low half). ASM: inline PTX; else integer emulation (interpreter)."""
        if ASM:
            p0, p1, p2, p3 = tl.inline_asm_elementwise(
                _RAW, _RAW_CONS, [w, l0, l1, l2, l3, h0, h1, h2, h3],
                dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1,
            )  # fmt: skip
        else:
            p0, p1 = _raw_half(w, l0, l1, l2, l3, h0, h1, h2, h3, 0)
            p2, p3 = _raw_half(w, l0, l1, l2, l3, h0, h1, h2, h3, 16)
        return p0, p1, p2, p3

    @triton.jit
    def decode_pairs(w, l0, l1, l2, l3, h0, h1, h2, h3, sp, DT: tl.constexpr, ASM: tl.constexpr):
        """Bytes 0..3 of each int32 word of ``w`` decoded and scaled, as 4 int32 tensors
        shaped like ``w``: per byte its two values in ``DT`` packed in one word (the high
        nibble's in the low half), each the ``DT`` code times the ``DT`` scale pair ``sp``
        (the scale's bits in both halves, an int32 broadcast to ``w``), rounded to ``DT``.
        Plane words from :func:`table_planes16`. ASM: inline PTX (CUDA, sm_80+); else the
        same permutes emulated with integer ops (interpreter)."""
        if ASM:
            if DT == tl.bfloat16:
                p0, p1, p2, p3 = tl.inline_asm_elementwise(
                    _PAIR_BF16, _PAIR_CONS, [w, l0, l1, l2, l3, h0, h1, h2, h3, sp],
                    dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1,
                )  # fmt: skip
            else:
                p0, p1, p2, p3 = tl.inline_asm_elementwise(
                    _PAIR_F16, _PAIR_CONS, [w, l0, l1, l2, l3, h0, h1, h2, h3, sp],
                    dtype=(tl.int32, tl.int32, tl.int32, tl.int32), is_pure=True, pack=1,
                )  # fmt: skip
        else:
            p0, p1 = _pairs_half(w, sp, l0, l1, l2, l3, h0, h1, h2, h3, DT, 0)
            p2, p3 = _pairs_half(w, sp, l0, l1, l2, l3, h0, h1, h2, h3, DT, 16)
        return p0, p1, p2, p3
