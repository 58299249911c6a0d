"""Run by test_optim_triton.py in a subprocess with TRITON_INTERPRET=1: the Triton optimizer
kernels on CPU tensors against the torch reference (small sizes)."""

from __future__ import annotations

import os
import sys

assert os.environ.get("TRITON_INTERPRET") == "1", "run with TRITON_INTERPRET=1"

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
import test_optim as T  # noqa: E402

from bnb_kernels.backends.reference import optim as ref  # noqa: E402
from bnb_kernels.backends.triton import optim as tri  # noqa: E402
from bnb_kernels.ops.optim import OPTIMIZERS, TWO_STATE  # noqa: E402


def main() -> None:
    gen = torch.Generator().manual_seed(5)
    checked = 0
    for name in OPTIMIZERS:
        for dtype in (torch.float32, torch.bfloat16):
            for n in (257, 1000):
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
