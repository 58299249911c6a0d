"""4-bit parametrization of non-Linear parameters (e.g. stacked MoE expert weights)."""

from __future__ import annotations

import pytest
import torch

import bnb_quant.functional as F
from bnb_nn import replace_linear, replace_parameter_4bit, replace_parameter_4bit_prequantized
from bnb_nn.linear4bit import Linear4bit
from bnb_nn.parametrize import Bnb4bitParametrization


class Experts(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = torch.nn.Parameter(torch.randn(4, 32, 64))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.einsum("eoi,bi->beo", self.w, x) + self.w.sum()


def test_replace_parameter_4bit_dequantizes_on_access_and_saves_reference_keys() -> None:
    m = Experts()
    dense = m.w.detach().clone()
    replace_parameter_4bit(m, "w", quant_type="nf4", compress_statistics=True, blocksize=64)
    w = m.w
    assert w.shape == dense.shape and w.dtype == dense.dtype
    assert ((w - dense).norm() / dense.norm()).item() < 0.11
    x = torch.randn(3, 64)
    assert m(x).shape == (3, 4, 32)
    sd = m.state_dict()
    assert "w" in sd and sd["w"].dtype == torch.uint8
    assert {
        "w.absmax",
        "w.quant_map",
        "w.nested_absmax",
        "w.nested_quant_map",
        "w.quant_state.bitsandbytes__nf4",
    } <= set(sd)
    # prequantized: a fresh module holding the packed data
    m2 = Experts()
    with torch.no_grad():
        m2.w = torch.nn.Parameter(sd["w"].clone(), requires_grad=False)
    stats = {k[2:]: v for k, v in sd.items() if k.startswith("w.")}
    replace_parameter_4bit_prequantized(m2, "w", stats, device="cpu")
    assert torch.equal(m2.w, w)


def test_parametrize_errors() -> None:
    m = Experts()
    with pytest.raises(AttributeError):
        replace_parameter_4bit(m, "nope")
    m.register_buffer("buf", torch.zeros(4))
    with pytest.raises(TypeError, match=r"nn\.Parameter"):
        replace_parameter_4bit(m, "buf")
    with pytest.raises(TypeError):
        Bnb4bitParametrization("not a state")
    _q, state = F.quantize_4bit(torch.randn(8, 8), quant_type="nf4")
    m3 = Experts()
    with pytest.raises(ValueError, match="bytes"):
        replace_parameter_4bit_prequantized(m3, "w", state.as_dict(packed=True), device="cpu")


def test_replace_linear() -> None:
    model = torch.nn.Sequential(torch.nn.Linear(16, 8), torch.nn.Sequential(torch.nn.Linear(8, 8, bias=False)))
    model.add_module("lm_head", torch.nn.Linear(8, 4))
    old = model[0].weight
    replace_linear(model, lambda i, o, b: Linear4bit(i, o, b, quant_type="nf4"), copy_weights=True)
    assert isinstance(model[0], Linear4bit) and isinstance(model[1][0], Linear4bit)
    assert model[1][0].bias is None
    assert type(model.lm_head) is torch.nn.Linear
    assert model[0].weight is old
    with pytest.raises(TypeError):
        replace_linear("not a model", Linear4bit)
