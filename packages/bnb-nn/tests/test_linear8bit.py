"""Linear8bitLt, Int8Params, Embedding8bit and bnb matmul: fixtures of the reference release,
state-dict round trips, copies, outputs and gradients against the dense layer, bad input."""

from __future__ import annotations

import copy
import io
import pickle

import pytest
import torch
from safetensors.torch import load_file

from bnb_nn import Embedding8bit, Int8Params, Linear8bitLt, MatmulLtState, matmul

DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.gpu)]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def _fixture(upstream_fixtures, name: str) -> dict:
    return load_file(upstream_fixtures / f"{name}.safetensors")


def _module_sd(d: dict) -> dict:
    return {k[len("module.") :]: v for k, v in d.items() if k.startswith("module.")}


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize(("name", "threshold"), [("linear8bit_t0", 0.0), ("linear8bit_t6", 6.0)])
def test_fixture_reproduces_expected_output(upstream_fixtures, name: str, threshold: float, device: str) -> None:
    d = _fixture(upstream_fixtures, name)
    m = Linear8bitLt(256, 384, has_fp16_weights=False, threshold=threshold)
    m.load_state_dict(_module_sd(d))
    m = m.to(device)
    x = d["input"].to(device)
    y = m(x)
    exp = d["expected_output"].to(device)
    if device == "cpu":
        assert torch.equal(y, exp)  # the CPU path is the release's arithmetic, bit for bit
    else:
        assert _rel(y, exp) < 2e-2  # 3 tokens: the GPU multiplies the 16-bit activations (more exact)
    with torch.inference_mode():
        assert torch.equal(m(x), y)
    # what we save loads back into a fresh module with identical output
    sd = m.state_dict()
    assert sd["weight"].dtype == torch.int8 and sd["weight"].shape == (384, 256)
    assert sd["SCB"].dtype == torch.float32 and sd["SCB"].shape == (384,)
    assert sd["weight_format"].dtype == torch.uint8 and sd["weight_format"].dim() == 0 and sd["weight_format"] == 0
    assert set(sd) == set(_module_sd(d))
    m2 = Linear8bitLt(256, 384, has_fp16_weights=False, threshold=threshold)
    m2.load_state_dict({k: v.cpu() for k, v in sd.items()})
    assert torch.equal(m2.to(device)(x), y)


def test_fp16_state_dict_is_quantized(upstream_fixtures) -> None:
    d = _fixture(upstream_fixtures, "linear8bit_t6")
    dense = torch.nn.Linear(256, 384, dtype=torch.float16)
    dense.weight.data.copy_(d["dense_weight"])
    dense.bias.data.copy_(d["module.bias"])
    m = Linear8bitLt(256, 384, has_fp16_weights=False, threshold=6.0)
    m.load_state_dict(dense.state_dict())
    m = m.cpu()
    assert m.weight.dtype == torch.int8
    assert torch.equal(m.weight.data, d["module.weight"]) and torch.equal(m.weight.SCB, d["module.SCB"])
    assert torch.equal(m(d["input"]), d["expected_output"])
    # into a module that already holds int8 weights: quantized at load
    m.load_state_dict(dense.state_dict())
    assert m.weight.dtype == torch.int8 and torch.equal(m(d["input"]), d["expected_output"])


def test_copies_keep_the_quantized_weight(upstream_fixtures) -> None:
    d = _fixture(upstream_fixtures, "linear8bit_t0")
    m = Linear8bitLt(256, 384, has_fp16_weights=False)
    m.load_state_dict(_module_sd(d))
    y = m(d["input"])
    for clone in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert isinstance(clone.weight, Int8Params)
        assert torch.equal(clone(d["input"]), y)
    buf = io.BytesIO()
    torch.save(m, buf)
    buf.seek(0)
    assert torch.equal(torch.load(buf, weights_only=False)(d["input"]), y)
    p = Int8Params(torch.randn(5, 7), requires_grad=False).cpu()
    q = pickle.loads(pickle.dumps(p))
    assert isinstance(q, Int8Params) and q.CB is not None and torch.equal(q.data, p.data) and torch.equal(q.SCB, p.SCB)


def test_int8_params_accept_only_one_float32_scale_per_row() -> None:
    # transformers builds Int8Params(int8 weight, SCB=...) straight from a checkpoint.
    CB = torch.randint(-127, 128, (6, 10), dtype=torch.int8)
    p = Int8Params(CB, requires_grad=False, SCB=torch.rand(6) + 0.5)
    assert p.SCB is not None and p.SCB.shape == (6,)
    bad = {
        "rows": torch.rand(5),
        "dtype": torch.rand(6, dtype=torch.float16),
        "2-d": torch.rand(6, 1),
    }
    for SCB in bad.values():
        with pytest.raises(ValueError, match=r"SCB must be float32 of shape \[6\].*\[6, 10\]"):
            Int8Params(CB, requires_grad=False, SCB=SCB)
    with pytest.raises(ValueError, match="2-d"):
        Int8Params(CB.reshape(60), requires_grad=False, SCB=torch.rand(60))
    with pytest.raises(TypeError, match="SCB must be a tensor"):
        Int8Params(CB, requires_grad=False, SCB=[1.0] * 6)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float32])
@pytest.mark.parametrize("threshold", [0.0, 6.0])
@pytest.mark.parametrize("shape", [(5, 70), (2, 3, 70), (40, 70)])
def test_output_close_to_dense(device: str, dtype: torch.dtype, threshold: float, shape: tuple) -> None:
    if device == "cpu" and dtype == torch.float16 and shape[0] == 40:
        pytest.skip("covered by the other shapes; keeps the CPU suite short")
    torch.manual_seed(0)
    dense = torch.nn.Linear(70, 45).to(dtype)
    m = Linear8bitLt(70, 45, has_fp16_weights=False, threshold=threshold)
    m.load_state_dict(dense.state_dict())
    m = m.to(device)
    dense = dense.to(device)
    x = torch.randn(*shape, dtype=dtype, device=device)
    if threshold > 0:
        x[..., 3] *= 20  # an outlier column, kept in 16-bit
    with torch.no_grad():
        y = m(x)
        ref = dense(x)
    assert y.shape == ref.shape and y.dtype == dtype
    assert _rel(y, ref) < 0.02


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_gradients_match_dense_autograd(device: str, threshold: float) -> None:
    torch.manual_seed(1)
    dense = torch.nn.Linear(48, 24).to(device)
    m = Linear8bitLt(48, 24, has_fp16_weights=True, threshold=threshold).to(device)
    m.load_state_dict(dense.state_dict())
    x = torch.randn(2, 6, 48, device=device)
    if threshold > 0:
        x[..., 7] *= 20
    x1 = x.clone().requires_grad_()
    x2 = x.clone().requires_grad_()
    g = torch.randn(2, 6, 24, device=device)
    m(x1).backward(g)
    dense(x2).backward(g)
    assert _rel(x1.grad, x2.grad) < 0.015
    assert _rel(m.weight.grad, dense.weight.grad) < 1e-5
    assert _rel(m.bias.grad, dense.bias.grad) < 1e-5
    # frozen int8 weights: gradient to the input only
    q = Linear8bitLt(48, 24, has_fp16_weights=False, threshold=threshold)
    q.load_state_dict(dense.state_dict())
    q = q.to(device)
    x3 = x.clone().requires_grad_()
    q(x3).backward(g)
    assert q.weight.grad is None and _rel(x3.grad, x2.grad) < 0.015


def test_eval_mode_and_matmul_function() -> None:
    torch.manual_seed(2)
    W = torch.randn(16, 32)
    A = torch.randn(3, 32)
    state = MatmulLtState()
    y = matmul(A, W, state=state, threshold=6.0)
    assert state.threshold == 6.0 and state.CB is not None and state.CB.dtype == torch.int8
    assert _rel(y, A @ W.t()) < 0.015
    m = Linear8bitLt(32, 16, bias=False, has_fp16_weights=False).eval()
    m.weight = Int8Params(W.clone(), requires_grad=False)
    m = m.to("cpu")
    assert _rel(m(A), A @ W.t()) < 0.015
    empty = m(torch.empty(0, 32))
    assert empty.shape == (0, 16)


def test_odd_inner_dimensions() -> None:
    for K in (1, 3, 5, 17, 33):
        dense = torch.nn.Linear(K, 7)
        m = Linear8bitLt(K, 7, has_fp16_weights=False)
        m.load_state_dict(dense.state_dict())
        m = m.cpu()
        x = torch.randn(4, K)
        assert _rel(m(x), dense(x).detach()) < 0.02


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        Linear8bitLt(8, 4, threshold=-1.0)
    m = Linear8bitLt(8, 4, has_fp16_weights=False).cpu()
    with pytest.raises(ValueError, match="expected 8"):
        m(torch.randn(2, 9))
    with pytest.raises(TypeError, match="float16, bfloat16 or float32"):
        m(torch.ones(2, 8, dtype=torch.int32))
    sd = m.state_dict()
    with pytest.raises(ValueError, match="SCB must have 4 values"):
        Linear8bitLt(8, 4, has_fp16_weights=False).load_state_dict({**sd, "SCB": torch.ones(3)})
    with pytest.raises(ValueError, match="weight must have shape"):
        Linear8bitLt(8, 5, has_fp16_weights=False).load_state_dict(sd)
    with pytest.raises(ValueError, match="no SCB"):
        Linear8bitLt(8, 4, has_fp16_weights=False).load_state_dict({k: v for k, v in sd.items() if k != "SCB"})
    with pytest.raises(ValueError, match="weight_format"):
        Linear8bitLt(8, 4, has_fp16_weights=False).load_state_dict(
            {**sd, "weight_format": torch.tensor(3, dtype=torch.uint8)}
        )
    raw = Linear8bitLt(8, 4, has_fp16_weights=False)
    raw.weight = Int8Params(torch.zeros(4, 8, dtype=torch.int8), requires_grad=False)
    with pytest.raises(RuntimeError, match="never quantized"):
        raw(torch.randn(2, 8))
    with pytest.raises(TypeError, match="A must be a float16"):
        matmul(torch.ones(2, 8, dtype=torch.int64), torch.randn(4, 8))
    with pytest.raises(ValueError, match="expects 8"):
        matmul(torch.randn(2, 7), torch.randn(4, 8))


@pytest.mark.gpu
def test_wrong_device_is_reported() -> None:
    m = Linear8bitLt(8, 4, has_fp16_weights=False).cpu()
    with pytest.raises(ValueError, match=r"call module\.to"):
        m(torch.randn(2, 8, device="cuda"))


@pytest.mark.parametrize("device", DEVICES)
def test_embedding8bit(device: str) -> None:
    torch.manual_seed(3)
    dense = torch.nn.Embedding(20, 12)
    e = Embedding8bit(20, 12)
    e.load_state_dict(dense.state_dict())
    with pytest.raises(RuntimeError, match="not quantized"):
        e(torch.tensor([1, 2]))
    e = e.to(device)
    idx = torch.tensor([[0, 5, 19], [3, 3, 7]], device=device)
    out = e(idx)
    ref = dense.to(device)(idx).detach()
    assert out.shape == (2, 3, 12) and out.dtype == torch.float32
    assert (out - ref).abs().max() <= dense.weight.abs().max() / 127 * 0.51 + 1e-6
    with pytest.raises(NotImplementedError):
        e.state_dict()


@pytest.mark.gpu
@pytest.mark.parametrize("threshold", [0.0, 6.0])
def test_cuda_forward_without_host_sync_and_in_a_cuda_graph(threshold: float) -> None:
    # After its first call per shape (kernels compiled, direct launch checked once), the
    # forward launches the compiled kernels directly: no host synchronization, capturable.
    torch.manual_seed(4)
    dense = torch.nn.Linear(512, 1024, dtype=torch.float16)
    m = Linear8bitLt(512, 1024, has_fp16_weights=False, threshold=threshold)
    m.load_state_dict(dense.state_dict())
    m, dense = m.cuda(), dense.cuda()
    for M in (1, 4, 300):
        x = torch.randn(M, 512, device="cuda", dtype=torch.float16)
        if threshold > 0:
            x[:, ::64] *= 20.0  # without a threshold, outliers would coarsen every row's scale
        with torch.inference_mode():
            y0 = m(x)
            torch.cuda.synchronize()
            torch.cuda.set_sync_debug_mode("error")
            try:
                y1 = m(x)
            finally:
                torch.cuda.set_sync_debug_mode("default")
            ref = dense(x)
        assert torch.equal(y0, y1)
        assert _rel(y1, ref) < 0.03
        run = m.__dict__["_bnb_int8_fast"][0]
        assert all(p.fast for p in run.plans.values()), "the compiled kernels are not launched directly"
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side), torch.inference_mode():
            m(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.inference_mode(), torch.cuda.graph(graph):
            out = m(x)
        x.copy_(torch.randn(M, 512, device="cuda", dtype=torch.float16) * 2)
        graph.replay()
        torch.cuda.synchronize()
        with torch.inference_mode():
            assert torch.equal(out, m(x))
