"""Run by test_optim_triton.py in a subprocess with TRITON_INTERPRET=1: the Triton optimizer
kernels on CPU tensors against the torch reference (small sizes)."""

from __future__ import annotations

import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

import torch  # noqa: E402
import triton.language as tl  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import test_optim as T  # noqa: E402

from bnb_kernels.backends.reference import optim as ref  # noqa: E402
from bnb_kernels.backends.triton import optim as tri  # noqa: E402
from bnb_kernels.ops.optim import OPTIMIZERS, TWO_STATE  # noqa: E402


def plans_and_options() -> int:
    """Several steps on the same tensors (the validated launch plan is reused), skip_zeros,
    and bad input after a plan exists (still rejected)."""
    gen = torch.Generator().manual_seed(9)
    checked = 0
    for name in ("adam", "ademamix", "lion", "rmsprop"):
        n = 1024 + 300
        g, p = T._inputs(name, n, torch.float32, gen, nonfinite=True)
        g[::7] = 0.0
        st = T._state8(name, n, gen)
        outs = {}
        for impl in (ref.optimizer_update_8bit_blockwise, tri.optimizer_update_8bit_blockwise):
            pp = p.clone()
            c1, c2, a1, a2 = (t.clone() if t is not None else None for t in st)
            for step in (1, 2, 3):
                out = T.run8(impl, name, g * step, pp, c1, c2, a1, a2, step=step, skip_zeros=True)
                pp, c1, c2, a1, a2 = out
            outs[impl] = out
        T.assert_close8(
            outs[tri.optimizer_update_8bit_blockwise], outs[ref.optimizer_update_8bit_blockwise], torch.float32
        )
        k = 2 if name == "ademamix" else 1
        s1 = (torch.randn(k * n, generator=gen) * 1e-2).abs()
        s2 = torch.rand(n, generator=gen) * 1e-4 if name in TWO_STATE else None
        want = T.run32(ref.optimizer_update_32bit, name, g, p, s1, s2, skip_zeros=True)
        got = T.run32(tri.optimizer_update_32bit, name, g, p, s1, s2, skip_zeros=True)
        torch.testing.assert_close(got[0], want[0], rtol=T.ULP[torch.float32], atol=1e-8)
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-9)
        checked += 1
    # one parameter, stepped in place: the second call runs from the plan, bad input is still caught
    name = "adam"
    g, p = T._inputs(name, 512, torch.float32, gen)
    c1, c2, a1, a2 = T._state8(name, 512, gen)
    q1, q2 = ref.dynamic_map(True), ref.dynamic_map(False)
    args = (0.9, 0.999, 0.0, 0.0, 1e-8, 1, 1e-3, q1, q2, a1, a2, 0.0, 1.0)
    for _ in range(2):
        tri.optimizer_update_8bit_blockwise(name, g, p, c1, c2, *args)
    bad = [
        (g.double(), "float32, got torch.float64"),
        (g.bfloat16(), "same dtype"),
        (g[:-1], "same number of elements"),
        (torch.zeros(1024)[::2], "contiguous"),
    ]
    for bad_g, msg in bad:
        try:
            tri.optimizer_update_8bit_blockwise(name, bad_g, p, c1, c2, *args)
        except ValueError as e:
            assert msg in str(e), (msg, str(e))
        else:
            raise AssertionError(f"bad gradient ({msg}) accepted")
    try:
        tri.optimizer_update_8bit_blockwise(name, g, p, c1, c2, *args[:5], 0, *args[6:])
    except ValueError as e:
        assert "step" in str(e)
    else:
        raise AssertionError("step 0 accepted")
    return checked + 1


def main() -> None:
    gen = torch.Generator().manual_seed(5)
    checked = 0
    for name in OPTIMIZERS:
        for dtype in (torch.float32, torch.bfloat16):
            for n in (257, 1000, 2048):
                g, p = T._inputs(name, n, dtype, gen, nonfinite=True)
                st = T._state8(name, n, gen)
                want = T.run8(ref.optimizer_update_8bit_blockwise, name, g, p, *st)
                got = T.run8(tri.optimizer_update_8bit_blockwise, name, g, p, *st)
                T.assert_close8(got, want, dtype)
                k = 2 if name == "ademamix" else 1
                s1 = (torch.randn(k * n, generator=gen) * 1e-2).abs()
                s2 = torch.rand(n, generator=gen) * 1e-4 if name in TWO_STATE else None
                for mu in (0.0, 0.01):
                    want = T.run32(ref.optimizer_update_32bit, name, g, p, s1, s2, mu)
                    got = T.run32(tri.optimizer_update_32bit, name, g, p, s1, s2, mu)
                    rtol = T.ULP[dtype]
                    torch.testing.assert_close(got[0].float(), want[0].float(), rtol=rtol, atol=rtol * 1e-2)
                    torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-9)
                    if mu > 0:
                        torch.testing.assert_close(got[3], want[3], rtol=1e-4, atol=1e-6)
                checked += 1
    layouts = [(True, False), (False, False)]  # both program layouts, whatever the case would pick
    if hasattr(tl, "gather"):
        layouts.append((False, True))  # codebook gathers through shared memory (Triton >= 3.2)
    for prefetch, smem in layouts:
        tri.PREFETCH_8BIT, tri.SMEM_8BIT = prefetch, smem
        checked += plans_and_options()
    tri.PREFETCH_8BIT, tri.SMEM_8BIT = None, False
    for qname, make in T.QMAPS.items():
        qmap = make()
        x = T._adversarial(qmap, torch.Generator().manual_seed(1))
        want = torch.searchsorted(ref.codebook_tables(qmap)[0], x).to(torch.uint8)
        got, absmax = T.quant_through_momentum(tri.optimizer_update_8bit_blockwise, x, qmap)
        assert torch.equal(absmax, torch.ones_like(absmax)), qname
        mism = (got != want).nonzero().flatten()
        assert mism.numel() == 0, (qname, x[mism[:5]].tolist(), got[mism[:5]].tolist(), want[mism[:5]].tolist())
        checked += 1
    print(f"triton optimizer kernels OK ({checked} cases)")


if __name__ == "__main__":
    main()
