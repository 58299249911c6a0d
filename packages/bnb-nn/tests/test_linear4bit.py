"""Linear4bit / LinearNF4 / LinearFP4 and matmul_4bit: accuracy against the dense layer,
the reference release's checkpoints (fixtures), state dict layout, gradients, copies, bad
input."""

from __future__ import annotations

import copy
import json
import pickle
import warnings
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import bnb_quant.functional as F
from bnb_nn import Linear4bit, LinearFP4, LinearNF4, Params4bit, matmul_4bit

DTYPES = (torch.float32, torch.float16, torch.bfloat16)


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


def _quantized(
    K=256, N=192, dtype=torch.bfloat16, quant_type="nf4", nested=True, bias=True, storage=torch.uint8, seed=0
):
    torch.manual_seed(seed)
    dense = torch.nn.Linear(K, N, bias=bias, dtype=dtype)
    m = Linear4bit(
        K, N, bias=bias, compute_dtype=dtype, compress_statistics=nested, quant_type=quant_type, quant_storage=storage
    )
    m.weight = Params4bit(
        dense.weight.data.clone(),
        requires_grad=False,
        quant_type=quant_type,
        compress_statistics=nested,
        quant_storage=storage,
    )
    if bias:
        m.bias = torch.nn.Parameter(dense.bias.data.clone())
    return dense, m.cpu()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
@pytest.mark.parametrize("nested", [True, False])
def test_matches_dense_layer_within_format_error(dtype, quant_type, nested) -> None:
    dense, m = _quantized(dtype=dtype, quant_type=quant_type, nested=nested)
    assert m.weight.bnb_quantized and m.weight.dtype == torch.uint8
    for M in (1, 7):
        x = torch.randn(M, 256, dtype=dtype)
        with torch.no_grad():
            ref = dense(x)
            out = m(x)
            deq = torch.nn.functional.linear(x, F.dequantize_4bit(m.weight, m.weight.quant_state).to(dtype), m.bias)
        assert out.dtype == dtype and out.shape == (M, 192)
        limit = 0.11 if quant_type == "nf4" else 0.13
        assert 0.05 < _rel(out, ref) < limit
        # the fused path computes the same function as dequantize + dense matmul
        assert _rel(out, deq) < {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.2e-2}[dtype]


@pytest.mark.parametrize("storage", [torch.uint8, torch.float16, torch.bfloat16, torch.float32])
def test_quant_storage_dtypes(storage) -> None:
    dense, m = _quantized(storage=storage)
    assert m.weight.dtype == storage
    x = torch.randn(3, 256, dtype=torch.bfloat16)
    with torch.no_grad():
        assert _rel(m(x), dense(x)) < 0.11
    sd = m.state_dict()
    assert sd["weight"].dtype == storage
    m2 = Linear4bit(256, 192, compute_dtype=torch.bfloat16, quant_type="nf4", quant_storage=storage)
    m2.load_state_dict(sd)
    with torch.no_grad():
        assert torch.equal(m2(x), m(x))


def test_nf4_fp4_subclasses_and_3d_input() -> None:
    assert LinearNF4(64, 32).weight.quant_type == "nf4"
    assert LinearFP4(64, 32).weight.quant_type == "fp4"
    m = LinearNF4(64, 32, compute_dtype=torch.float32).cpu()
    x = torch.randn(2, 5, 64)
    with torch.no_grad():
        out = m(x)
    assert out.shape == (2, 5, 32)


def _fixture_names(folder: Path) -> list[str]:
    manifest = json.loads((folder / "MANIFEST.json").read_text())
    return sorted(k for k, v in manifest["files"].items() if k.startswith("linear4bit_"))


FIXTURE_DIR = Path(__file__).resolve().parents[3] / "fixtures" / "upstream-0.50.2"


@pytest.mark.parametrize("name", _fixture_names(FIXTURE_DIR))
def test_reference_release_checkpoints_load_and_reproduce(name: str, upstream_fixtures: Path) -> None:
    info = json.loads((upstream_fixtures / "MANIFEST.json").read_text())["files"][name]
    data = load_file(str(upstream_fixtures / f"{name}.safetensors"))
    sd = {k[len("module.") :]: v for k, v in data.items() if k.startswith("module.")}
    dtype = getattr(torch, info["dtype"].replace("torch.", ""))
    m = Linear4bit(
        info["in_features"],
        info["out_features"],
        bias=True,
        compress_statistics=info["compress_statistics"],
        quant_type=info["quant_type"],
    )
    # the layer is built for the checkpoint's format (block size is not a constructor argument)
    m.weight = Params4bit(
        m.weight.data,
        requires_grad=False,
        blocksize=info["blocksize"],
        compress_statistics=info["compress_statistics"],
        quant_type=info["quant_type"],
        module=m,
    )
    result = m.load_state_dict(sd)
    assert not result.missing_keys and not result.unexpected_keys
    qs = m.weight.quant_state
    assert (
        qs.blocksize == info["blocksize"]
        and qs.quant_type == info["quant_type"]
        and qs.nested == info["compress_statistics"]
    )
    # the dequantized weight is bit-exact
    assert torch.equal(F.dequantize_4bit(m.weight, qs), data["dequantized_weight"])
    with torch.no_grad():
        out = m(data["input"])
    tol = {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1e-2}[dtype]
    assert out.dtype == data["expected_output"].dtype
    assert _rel(out, data["expected_output"]) < tol
    # what we save has the reference key layout, dtypes and shapes, byte for byte
    saved = m.state_dict()
    assert sorted(saved) == sorted(sd)
    for k, v in sd.items():
        assert saved[k].dtype == v.dtype and saved[k].shape == v.shape, k
        if "quant_state" not in k:
            assert torch.equal(saved[k], v), k
    assert json.loads(bytes(saved[f"weight.quant_state.bitsandbytes__{info['quant_type']}"].tolist())) == json.loads(
        bytes(sd[f"weight.quant_state.bitsandbytes__{info['quant_type']}"].tolist())
    )


def test_state_dict_roundtrip_and_keys() -> None:
    _, m = _quantized()
    sd = m.state_dict()
    assert sorted(sd) == sorted(
        [
            "weight",
            "bias",
            "weight.absmax",
            "weight.quant_map",
            "weight.nested_absmax",
            "weight.nested_quant_map",
            "weight.quant_state.bitsandbytes__nf4",
        ]
    )
    _, plain = _quantized(nested=False, bias=False)
    assert sorted(plain.state_dict()) == [
        "weight",
        "weight.absmax",
        "weight.quant_map",
        "weight.quant_state.bitsandbytes__nf4",
    ]
    fresh = Linear4bit(256, 192, compute_dtype=torch.bfloat16, quant_type="nf4", compress_statistics=False)
    fresh.load_state_dict(sd)  # nested or not: the checkpoint says
    assert fresh.weight.quant_type == "nf4" and fresh.weight.quant_state.nested
    other = Linear4bit(256, 192, compute_dtype=torch.bfloat16, quant_type="fp4")
    with pytest.raises(RuntimeError, match=r"weight.*nf4.*fp4"):
        other.load_state_dict(sd)  # a checkpoint of another format than the layer is refused
    x = torch.randn(4, 256, dtype=torch.bfloat16)
    with torch.no_grad():
        assert torch.equal(fresh(x), m(x))


def test_gradients_flow_to_input_and_bias_not_weight() -> None:
    _dense, m = _quantized(dtype=torch.float32)
    m.bias.requires_grad_(True)
    x = torch.randn(6, 256, requires_grad=True)
    out = m(x)
    g = torch.randn_like(out)
    out.backward(g)
    W = F.dequantize_4bit(m.weight, m.weight.quant_state)
    assert torch.allclose(x.grad, g @ W, rtol=1e-4, atol=1e-5)
    assert torch.allclose(m.bias.grad, g.sum(0), rtol=1e-5, atol=1e-5)
    assert m.weight.grad is None and not m.weight.requires_grad


def test_matmul_4bit_function() -> None:
    _, m = _quantized(dtype=torch.float32, bias=False)
    w, qs = m.weight, m.weight.quant_state
    x = torch.randn(3, 256, requires_grad=True)
    out = matmul_4bit(x, w.t(), quant_state=qs)
    expected = x @ F.dequantize_4bit(w, qs).T
    assert _rel(out, expected) < 1e-5
    out.sum().backward()
    assert x.grad is not None and x.grad.shape == x.shape
    with torch.no_grad():
        buf = torch.empty(3, 192)
        matmul_4bit(x, w.t(), quant_state=qs, out=buf)
        assert _rel(buf, expected) < 1e-5


def test_copies_pickle_chunk_and_moves() -> None:
    _, m = _quantized()
    x = torch.randn(2, 256, dtype=torch.bfloat16)
    with torch.no_grad():
        out = m(x)
        for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
            assert torch.equal(other(x), out)
            assert other.weight.quant_state is not m.weight.quant_state
    w = m.weight
    shallow = copy.copy(w)
    assert isinstance(shallow, Params4bit) and shallow.quant_state is w.quant_state
    deep = copy.deepcopy(w)
    assert isinstance(deep, Params4bit) and deep.quant_state == w.quant_state and torch.equal(deep, w)
    for parts in (torch.chunk(w, 2), torch.split(w, w.shape[0] // 4), w.chunk(3)):
        assert all(isinstance(p, Params4bit) and p.quant_state is w.quant_state and p.bnb_quantized for p in parts)
        assert sum(p.shape[0] for p in parts) == w.shape[0]
    moved = m.to("cpu")
    with torch.no_grad():
        assert torch.equal(moved(x), out)
    m.half()  # must not reinterpret the packed bytes
    assert m.weight.dtype == torch.uint8


@pytest.mark.gpu
def test_cpu_gpu_moves_keep_the_weight() -> None:
    dense, m = _quantized()
    x = torch.randn(3, 256, dtype=torch.bfloat16)
    with torch.no_grad():
        cpu_out = m(x)
        g = m.cuda()
        assert g.weight.device.type == "cuda" and g.weight.quant_state.absmax.device.type == "cuda"
        gpu_out = g(x.cuda())
        assert _rel(gpu_out.cpu(), cpu_out) < 1.2e-2
        back = g.cpu()
        assert _rel(back(x), cpu_out) < 1.2e-2
        assert _rel(gpu_out.cpu(), dense(x)) < 0.11
    # quantizing on the GPU directly
    m2 = Linear4bit(256, 192, compute_dtype=torch.bfloat16, quant_type="nf4")
    m2.load_state_dict(dense.state_dict())
    m2 = m2.cuda()
    with torch.no_grad():
        assert _rel(m2(x.cuda()).cpu(), dense(x)) < 0.11


def test_fp16_input_with_fp32_compute_warns() -> None:
    m = Linear4bit(64, 32, quant_type="nf4").cpu()
    m.compute_dtype = torch.float32
    m.compute_type_is_set = False
    x = torch.randn(1, 64, dtype=torch.float16)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        with torch.no_grad():
            out = m(x)
    assert out.dtype == torch.float16
    assert any("slow inference" in str(w.message) for w in caught)


def test_bad_input() -> None:
    _, m = _quantized()
    with pytest.raises(ValueError, match="256 features"):
        m(torch.randn(2, 255, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match=r"on meta|is on"):
        m(torch.randn(2, 256, dtype=torch.bfloat16, device="meta"))
    never = Linear4bit(64, 32)
    with pytest.raises(RuntimeError, match="never quantized"):
        never(torch.randn(1, 64))
    # a quant state that does not describe the weight
    _, other = _quantized(K=128, N=64)
    m.weight.quant_state = other.weight.quant_state
    with pytest.raises(ValueError, match=r"mismatched quant_state|input features"):
        m(torch.randn(1, 256, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="quant_type"):
        Linear4bit(64, 32, quant_type="int4")
    with pytest.raises(ValueError, match="blocksize"):
        Params4bit(torch.randn(4, 4), blocksize=48)
    with pytest.raises(ValueError, match="quant_state"):
        matmul_4bit(torch.randn(1, 64), torch.zeros(16, 1, dtype=torch.uint8), quant_state=None)
    bad = Linear4bit(256, 192, quant_type="nf4")
    _, src = _quantized(K=128, N=64)
    with pytest.raises(RuntimeError, match=r"\[64, 128\] weight"):
        bad.load_state_dict(src.state_dict())
