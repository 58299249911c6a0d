"""The Triton optimizer kernels: under Triton's CPU interpreter (in a subprocess, because
TRITON_INTERPRET must be set before Triton is imported), their code-search tables on the
CPU, and on CUDA (marked gpu) exhaustively and through the direct launch path."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

pytest.importorskip("triton")

sys.path.insert(0, os.path.dirname(__file__))
import test_optim as T

from bnb_kernels.backends.reference import optim as ref
from bnb_kernels.backends.triton import optim as tri


def test_triton_optim_kernels_interpreted():
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONWARNINGS="ignore")
    script = Path(__file__).with_name("_triton_optim_check.py")
    proc = subprocess.run([sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-6000:]
    assert "OK" in proc.stdout


def _table_codes(table: torch.Tensor, shift: int, x: torch.Tensor) -> torch.Tensor:
    """The kernel's lookup (``_table_code``) in torch: bucket = top bits, one comparison of the
    low bits (flipped for negative x) with the entry's."""
    mask = (1 << shift) - 1
    bits = x.view(torch.int32).to(torch.int64) & 0xFFFFFFFF
    e = table[bits >> shift].to(torch.int64) & 0xFFFFFFFF
    flip = torch.where(bits >= 1 << 31, mask, 0)
    return (e >> 24) + (((bits ^ flip) & mask) > (e & 0xFFFFFF)).to(torch.int64)


def _bucket_edges(shift: int) -> torch.Tensor:
    """The first and last float of every bucket of finite floats, and their neighbours."""
    lo = torch.arange(1 << (32 - shift), dtype=torch.int64) << shift
    bits = torch.cat((lo, lo - 1, lo + 1, lo + (1 << shift) - 1)) & 0xFFFFFFFF
    x = torch.where(bits >= 1 << 31, bits - (1 << 32), bits).to(torch.int32).view(torch.float32)
    return x[torch.isfinite(x)]


@pytest.mark.parametrize("qname", ["signed", "unsigned"])
def test_search_table_is_exact(qname):
    """Both dynamic maps get a bucket table whose lookup equals searchsorted on every bucket
    edge, every midpoint and its neighbours, and random floats of all magnitudes."""
    qmap = T.QMAPS[qname]()
    table, kind, shift = tri.search_table(qmap)
    assert kind == 3 and shift in tri.TABLE_SHIFTS
    assert table.dtype == torch.int32 and table.numel() == 1 << (32 - shift)
    mid = ref.codebook_tables(qmap)[0]
    gen = torch.Generator().manual_seed(2)
    rnd_bits = torch.randint(-(2**31), 2**31 - 1, (1 << 18,), generator=gen, dtype=torch.int64)
    rnd = rnd_bits.to(torch.int32).view(torch.float32)
    near = torch.cat((mid, torch.nextafter(mid, mid + 1), torch.nextafter(mid, mid - 1)))
    x = torch.cat((_bucket_edges(shift), near, rnd[torch.isfinite(rnd)], T._adversarial(qmap, gen)))
    x = torch.cat((x, torch.tensor([0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf")])))
    want = torch.searchsorted(mid, x.contiguous())
    got = _table_codes(table, shift, x)
    bad = (got != want).nonzero().flatten()
    assert bad.numel() == 0, (x[bad[:5]].tolist(), got[bad[:5]].tolist(), want[bad[:5]].tolist())
    nan = torch.tensor([float("nan")])  # the GPU's NaN (positive): the reference's 255
    assert _table_codes(table, shift, nan).item() == torch.searchsorted(mid, nan).item() == 255


def test_search_table_falls_back_for_crowded_codebooks():
    """A codebook with midpoints closer than a bucket (or repeated entries) is searched by
    bisection over the padded midpoints; the cache follows in-place changes of the codebook."""
    qmap = T.QMAPS["generic"]()
    table, kind, _ = tri.search_table(qmap)
    assert kind == 0 and torch.equal(table, ref.codebook_tables(qmap)[1])
    q = ref.dynamic_map(True)
    assert tri.search_table(q)[1] == 3
    q[100] = q[102] = q[101]  # three equal entries: two equal midpoints, one bucket holds both
    assert tri.search_table(q)[1] == 0


@pytest.mark.gpu
@pytest.mark.parametrize("qname", ["signed", "unsigned"])
def test_triton_requantization_exhaustive_on_cuda(qname):
    """Every float32 in [-1, 1] requantized by the kernel (momentum's first step stores the
    gradient; each block holds 1.0 so absmax is 1) equals searchsorted on the midpoints."""
    qmap = T.QMAPS[qname]().cuda()
    mid = ref.codebook_tables(qmap)[0]
    top = 0x3F800000  # bits of 1.0
    chunk = 255 << 18
    for sign in (0, 1 << 31):
        for start in range(0, top + 1, chunk):
            bits = torch.arange(start, min(start + chunk, top + 1), dtype=torch.int64, device="cuda") | sign
            x = torch.where(bits >= 1 << 31, bits - (1 << 32), bits).to(torch.int32).view(torch.float32)
            pad = (-x.numel()) % 255
            x = torch.cat((x, torch.zeros(pad, device="cuda"))).view(-1, 255)
            x = torch.cat((x, torch.ones(x.shape[0], 1, device="cuda")), dim=1).reshape(-1)
            got, absmax = T.quant_through_momentum(tri.optimizer_update_8bit_blockwise, x, qmap)
            assert bool((absmax == 1).all())
            want = torch.searchsorted(mid, x).to(torch.uint8)
            bad = (got != want).nonzero().flatten()
            assert bad.numel() == 0, (qname, x[bad[:5]].tolist(), got[bad[:5]].tolist(), want[bad[:5]].tolist())


def _steps8(name, g, p, st, steps, fast: bool, prefetch: bool = True, smem: bool = False):
    b1, b2, b3, eps, wd, lr = T.HYPER[name]
    q1 = ref.dynamic_map(True).to(p.device)
    q2 = ref.dynamic_map(False).to(p.device) if name in T.TWO_STATE else None
    p = p.clone()
    c1, c2, a1, a2 = (t.clone() if t is not None else None for t in st)
    old = tri._DIRECT, tri.PREFETCH_8BIT, tri.SMEM_8BIT
    tri._DIRECT, tri.PREFETCH_8BIT, tri.SMEM_8BIT = fast, prefetch, smem
    tri._PLANS.clear()
    try:
        for step in range(1, steps + 1):
            gs = g * (1.0 + 0.25 * step)
            tri.optimizer_update_8bit_blockwise(
                name, gs, p, c1, c2, b1, b2, b3, 5.0, eps, step, lr, q1, q2, a1, a2, wd, 1.0, False
            )
    finally:
        tri._DIRECT, tri.PREFETCH_8BIT, tri.SMEM_8BIT = old
    return p, c1, c2, a1, a2


@pytest.mark.gpu
@pytest.mark.parametrize("name", ["adam", "ademamix", "lion", "momentum"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("prefetch,smem", [(True, False), (False, False), (False, True)])
def test_triton_direct_launch_matches_triton_launcher(name, dtype, prefetch, smem):
    """Later steps on the same tensors launch the compiled kernel directly: bit-identical to
    Triton's own launcher, for even and ragged sizes, persistent (prefetching) programs or not;
    codebook gathers from L1 or shared memory; and within the 8-bit tolerance of the reference."""
    gen = torch.Generator().manual_seed(3)
    for n in (4096, 1000, 70000):
        g, p = T._inputs(name, n, dtype, gen, nonfinite=True)
        st = T._state8(name, n, gen, "cuda")
        got = _steps8(name, g.cuda(), p.cuda(), st, 4, True, prefetch, smem)
        want = _steps8(name, g.cuda(), p.cuda(), st, 4, False, prefetch, smem)
        for a, b in zip(got, want):
            if a is not None:
                assert torch.equal(a, b), (name, dtype, n)
        one = _steps8(name, g.cuda(), p.cuda(), st, 1, True, prefetch, smem)
        ref1 = T.run8(ref.optimizer_update_8bit_blockwise, name, g.cuda() * 1.25, p.cuda(), *st, step=1)
        T.assert_close8(one, ref1, dtype)
