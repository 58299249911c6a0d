"""Fused optimizer ops: native CPU (and CUDA Triton where present) against the torch reference."""

from __future__ import annotations

import pytest
import torch

from bnb_kernels import _native
from bnb_kernels.backends.reference import optim as ref
from bnb_kernels.ops.optim import OPTIMIZERS, TWO_STATE

native = pytest.importorskip("bnb_kernels.backends.cpu.optim")
needs_native = pytest.mark.skipif(not _native.available(), reason="native library not built")

SIZES = (1, 255, 256, 257, 1000, 4099)
DTYPES = (torch.float32, torch.float16, torch.bfloat16)
# betas, eps, weight_decay, lr per optimizer (realistic values)
HYPER = {
    "adam": (0.9, 0.999, 0.0, 1e-8, 1e-2, 1e-3),
    "lamb": (0.9, 0.999, 0.0, 1e-8, 1e-2, 1e-3),
    "ademamix": (0.9, 0.999, 0.9999, 1e-8, 1e-2, 1e-3),
    "momentum": (0.9, 0.0, 0.0, 0.0, 1e-2, 1e-2),
    "lars": (0.9, 0.0, 0.0, 0.0, 1e-2, 1e-2),
    "rmsprop": (0.99, 0.0, 0.0, 1e-8, 1e-2, 1e-2),
    "adagrad": (0.0, 0.0, 0.0, 1e-10, 1e-2, 1e-2),
    "lion": (0.9, 0.99, 0.0, 0.0, 1e-2, 1e-4),
}
ULP = {torch.float32: 2e-6, torch.float16: 2e-3, torch.bfloat16: 1.6e-2}


def _state8(name: str, n: int, gen: torch.Generator, device: str = "cpu"):
    """Plausible 8-bit states: quantized from random values of the right sign."""
    mid1 = ref.codebook_tables(ref.dynamic_map(True))[0]
    mid2 = ref.codebook_tables(ref.dynamic_map(False))[0]
    k = 2 if name == "ademamix" else 1
    nonneg = name in ("rmsprop", "adagrad")
    s1 = torch.randn(k * n, generator=gen) * 1e-2
    if nonneg:
        s1 = s1.abs()
    parts = [ref.quantize_state(s1[i * n : (i + 1) * n], mid1) for i in range(k)]
    c1 = torch.cat([c for c, _ in parts])
    a1 = torch.cat([a for _, a in parts])
    c2 = a2 = None
    if name in TWO_STATE:
        c2, a2 = ref.quantize_state(torch.rand(n, generator=gen) * 1e-4, mid2)
    mv = lambda t: None if t is None else t.to(device)  # noqa: E731
    return mv(c1), mv(c2), mv(a1), mv(a2)


def _inputs(name, n, dtype, gen, nonfinite=False):
    p = torch.randn(n, generator=gen).to(dtype)
    g = (torch.randn(n, generator=gen) * 0.1).to(dtype)
    if nonfinite and n > 8:
        g[3] = float("nan")
        g[n // 2] = float("inf")
        g[n - 2] = float("-inf")
    return g, p


def run8(impl, name, g, p, c1, c2, a1, a2, step=3, skip_zeros=False, gnorm_scale=1.0):
    b1, b2, b3, eps, wd, lr = HYPER[name]
    q1 = ref.dynamic_map(True).to(p.device)
    q2 = ref.dynamic_map(False).to(p.device) if name in TWO_STATE else None
    out = [t.clone() if t is not None else None for t in (g, p, c1, c2, a1, a2)]
    g, p, c1, c2, a1, a2 = out
    impl(name, g, p, c1, c2, b1, b2, b3, 5.0, eps, step, lr, q1, q2, a1, a2, wd, gnorm_scale, skip_zeros)
    return p, c1, c2, a1, a2


def assert_close8(got, want, dtype):
    pg, c1g, c2g, a1g, a2g = got
    pw, c1w, c2w, a1w, a2w = want
    torch.testing.assert_close(pg.float(), pw.float(), rtol=ULP[dtype], atol=ULP[dtype] * 1e-2)
    for cg, cw, ag, aw in ((c1g, c1w, a1g, a1w), (c2g, c2w, a2g, a2w)):
        if cg is None:
            continue
        torch.testing.assert_close(ag, aw, rtol=1e-5, atol=1e-12)
        diff = (cg.int() - cw.int()).abs()
        # float rounding may move a value across a midpoint: rarely, and by one code
        assert diff.max().item() <= 1
        assert diff.count_nonzero().item() <= max(2, cg.numel() // 200)


@needs_native
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", DTYPES)
def test_native_8bit_matches_reference(name, dtype):
    gen = torch.Generator().manual_seed(hash((name, str(dtype))) % 2**31)
    for n in SIZES:
        g, p = _inputs(name, n, dtype, gen, nonfinite=True)
        st = _state8(name, n, gen)
        want = run8(ref.optimizer_update_8bit_blockwise, name, g, p, *st)
        got = run8(native.optimizer_update_8bit_blockwise, name, g, p, *st)
        assert_close8(got, want, dtype)


def run32(impl, name, g, p, s1, s2, max_unorm=0.0, step=3, skip_zeros=False):
    b1, b2, b3, eps, wd, lr = HYPER[name]
    g, p, s1 = g.clone(), p.clone(), s1.clone()
    s2 = s2.clone() if s2 is not None else None
    unorm = torch.zeros(1, device=p.device)
    pn = float(p.float().norm())
    impl(name, g, p, s1, s2, unorm, max_unorm, pn, b1, b2, b3, 5.0, eps, wd, step, lr, 1.0, skip_zeros)
    return p, s1, s2, unorm


@needs_native
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("max_unorm", (0.0, 0.01))
def test_native_32bit_matches_reference(name, dtype, max_unorm):
    gen = torch.Generator().manual_seed(7)
    for n in SIZES:
        g, p = _inputs(name, n, dtype, gen, nonfinite=True)
        k = 2 if name == "ademamix" else 1
        s1 = torch.randn(k * n, generator=gen) * 1e-2
        if name in ("rmsprop", "adagrad"):
            s1 = s1.abs()
        s2 = torch.rand(n, generator=gen) * 1e-4 if name in TWO_STATE else None
        want = run32(ref.optimizer_update_32bit, name, g, p, s1, s2, max_unorm)
        got = run32(native.optimizer_update_32bit, name, g, p, s1, s2, max_unorm)
        torch.testing.assert_close(got[0].float(), want[0].float(), rtol=ULP[dtype], atol=ULP[dtype] * 1e-2)
        torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-9)
        if s2 is not None:
            torch.testing.assert_close(got[2], want[2], rtol=1e-5, atol=1e-12)
        if max_unorm > 0:
            torch.testing.assert_close(got[3], want[3], rtol=1e-4, atol=1e-6)


def _adversarial(qmap: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Values on and next to every midpoint and decade edge, zeros, +-1, random in [-1, 1]."""
    mid = ref.codebook_tables(qmap)[0]
    edges = torch.tensor([10.0**-k for k in range(0, 8)])
    pts = torch.cat((mid, edges, -edges, qmap, torch.tensor([0.0, -0.0, 1.0, -1.0, 1e-9, -1e-9])))
    up = torch.nextafter(pts, torch.full_like(pts, 2.0))
    down = torch.nextafter(pts, torch.full_like(pts, -2.0))
    x = torch.cat((pts, up, down, torch.rand(2000, generator=gen) * 2 - 1, torch.rand(500, generator=gen) * 1e-3))
    x = x.clamp(-1.0, 1.0)
    # one block of 256 per chunk, each holding 1.0 so absmax == 1 and the value is quantized as is
    chunks = list(x.split(255))
    return torch.cat([torch.cat((c, torch.ones(1))) for c in chunks])


def quant_through_momentum(impl, x: torch.Tensor, qmap: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """At step 1 momentum stores the gradient itself: the kernel's requantization of x."""
    n = x.numel()
    nb = -(n // -256)
    c1 = torch.zeros(n, dtype=torch.uint8, device=x.device)
    a1 = torch.zeros(nb, device=x.device)
    p = torch.zeros(n, device=x.device)
    impl("momentum", x.clone(), p, c1, None, 0.9, 0.0, 0.0, 0.0, 0.0, 1, 1e-3, qmap, None, a1, None, 0.0, 1.0)
    return c1, a1


QMAPS = {
    "signed": lambda: ref.dynamic_map(True),
    "unsigned": lambda: ref.dynamic_map(False),
    "generic": lambda: torch.sort(torch.rand(256, generator=torch.Generator().manual_seed(3)) * 2 - 1).values,
}


@needs_native
@pytest.mark.parametrize("qname", sorted(QMAPS))
def test_native_requantization_is_exact(qname):
    qmap = QMAPS[qname]()
    x = _adversarial(qmap, torch.Generator().manual_seed(1))
    want = torch.searchsorted(ref.codebook_tables(qmap)[0], x).to(torch.uint8)
    got, absmax = quant_through_momentum(native.optimizer_update_8bit_blockwise, x, qmap)
    assert torch.equal(absmax, torch.ones_like(absmax))
    assert torch.equal(got, want)
    got_ref, _ = quant_through_momentum(ref.optimizer_update_8bit_blockwise, x, qmap)
    assert torch.equal(got_ref, want)


def test_dynamic_map_is_the_reference_release_map(upstream_fixtures):
    ck = torch.load(upstream_fixtures / "adamw8bit_checkpoint.pt", weights_only=True)
    qs = ck["optimizer"]["state"][0]["__bnb_optimizer_quant_state__"]
    assert torch.equal(ref.dynamic_map(True), qs["qmap1"])
    assert torch.equal(ref.dynamic_map(False), qs["qmap2"])


@pytest.mark.parametrize("impl", ["reference", "native"])
def test_nonfinite_gradient_leaves_other_blocks_untouched(impl):
    if impl == "native" and not _native.available():
        pytest.skip("native library not built")
    fn = ref.optimizer_update_8bit_blockwise if impl == "reference" else native.optimizer_update_8bit_blockwise
    gen = torch.Generator().manual_seed(0)
    n = 1024
    g, p = _inputs("adam", n, torch.float32, gen)
    st = _state8("adam", n, gen)
    clean = run8(fn, "adam", g, p, *st)
    bad = g.clone()
    bad[256 + 10] = float("nan")
    bad[256 + 20] = float("inf")
    dirty = run8(fn, "adam", bad, p, *st)
    for t_clean, t_dirty in zip(clean[1:3], dirty[1:3]):  # codes of blocks 0, 2, 3 identical
        keep = torch.ones(n, dtype=torch.bool)
        keep[256:512] = False
        assert torch.equal(t_clean[keep], t_dirty[keep])
    for t_clean, t_dirty in zip(clean[3:], dirty[3:]):
        assert torch.equal(t_clean[[0, 2, 3]], t_dirty[[0, 2, 3]])
        assert torch.isfinite(t_dirty).all()
    assert dirty[0][266] == p[266] and dirty[0][276] == p[276]  # skipped elements keep their value
    assert torch.isfinite(dirty[0]).all()
    others = torch.ones(n, dtype=torch.bool)
    others[[266, 276]] = False
    torch.testing.assert_close(dirty[0][others], clean[0][others])


@pytest.mark.parametrize("impl", ["reference", "native"])
def test_skip_zeros_keeps_state_and_param(impl):
    if impl == "native" and not _native.available():
        pytest.skip("native library not built")
    fn = ref.optimizer_update_32bit if impl == "reference" else native.optimizer_update_32bit
    gen = torch.Generator().manual_seed(4)
    g, p = _inputs("adam", 300, torch.float32, gen)
    g[::3] = 0.0
    s1, s2 = torch.randn(300, generator=gen) * 1e-2, torch.rand(300, generator=gen) * 1e-4
    pn, s1n, s2n, _ = run32(fn, "adam", g, p, s1, s2, skip_zeros=True)
    assert torch.equal(pn[::3], p[::3]) and torch.equal(s1n[::3], s1[::3]) and torch.equal(s2n[::3], s2[::3])
    assert not torch.equal(pn[1::3], p[1::3])


def test_bad_inputs_raise():
    p = torch.zeros(10)
    g = torch.zeros(10)
    s = torch.zeros(10)
    op = torch.ops.bitsandbytes.optimizer_update_32bit
    with pytest.raises(ValueError, match="optimizer_name"):
        op("adamx", g, p, s, s.clone(), None, 0.0, 0.0, 0.9, 0.9, 0.0, 0.0, 1e-8, 0.0, 1, 1e-3, 1.0)
    with pytest.raises(ValueError, match="same dtype"):
        op("adam", g.half(), p, s, s.clone(), None, 0.0, 0.0, 0.9, 0.9, 0.0, 0.0, 1e-8, 0.0, 1, 1e-3, 1.0)
    with pytest.raises(ValueError, match="state1"):
        op("adam", g, p, torch.zeros(9), s.clone(), None, 0.0, 0.0, 0.9, 0.9, 0.0, 0.0, 1e-8, 0.0, 1, 1e-3, 1.0)
    op8 = torch.ops.bitsandbytes.optimizer_update_8bit_blockwise
    q = ref.dynamic_map(True)
    c = torch.zeros(10, dtype=torch.uint8)
    a = torch.zeros(1)
    with pytest.raises(ValueError, match="uint8"):
        op8("momentum", g, p, s, None, 0.9, 0.0, 0.0, 0.0, 0.0, 1, 1e-3, q, None, a, None, 0.0, 1.0)
    with pytest.raises(ValueError, match="absmax1"):
        op8("momentum", g, p, c, None, 0.9, 0.0, 0.0, 0.0, 0.0, 1, 1e-3, q, None, torch.zeros(2), None, 0.0, 1.0)
    with pytest.raises(ValueError, match="step"):
        op8("momentum", g, p, c, None, 0.9, 0.0, 0.0, 0.0, 0.0, 0, 1e-3, q, None, a, None, 0.0, 1.0)


def test_unsorted_codebook_rejected():
    q = torch.rand(256)
    with pytest.raises(ValueError, match="sorted"):
        ref.codebook_tables(q)


@pytest.mark.gpu
@pytest.mark.parametrize("name", OPTIMIZERS)
@pytest.mark.parametrize("dtype", (torch.float32, torch.bfloat16))
def test_triton_matches_reference_on_cuda(name, dtype):
    from bnb_kernels.backends.triton import optim as tri

    gen = torch.Generator().manual_seed(11)
    for n in (1, 257, 4099, 1 << 20):
        g, p = _inputs(name, n, dtype, gen, nonfinite=True)
        st = _state8(name, n, gen, "cuda")
        want = run8(ref.optimizer_update_8bit_blockwise, name, g.cuda(), p.cuda(), *st)
        got = run8(tri.optimizer_update_8bit_blockwise, name, g.cuda(), p.cuda(), *st)
        assert_close8(got, want, dtype)
        k = 2 if name == "ademamix" else 1
        s1 = (torch.randn(k * n, generator=gen) * 1e-2).abs().cuda()
        s2 = (torch.rand(n, generator=gen) * 1e-4).cuda() if name in TWO_STATE else None
        for mu in (0.0, 0.01) if dtype == torch.float32 else (0.0,):
            want = run32(ref.optimizer_update_32bit, name, g.cuda(), p.cuda(), s1, s2, mu)
            got = run32(tri.optimizer_update_32bit, name, g.cuda(), p.cuda(), s1, s2, mu)
            torch.testing.assert_close(got[0].float(), want[0].float(), rtol=ULP[dtype], atol=ULP[dtype] * 1e-2)
            torch.testing.assert_close(got[1], want[1], rtol=1e-5, atol=1e-9)


@pytest.mark.gpu
@pytest.mark.parametrize("qname", sorted(QMAPS))
def test_triton_requantization_is_exact_on_cuda(qname):
    from bnb_kernels.backends.triton import optim as tri

    qmap = QMAPS[qname]()
    x = _adversarial(qmap, torch.Generator().manual_seed(1))
    want = torch.searchsorted(ref.codebook_tables(qmap)[0], x).to(torch.uint8)
    got, _ = quant_through_momentum(tri.optimizer_update_8bit_blockwise, x.cuda(), qmap.cuda())
    assert torch.equal(got.cpu(), want)


@needs_native
@pytest.mark.parametrize("isa", ["scalar", "avx2"])
def test_native_fallback_paths(isa):
    """The scalar and AVX2 builds (chosen on CPUs without AVX-512) agree with the reference."""
    code = (
        "import sys; sys.path.insert(0, {!r})\n"
        "import torch, test_optim as T\n"
        "for q in sorted(T.QMAPS): T.test_native_requantization_is_exact(q)\n"
        "for name in ('adam', 'ademamix', 'lion', 'rmsprop'):\n"
        "    T.test_native_8bit_matches_reference(name, torch.float32)\n"
        "    T.test_native_32bit_matches_reference(name, torch.bfloat16, 0.01)\n"
        "print('ok')\n"
    ).format(str(__import__("pathlib").Path(__file__).parent))
    import os
    import subprocess
    import sys

    env = dict(os.environ, BNB_CPU_ISA=isa, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0 and "ok" in proc.stdout, proc.stdout[-2000:] + proc.stderr[-4000:]
