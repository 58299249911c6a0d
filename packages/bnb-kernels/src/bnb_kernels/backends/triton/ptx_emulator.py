"""A small interpreter of the PTX that the Triton kernels inline, in plain torch.

CI has no GPU, so the bit logic of every inline-PTX block (4-bit decodes, the int8 to fp16
conversion) is checked by running its exact text here, element-wise over int64 tensors that
hold 32-bit register values. Only the instructions those blocks use are known; any other
raises, so a new instruction cannot slip past the tests unemulated.
"""

import re

import torch

__all__ = ["bits16", "from_bits16", "prmt_reference", "run_ptx"]

_HALF_DTYPES = {"bf16x2": torch.bfloat16, "f16x2": torch.float16}


def bits16(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The 16-bit pattern of ``t`` rounded to ``dtype`` (fp16 or bf16), in an int64."""
    return t.to(dtype).view(torch.int16).to(torch.int64) & 0xFFFF


def from_bits16(bits: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The ``dtype`` value of the 16-bit pattern in the low bits of ``bits``."""
    return (bits & 0xFFFF).to(torch.int32).to(torch.int16).view(dtype)


def prmt_reference(a: torch.Tensor, b: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
    """PTX ``prmt.b32 d, a, b, c`` (generic mode) on int64 tensors holding 32-bit values:
    byte k of d is byte ``c[4k+2:4k]`` of the 8 bytes {b, a}, or with ``c[4k+3]`` set the
    sign (msb) of that byte replicated over 8 bits."""
    src = ((b & 0xFFFFFFFF) << 32) | (a & 0xFFFFFFFF)
    d = torch.zeros_like(src)
    for k in range(4):
        ctl = (c >> (4 * k)) & 0xF
        byte = (src >> ((ctl & 7) * 8)) & 0xFF
        byte = torch.where((ctl & 8) != 0, torch.where((byte & 0x80) != 0, 0xFF, 0), byte)
        d |= byte << (8 * k)
    return d


def _half_op(opc: str, srcs: list[torch.Tensor]) -> torch.Tensor:
    """``fma.rn``/``sub`` on two 16-bit halves: computed exactly in fp64 (it holds every
    product and difference of these formats), rounded once to the half's type."""
    dtype = _HALF_DTYPES[opc.rsplit(".", 1)[1]]
    r = torch.zeros_like(srcs[0])
    for k in range(2):
        h = [from_bits16(s >> (16 * k), dtype).double() for s in srcs]
        exact = h[0] * h[1] + h[2] if opc.startswith("fma") else h[0] - h[1]
        r |= bits16(exact.float(), dtype) << (16 * k)
    return r


def _mma_m16n8k16(opc: str, rest: str, regs: dict[str, torch.Tensor]) -> None:
    """``mma.sync.aligned.m16n8k16.row.col.f32.{bf16,f16}.{bf16,f16}.f32 {d0..d3}, {a0..a3},
    {b0, b1}, {c0..c3}`` for the warp whose 32 lanes are the last dimension of the register
    tensors (A, B: int64 holding 16-bit pairs; C, D: float). Fragments as the PTX ISA lays
    them out: lane l = 4 * group + t holds A rows group and group + 8 at columns 2t, 2t + 1
    (a0, a1) and 2t + 8, 2t + 9 (a2, a3); B rows 2t, 2t + 1 (b0) and 2t + 8, 2t + 9 (b1) of
    column group; D rows group (d0, d1) and group + 8 (d2, d3) at columns 2t, 2t + 1. The
    products are exact and summed in fp64, then rounded to fp32."""
    dtype = torch.bfloat16 if ".bf16." in opc else torch.float16
    d, a, b, c = ([x.strip() for x in g.split(",")] for g in re.findall(r"\{([^}]*)\}", rest))
    A = [regs[r] for r in a]
    B = [regs[r] for r in b]
    if A[0].shape[-1] != 32:
        raise ValueError("mma.sync needs the 32 lanes of a warp as the last dimension")
    lead = A[0].shape[:-1]

    def halves(v: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return from_bits16(v, dtype).double(), from_bits16(v >> 16, dtype).double()

    Am = torch.zeros(*lead, 16, 16, dtype=torch.float64)
    Bm = torch.zeros(*lead, 16, 8, dtype=torch.float64)
    for lane in range(32):
        g, t = divmod(lane, 4)
        for reg, (row, col) in enumerate(((g, 2 * t), (g + 8, 2 * t), (g, 2 * t + 8), (g + 8, 2 * t + 8))):
            lo, hi = halves(A[reg][..., lane])
            Am[..., row, col], Am[..., row, col + 1] = lo, hi
        for reg, k in enumerate((2 * t, 2 * t + 8)):
            lo, hi = halves(B[reg][..., lane])
            Bm[..., k, g], Bm[..., k + 1, g] = lo, hi
    D = Am @ Bm
    out = [torch.zeros(*lead, 32, dtype=torch.float64) for _ in range(4)]
    C = [regs[r].double() for r in c]
    for lane in range(32):
        g, t = divmod(lane, 4)
        for reg, (row, col) in enumerate(((g, 2 * t), (g, 2 * t + 1), (g + 8, 2 * t), (g + 8, 2 * t + 1))):
            out[reg][..., lane] = D[..., row, col] + C[reg][..., lane]
    for name, v in zip(d, out):
        regs[name] = v.float()


def run_ptx(asm: str, regs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Runs ``asm`` on ``regs`` (operand name -> int64 tensor of 32-bit values, all of one
    shape; updated in place and returned). Known: mov (also the split into a b16 pair, and
    mov.f32 of a hex float immediate), and, or, xor, shl, shr, lop3, prmt, cvt.f32.f16 (its
    result is a float tensor), packed fma.rn / sub on f16x2 and bf16x2, and the warp-wide
    mma.sync m16n8k16 with fp32 accumulators (:func:`_mma_m16n8k16`: the lanes are the last
    dimension)."""
    like = next(iter(regs.values()))

    def val(op: str) -> torch.Tensor:
        op = op.strip()
        return torch.full_like(like, int(op, 0)) if op[0].isdigit() else regs[op]

    for line in asm.replace(";", ";\n").splitlines():
        line = line.strip().rstrip(";").strip()
        if line.startswith("mma.sync.aligned.m16n8k16.row.col.f32."):  # operand groups in braces
            opc, rest = line.split(None, 1)
            _mma_m16n8k16(opc, rest, regs)
            continue
        line = line.strip(" {}")
        if not line or line.startswith(".reg"):
            continue
        opc, rest = line.split(None, 1)
        if opc == "mov.f32":  # mov.f32 d, 0fXXXXXXXX
            dst, imm = (o.strip() for o in rest.split(","))
            bits = torch.tensor([int(imm[2:], 16)], dtype=torch.int64).to(torch.int32)
            regs[dst] = torch.full(like.shape, bits.view(torch.float32).item(), dtype=torch.float32)
            continue
        if opc == "mov.b32" and rest.lstrip().startswith("{"):  # mov.b32 {lo, hi}, src
            pair, src = rest.rsplit(",", 1)
            lo, hi = (r.strip() for r in pair.strip(" {}").split(","))
            v = val(src)
            regs[lo], regs[hi] = v & 0xFFFF, (v >> 16) & 0xFFFF
            continue
        ops = [o.strip() for o in rest.split(",")]
        d, srcs = ops[0], [val(o) for o in ops[1:]]
        if opc == "cvt.f32.f16":
            regs[d] = from_bits16(srcs[0], torch.float16).float()
            continue
        if opc == "mov.b32":
            r = srcs[0]
        elif opc == "and.b32":
            r = srcs[0] & srcs[1]
        elif opc == "or.b32":
            r = srcs[0] | srcs[1]
        elif opc == "xor.b32":
            r = srcs[0] ^ srcs[1]
        elif opc == "shr.u32":
            r = srcs[0] >> srcs[1]
        elif opc == "shl.b32":
            r = srcs[0] << srcs[1]
        elif opc == "lop3.b32":  # bitwise f(a, b, c) given by its truth table on 0xF0, 0xCC, 0xAA
            a_, b_, c_, lut = srcs
            r = torch.zeros_like(a_)
            for i in range(8):
                sel = (a_ if i & 4 else ~a_) & (b_ if i & 2 else ~b_) & (c_ if i & 1 else ~c_)
                r |= torch.where((lut >> i) & 1 != 0, sel, torch.zeros_like(sel))
        elif opc == "prmt.b32":
            r = prmt_reference(*srcs)
        elif opc in ("fma.rn.bf16x2", "fma.rn.f16x2", "sub.f16x2", "sub.bf16x2"):
            r = _half_op(opc, srcs)
        else:
            raise ValueError(f"no emulation of {opc!r}")
        regs[d] = r & 0xFFFFFFFF
    return regs
