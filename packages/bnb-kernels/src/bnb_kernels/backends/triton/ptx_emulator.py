"""A small interpreter of the PTX that the Triton kernels inline, in plain torch.

CI has no GPU, so the bit logic of every inline-PTX block (4-bit decodes, the int8 to fp16
conversion) is checked by running its exact text here, element-wise over int64 tensors that
hold 32-bit register values. Only the instructions those blocks use are known; any other
raises, so a new instruction cannot slip past the tests unemulated.
"""

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


def run_ptx(asm: str, regs: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Runs ``asm`` on ``regs`` (operand name -> int64 tensor of 32-bit values, all of one
    shape; updated in place and returned). Known: mov (also the split into a b16 pair),
    and, or, xor, shl, shr, lop3, prmt, cvt.f32.f16 (its result is a float tensor) and
    packed fma.rn / sub on f16x2 and bf16x2."""
    like = next(iter(regs.values()))

    def val(op: str) -> torch.Tensor:
        op = op.strip()
        return torch.full_like(like, int(op, 0)) if op[0].isdigit() else regs[op]

    for line in asm.replace(";", ";\n").splitlines():
        line = line.strip().rstrip(";").strip(" {}")
        if not line or line.startswith(".reg"):
            continue
        opc, rest = line.split(None, 1)
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
