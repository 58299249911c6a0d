"""bnb_optim.functional: the reference release's functional optimizer API."""

from __future__ import annotations

import pytest
import torch

import bnb_optim.functional as F
from bnb_kernels.backends.reference.optim import dynamic_map


def test_optimizer_update_32bit_matches_torch_adamw():
    gen = torch.Generator().manual_seed(0)
    p = torch.randn(300, generator=gen)
    ref = torch.nn.Parameter(p.clone())
    torch_opt = torch.optim.AdamW([ref], lr=1e-2, weight_decay=0.1)
    s1, s2 = torch.zeros(300), torch.zeros(300)
    for step in range(1, 6):
        g = torch.randn(300, generator=gen)
        F.optimizer_update_32bit("adam", g, p, s1, 0.9, 1e-8, step, 1e-2, s2, 0.999, weight_decay=0.1)
        ref.grad = g
        torch_opt.step()
    torch.testing.assert_close(p, ref.detach(), rtol=1e-5, atol=1e-6)


def test_optimizer_update_8bit_blockwise_runs_and_quantizes():
    gen = torch.Generator().manual_seed(1)
    n = 700
    p = torch.randn(n, generator=gen)
    p0 = p.clone()
    c1, c2 = torch.zeros(n, dtype=torch.uint8), torch.zeros(n, dtype=torch.uint8)
    a1, a2 = torch.zeros(3), torch.zeros(3)
    q1, q2 = dynamic_map(True), dynamic_map(False)
    c1.fill_(127)  # code of 0.0 in the signed map
    g = torch.randn(n, generator=gen)
    F.optimizer_update_8bit_blockwise("adam", g, p, c1, c2, 0.9, 0.999, 0.0, 0.0, 1e-8, 1, 1e-3, q1, q2, a1, a2)
    # first Adam step moves every element by ~lr in the direction of -sign(g)
    torch.testing.assert_close(p0 - p, 1e-3 * torch.sign(g), rtol=1e-3, atol=1e-6)
    # from zero state the new moments are (1-b1)*g and (1-b2)*g^2: their block maxima
    m = torch.tensor(1 - 0.9, dtype=torch.float32) * g
    v = torch.tensor(1 - 0.999, dtype=torch.float32) * (g * g)
    torch.testing.assert_close(a1, torch.stack([b.abs().max() for b in m.split(256)]))
    torch.testing.assert_close(a2, torch.stack([b.max() for b in v.split(256)]))
    with pytest.raises(ValueError, match="optimizer_name"):
        F.optimizer_update_8bit_blockwise("adamz", g, p, c1, c2, 0.9, 0.999, 0, 0, 1e-8, 1, 1e-3, q1, q2, a1, a2)


def test_percentile_clipping():
    vec = torch.zeros(100)
    for step in range(1, 101):
        current, clip, scale = F.percentile_clipping(torch.full((4,), float(step)), vec, step, 50)
    # norms 2, 4, ..., 200: the 50th percentile is about 100, the last gradient's norm is 200
    assert float(current) == pytest.approx(200.0)
    assert float(clip) == pytest.approx(102.0)
    assert scale == pytest.approx(102.0 / 200.0)
    with pytest.raises(ValueError):
        F.percentile_clipping(torch.ones(3), torch.zeros(10), 1)


def test_paged_helpers_without_cuda():
    if torch.cuda.is_available():
        pytest.skip("CPU fallback only")
    with pytest.warns(RuntimeWarning) if "fallback" not in __import__("bnb_optim.paged").paged._warned else _nullctx():
        t = F.get_paged(8, 4, dtype=torch.float16)
    assert t.shape == (8, 4) and t.dtype == torch.float16 and not t.any()
    F.prefetch_tensor(t)  # ordinary memory: nothing to do
    mng = F.GlobalPageManager.get_instance()
    assert mng is F.GlobalPageManager.get_instance()
    mng.prefetch_all()
    with pytest.raises(RuntimeError):
        F.GlobalPageManager()
    with pytest.raises(TypeError):
        F.prefetch_tensor([1, 2])


class _nullctx:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


@pytest.mark.gpu
def test_paged_tensor_on_cuda_prefetches():
    t = F.get_paged(1024, 1024)
    assert t.is_cuda and getattr(t, "is_paged", False)
    t.fill_(3.0)
    F.prefetch_tensor(t, to_cpu=True)
    F.prefetch_tensor(t)
    assert float(t.sum()) == 3.0 * 1024 * 1024
