"""State dicts: the reference release's layout, round trips, resuming bit for bit, the fixture."""

from __future__ import annotations

import io
import os
import subprocess
import sys
import textwrap

import pytest
import torch

import bnb_optim as O

QKEY = "__bnb_optimizer_quant_state__"


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return torch.nn.Sequential(torch.nn.Linear(64, 96), torch.nn.GELU(), torch.nn.Linear(96, 8))


def _batches(n: int, seed: int = 1):
    gen = torch.Generator().manual_seed(seed)
    return [(torch.randn(16, 64, generator=gen), torch.randn(16, 8, generator=gen)) for _ in range(n)]


def _step(model, opt, batch):
    x, y = batch
    opt.zero_grad()
    torch.nn.functional.mse_loss(model(x), y).backward()
    opt.step()


FACTORIES = {
    "AdamW8bit": lambda ps: O.AdamW8bit(ps, lr=1e-3, min_8bit_size=64),
    "AdamW": lambda ps: O.AdamW(ps, lr=1e-3),
    "Lion8bit": lambda ps: O.Lion8bit(ps, lr=1e-4, min_8bit_size=64),
    "AdEMAMix8bit": lambda ps: O.AdEMAMix8bit(ps, lr=1e-3, min_8bit_size=64, t_alpha=5, t_beta3=5),
    "SGD8bit": lambda ps: O.SGD8bit(ps, lr=1e-2, momentum=0.9, min_8bit_size=64),
    "Adam8bit-pclip": lambda ps: O.Adam8bit(ps, lr=1e-3, min_8bit_size=64, percentile_clipping=90),
    "LAMB8bit": lambda ps: O.LAMB8bit(ps, lr=1e-3, min_8bit_size=64),
}


@pytest.mark.parametrize("name", sorted(FACTORIES))
def test_resume_is_bit_identical(name):
    make = FACTORIES[name]
    batches = _batches(8)
    model_a = _model()
    opt_a = make(model_a.parameters())
    for b in batches:
        _step(model_a, opt_a, b)

    model_b = _model()
    opt_b = make(model_b.parameters())
    for b in batches[:4]:
        _step(model_b, opt_b, b)
    buf = io.BytesIO()
    torch.save({"model": model_b.state_dict(), "optim": opt_b.state_dict()}, buf)
    buf.seek(0)
    ck = torch.load(buf, weights_only=True)
    model_c = _model(seed=123)  # different init: everything must come from the checkpoint
    model_c.load_state_dict(ck["model"])
    opt_c = make(model_c.parameters())
    opt_c.load_state_dict(ck["optim"])
    for b in batches[4:]:
        _step(model_c, opt_c, b)
    for pa, pc in zip(model_a.parameters(), model_c.parameters()):
        assert torch.equal(pa, pc)


def test_state_dict_layout_nests_quant_state():
    model = _model()
    opt = O.AdamW8bit(model.parameters(), lr=1e-3, min_8bit_size=100)
    _step(model, opt, _batches(1)[0])
    sd = opt.state_dict()
    weight = sd["state"][0]  # 96x64 weight: 8-bit
    assert set(weight) == {"step", QKEY}
    assert set(weight[QKEY]) == {"state1", "state2", "qmap1", "qmap2", "absmax1", "absmax2"}
    assert weight["step"] == 1
    assert weight[QKEY]["state1"].dtype == torch.uint8
    bias = sd["state"][1]  # 96 elements, kept in 32 bits
    assert bias[QKEY]["state1"].dtype == torch.float32
    # the live optimizer is not changed by state_dict()
    assert "state1" in opt.state[next(iter(model.parameters()))]


def test_fixture_loads_and_training_resumes(upstream_fixtures):
    ck = torch.load(upstream_fixtures / "adamw8bit_checkpoint.pt", weights_only=True)
    saved = ck["optimizer"]
    param = torch.nn.Parameter(ck["param"].clone())
    opt = O.AdamW8bit([param], lr=1e-3, min_8bit_size=16)
    opt.load_state_dict(saved)
    st = opt.state[param]
    assert st["step"] == 3
    qs = saved["state"][0][QKEY]
    for key in ("state1", "state2", "qmap1", "qmap2", "absmax1", "absmax2"):
        assert torch.equal(st[key], qs[key])
    group = opt.param_groups[0]
    assert group["lr"] == 1e-3 and tuple(group["betas"]) == (0.9, 0.999) and group["weight_decay"] == 0.01
    # resume: the first step from the fixture's moments moves the weights the way Adam does
    gen = torch.Generator().manual_seed(0)
    grad = torch.randn(param.shape, generator=gen) * 1e-2
    m = _deq(qs["state1"], qs["absmax1"], qs["qmap1"]) * 0.9 + 0.1 * grad
    v = _deq(qs["state2"], qs["absmax2"], qs["qmap2"]) * 0.999 + 0.001 * grad * grad
    expected = ck["param"] * (1 - 1e-3 * 0.01) - 1e-3 * (m / (1 - 0.9**4)) / (v.sqrt() / (1 - 0.999**4) ** 0.5 + 1e-8)
    param.grad = grad
    opt.step()
    assert st["step"] == 4
    torch.testing.assert_close(param.detach(), expected, rtol=1e-5, atol=1e-7)
    # what we save has the reference release's keys, dtypes and shapes
    ours = opt.state_dict()
    assert set(ours["state"][0]) == set(saved["state"][0])
    for key, value in saved["state"][0][QKEY].items():
        assert ours["state"][0][QKEY][key].dtype == value.dtype
        assert ours["state"][0][QKEY][key].shape == value.shape
    assert set(ours["param_groups"][0]) == set(saved["param_groups"][0])


def _deq(codes, absmax, qmap):
    return (qmap[codes.long()].reshape(-1) * absmax.repeat_interleave(256)[: codes.numel()]).reshape(codes.shape)


def test_load_state_dict_rejects_mismatch():
    model = _model()
    opt = O.AdamW8bit(model.parameters())
    with pytest.raises(ValueError):
        opt.load_state_dict({"state": {}, "param_groups": []})
    other = O.AdamW8bit([torch.nn.Parameter(torch.zeros(3))])
    with pytest.raises(ValueError):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError):
        opt.load_state_dict([1, 2])


def test_bnb_optim_alone_trains_a_model_without_bnb_nn():
    code = textwrap.dedent(
        """
        import sys, torch
        import bnb_optim
        torch.manual_seed(0)
        model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 1))
        opt = bnb_optim.AdamW8bit(model.parameters(), lr=3e-3, min_8bit_size=256)
        x = torch.randn(256, 32); y = (x[:, :1] * 2 - x[:, 1:2]).tanh()
        first = None
        for _ in range(100):
            loss = torch.nn.functional.mse_loss(model(x), y)
            first = first if first is not None else loss.item()
            opt.zero_grad(); loss.backward(); opt.step()
        assert loss.item() < 0.3 * first, (first, loss.item())
        assert opt.state[model[0].weight]["state1"].dtype == torch.uint8
        bad = [m for m in sys.modules if m.startswith("bnb_nn") or m == "bitsandbytes.nn"]
        assert not bad, bad
        print("trained", first, loss.item())
        """
    )
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "trained" in proc.stdout


@pytest.mark.gpu
def test_cuda_paged_resume_and_speed_path():
    import bnb_optim.paged as paged

    torch.manual_seed(0)
    params = [torch.nn.Parameter(torch.randn(512, 512, device="cuda") * 0.02) for _ in range(3)]
    opt = O.PagedAdamW8bit(params, lr=1e-3)
    for _ in range(3):
        for p in params:
            p.grad = torch.randn_like(p) * 1e-3
        opt.step()
    st = opt.state[params[0]]
    assert paged.is_paged(st["state1"]) and st["state1"].is_cuda
    ref = [p.detach().clone() for p in params]
    sd = opt.state_dict()
    params2 = [torch.nn.Parameter(p.detach().clone()) for p in params]
    opt2 = O.PagedAdamW8bit(params2, lr=1e-3)
    opt2.load_state_dict(sd)
    gen = torch.Generator(device="cuda").manual_seed(1)
    grads = [torch.randn(p.shape, device="cuda", generator=gen) * 1e-3 for p in params]
    for ps, o in ((params, opt), (params2, opt2)):
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        o.step()
    for a, b, r in zip(params, params2, ref):
        assert torch.equal(a, b) and not torch.equal(a, r)
    # casting the model between steps is an error, not a silent mix
    params[0].data = params[0].data.half()
    params[0].grad = torch.zeros_like(params[0])
    with pytest.raises(ValueError, match="changed from"):
        opt.step()


def test_state_dict_of_paged_state_saves_with_weights_only():
    """Paged tensors carry a handle to their managed memory; state_dict() must not leak it."""
    import ctypes

    from bnb_optim.paged import _ManagedBlock

    model = _model()
    opt = O.AdamW8bit(model.parameters(), lr=1e-3, min_8bit_size=64)
    _step(model, opt, _batches(1)[0])
    st = opt.state[model[0].weight]
    handle = _ManagedBlock.__new__(_ManagedBlock)  # what a CUDA managed allocation attaches
    handle.ptr = ctypes.c_void_p()
    st["state1"].is_paged = True
    st["state1"]._bnb_managed_block = handle
    buf = io.BytesIO()
    torch.save(opt.state_dict(), buf)
    buf.seek(0)
    loaded = torch.load(buf, weights_only=True)
    assert torch.equal(loaded["state"][0][QKEY]["state1"], st["state1"])
    opt.load_state_dict(loaded)
