"""Each optimizer against its 32-bit torch (or hand-written) counterpart, 8-bit within the
tolerance 8-bit state allows, options, overrides and bad input."""

from __future__ import annotations

import math

import pytest
import torch

import bnb_optim as O

DTYPES = (torch.float32, torch.bfloat16, torch.float16)


def _problem(seed: int, n: int = 4096 + 100, dtype=torch.float32):
    """Parameters (one large enough for 8-bit state, one small) and a fixed sequence of gradients."""
    gen = torch.Generator().manual_seed(seed)
    shapes = [(n,), (37,)]
    params = [torch.randn(s, generator=gen).to(dtype) for s in shapes]
    target = [torch.randn(s, generator=gen) for s in shapes]
    return params, target


def _train(make, params0, target, steps: int, dtype=torch.float32, noise_seed: int = 0, emulate=None):
    """Minimize a quadratic with noisy gradients; returns the parameter trajectory's end.

    ``emulate``: keep float32 parameters but round them (and the gradients) to this dtype after
    every step, which is what a kernel computing in float32 and storing ``emulate`` does."""
    params = [torch.nn.Parameter(p.clone()) for p in params0]
    opt = make(params)
    gen = torch.Generator().manual_seed(noise_seed)
    for _ in range(steps):
        for p, t in zip(params, target):
            noise = torch.randn(p.shape, generator=gen) * 0.1
            grad = ((p.detach().float() - t) + noise).to(dtype)
            p.grad = grad.to(emulate).float() if emulate is not None else grad
        opt.step()
        if emulate is not None:
            with torch.no_grad():
                for p in params:
                    p.copy_(p.to(emulate).float())
    return [p.detach().float() for p in params], opt


def _hand_lion(params, lr, betas, wd):
    class Lion(torch.optim.Optimizer):
        def __init__(self, ps):
            super().__init__(ps, {})

        @torch.no_grad()
        def step(self):
            for p in self.param_groups[0]["params"]:
                m = self.state[p].setdefault("m", torch.zeros_like(p))
                p.mul_(1 - lr * wd)
                p.add_(torch.sign(betas[0] * m + (1 - betas[0]) * p.grad), alpha=-lr)
                m.mul_(betas[1]).add_(p.grad, alpha=1 - betas[1])

    return Lion(params)


def _hand_ademamix(params, lr, betas, alpha, eps, wd):
    class AdEMAMix(torch.optim.Optimizer):
        def __init__(self, ps):
            super().__init__(ps, {})
            self.t = 0

        @torch.no_grad()
        def step(self):
            self.t += 1
            b1, b2, b3 = betas
            for p in self.param_groups[0]["params"]:
                st = self.state[p]
                if not st:
                    st["m1"], st["m2"], st["nu"] = (torch.zeros_like(p) for _ in range(3))
                g = p.grad
                st["m1"].mul_(b1).add_(g, alpha=1 - b1)
                st["m2"].mul_(b3).add_(g, alpha=1 - b3)
                st["nu"].mul_(b2).addcmul_(g, g, value=1 - b2)
                denom = st["nu"].sqrt() / math.sqrt(1 - b2**self.t) + eps
                p.mul_(1 - lr * wd)
                p.sub_(lr * (st["m1"] / (1 - b1**self.t) + alpha * st["m2"]) / denom)

    return AdEMAMix(params)


def _hand_lamb(params, lr, betas, eps, wd, max_unorm):
    class Lamb(torch.optim.Optimizer):
        def __init__(self, ps):
            super().__init__(ps, {})
            self.t = 0

        @torch.no_grad()
        def step(self):
            self.t += 1
            b1, b2 = betas
            for p in self.param_groups[0]["params"]:
                st = self.state[p]
                if not st:
                    st["m"], st["v"] = torch.zeros_like(p), torch.zeros_like(p)
                g = p.grad
                st["m"].mul_(b1).add_(g, alpha=1 - b1)
                st["v"].mul_(b2).addcmul_(g, g, value=1 - b2)
                u = (st["m"] / (1 - b1**self.t)) / (st["v"].sqrt() / math.sqrt(1 - b2**self.t) + eps)
                limit = max_unorm * p.norm()
                scale = min(1.0, float(limit / u.norm())) if u.norm() > 0 else 1.0
                p.mul_(1 - lr * wd)
                p.sub_(lr * scale * u)

    return Lamb(params)


# name -> (bnb factory(params, bits), counterpart factory(params))
CASES = {
    "adam": (
        lambda ps, b: O.Adam(ps, lr=1e-2, optim_bits=b, min_8bit_size=4096),
        lambda ps: torch.optim.Adam(ps, lr=1e-2),
    ),
    "adamw": (
        lambda ps, b: O.AdamW(ps, lr=1e-2, weight_decay=0.1, optim_bits=b),
        lambda ps: torch.optim.AdamW(ps, lr=1e-2, weight_decay=0.1),
    ),
    "sgd": (
        lambda ps, b: O.SGD(ps, lr=1e-2, momentum=0.9, weight_decay=1e-3, optim_bits=b),
        lambda ps: torch.optim.SGD(ps, lr=1e-2, momentum=0.9, weight_decay=1e-3),
    ),
    "rmsprop": (
        lambda ps, b: O.RMSprop(ps, lr=1e-3, alpha=0.99, optim_bits=b),
        lambda ps: torch.optim.RMSprop(ps, lr=1e-3, alpha=0.99),
    ),
    "adagrad": (
        lambda ps, b: O.Adagrad(ps, lr=1e-2, optim_bits=b),
        lambda ps: torch.optim.Adagrad(ps, lr=1e-2),
    ),
    "lion": (
        lambda ps, b: O.Lion(ps, lr=1e-3, weight_decay=0.1, optim_bits=b),
        lambda ps: _hand_lion(ps, 1e-3, (0.9, 0.99), 0.1),
    ),
    "ademamix": (
        lambda ps, b: O.AdEMAMix(ps, lr=1e-2, optim_bits=b),
        lambda ps: _hand_ademamix(ps, 1e-2, (0.9, 0.999, 0.9999), 5.0, 1e-8, 1e-2),
    ),
    "lamb": (
        lambda ps, b: O.LAMB(ps, lr=1e-2, weight_decay=0.01, optim_bits=b),
        lambda ps: _hand_lamb(ps, 1e-2, (0.9, 0.999), 1e-8, 0.01, 1.0),
    ),
    "lars": (
        lambda ps, b: O.LARS(ps, lr=1e-2, momentum=0.9, optim_bits=b),
        lambda ps: O.PytorchLARS(ps, lr=1e-2, momentum=0.9),
    ),
}
STEPS = 30


@pytest.mark.parametrize("name", sorted(CASES))
def test_32bit_matches_counterpart(name):
    make, counterpart = CASES[name]
    params0, target = _problem(1)
    ours, _ = _train(lambda ps: make(ps, 32), params0, target, STEPS)
    theirs, _ = _train(counterpart, params0, target, STEPS)
    for a, b, p0 in zip(ours, theirs, params0):
        moved = (b - p0).norm()
        assert moved > 0
        assert (a - b).norm() <= 1e-4 * moved + 1e-6, name


@pytest.mark.parametrize("name", sorted(CASES))
def test_8bit_tracks_32bit(name):
    make, _ = CASES[name]
    params0, target = _problem(2)
    ours8, opt = _train(lambda ps: make(ps, 8), params0, target, STEPS)
    ours32, _ = _train(lambda ps: make(ps, 32), params0, target, STEPS)
    big = opt.param_groups[0]["params"][0]
    assert opt.state[big]["state1"].dtype == torch.uint8
    small = opt.param_groups[0]["params"][1]
    assert opt.state[small]["state1"].dtype == torch.float32  # below min_8bit_size
    for a, b, p0 in zip(ours8, ours32, params0):
        moved = (b - p0).norm()
        # 8-bit state: the trajectory stays within a few percent of the 32-bit one
        assert (a - b).norm() <= 0.1 * moved, (name, float((a - b).norm() / moved))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("cls", [O.AdamW8bit, O.Lion8bit, O.AdEMAMix8bit, O.AdamW])
def test_low_precision_params(cls, dtype):
    """fp16/bf16 parameters: float32 math, rounded once per step when stored."""
    params0, target = _problem(3, dtype=dtype)
    lr = 1e-2
    ours, _ = _train(lambda ps: cls(ps, lr=lr), params0, target, 10, dtype=dtype)
    want, _ = _train(lambda ps: cls(ps, lr=lr), [p.float() for p in params0], target, 10, emulate=dtype)
    for a, b, p0 in zip(ours, want, params0):
        assert torch.isfinite(a).all()
        moved = (b - p0.float()).norm()
        assert moved > 0
        # identical math; a rare one-ulp rounding difference may propagate a little
        assert (a - b).norm() <= 0.02 * moved, float((a - b).norm() / moved)


def test_global_manager_and_parameter_tags():
    mng = O.GlobalOptimManager.get_instance()
    lin = torch.nn.Linear(128, 64)
    emb = torch.nn.Embedding(100, 64)
    emb.weight.bnb_optim_overrides = {"optim_bits": 32}  # what bnb-nn's embeddings set
    extra = torch.nn.Parameter(torch.randn(5000))
    mng.override_config(extra, "optim_bits", 32)
    mng.register_module_override(lin, "bias", {"lr": 0.0})
    opt = O.Adam8bit([lin.weight, lin.bias, emb.weight, extra], lr=1e-2, min_8bit_size=1)
    bias0 = lin.bias.detach().clone()
    for p in (lin.weight, lin.bias, emb.weight, extra):
        p.grad = torch.randn_like(p)
    opt.step()
    assert opt.state[lin.weight]["state1"].dtype == torch.uint8
    assert opt.state[emb.weight]["state1"].dtype == torch.float32
    assert opt.state[extra]["state1"].dtype == torch.float32
    assert torch.equal(lin.bias.detach(), bias0)  # lr overridden to 0
    with pytest.raises(RuntimeError, match="get_instance"):
        O.GlobalOptimManager()
    with pytest.raises(ValueError):
        mng.override_config(extra)
    mng.initialize()  # the manager is process-wide: leave it clean for other tests


def test_percentile_clipping_and_schedules_run():
    params0, target = _problem(4)
    for make in (
        lambda ps: O.Adam8bit(ps, lr=1e-2, percentile_clipping=95),
        lambda ps: O.Adam(ps, lr=1e-2, percentile_clipping=90),
        lambda ps: O.AdEMAMix8bit(ps, lr=1e-2, t_alpha=10, t_beta3=10),
        lambda ps: O.LAMB8bit(ps, lr=1e-2),
        lambda ps: O.LARS8bit(ps, lr=1e-2, momentum=0.9),
    ):
        out, opt = _train(make, params0, target, 12)
        assert all(torch.isfinite(p).all() for p in out)
        assert all(not torch.equal(a, b) for a, b in zip(out, params0))
    # clipping to the 5th percentile of past norms damps a sudden huge gradient
    p = torch.nn.Parameter(torch.zeros(5000))
    opt = O.Adam32bit([p], lr=1.0, percentile_clipping=5)
    for _ in range(20):
        p.grad = torch.ones(5000)
        opt.step()
    assert opt.state[p]["gnorm_vec"].count_nonzero() == 20


def test_paged_without_cuda_warns_once_and_trains():
    import bnb_optim.paged as paged

    paged._warned.discard("fallback")
    p = torch.nn.Parameter(torch.randn(200_000))
    q = torch.nn.Parameter(torch.randn(200_000))
    opt = O.PagedAdamW8bit([p, q], lr=1e-3)
    p.grad = torch.randn_like(p)
    q.grad = torch.randn_like(q)
    with pytest.warns(RuntimeWarning, match="ordinary memory") as record:
        opt.step()
    assert len([w for w in record if "ordinary memory" in str(w.message)]) == 1
    opt.step()
    assert opt.state[p]["state1"].dtype == torch.uint8


def test_bad_input_errors():
    p = torch.nn.Parameter(torch.randn(10))
    with pytest.raises(ValueError, match="unknown optimizer"):
        O.Optimizer2State("adamax", [p])
    with pytest.raises(ValueError, match="unknown optimizer"):
        O.get_optimizer_class("AdamW9bit")
    assert O.get_optimizer_class("adamw8bit") is O.AdamW8bit
    with pytest.raises(ValueError, match="beta"):
        O.AdamW([p], betas=(0.9, 1.0))
    with pytest.raises(ValueError, match="beta"):
        O.Lion([p], betas=(-0.1, 0.99))
    with pytest.raises(ValueError, match="learning rate"):
        O.AdamW8bit([p], lr=-1.0)
    with pytest.raises(ValueError, match="learning rate"):
        O.Adam([p], lr=float("nan"))
    with pytest.raises(ValueError, match="epsilon"):
        O.AdamW([p], eps=-1e-8)
    with pytest.raises(ValueError, match="weight_decay"):
        O.AdamW([p], weight_decay=-0.1)
    with pytest.raises(ValueError, match="optim_bits"):
        O.Adam([p], optim_bits=4)
    with pytest.raises(NotImplementedError):
        O.SGD([p], lr=0.1)  # no momentum
    with pytest.raises(NotImplementedError):
        O.Adam([p], amsgrad=True)
    with pytest.raises(ValueError, match="betas"):
        O.AdEMAMix([p], betas=(0.9, 0.999))


def test_gradient_dtype_or_device_change_is_an_error():
    p = torch.nn.Parameter(torch.randn(5000))
    opt = O.AdamW8bit([p])
    p.grad = torch.randn_like(p)
    opt.step()
    p.data = p.data.to(torch.bfloat16)
    p.grad = torch.randn_like(p)
    with pytest.raises(ValueError, match="changed from"):
        opt.step()


def test_sparse_gradient_is_an_error():
    emb = torch.nn.Embedding(50, 8, sparse=True)
    opt = O.Adam(emb.parameters())
    emb(torch.tensor([1, 2, 3])).sum().backward()
    with pytest.raises(RuntimeError, match="sparse"):
        opt.step()


def test_nan_gradient_skips_elements_and_keeps_other_blocks():
    gen = torch.Generator().manual_seed(9)
    p0 = torch.randn(1024, generator=gen)
    grads = [torch.randn(1024, generator=gen) for _ in range(3)]

    def run(poison: bool):
        p = torch.nn.Parameter(p0.clone())
        opt = O.AdamW8bit([p], lr=1e-2, min_8bit_size=256)
        for i, g in enumerate(grads):
            g = g.clone()
            if poison and i == 1:
                g[300] = float("nan")
                g[301] = float("inf")
            p.grad = g
            opt.step()
        return p.detach(), opt.state[p]

    clean_p, clean = run(False)
    dirty_p, dirty = run(True)
    assert torch.isfinite(dirty_p).all()
    assert torch.isfinite(dirty["absmax1"]).all() and torch.isfinite(dirty["absmax2"]).all()
    for key in ("state1", "state2"):
        assert torch.equal(clean[key][:256], dirty[key][:256])
        assert torch.equal(clean[key][512:], dirty[key][512:])
    assert torch.equal(clean_p[:256], dirty_p[:256]) and torch.equal(clean_p[512:], dirty_p[512:])
