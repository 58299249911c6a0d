"""bitsandbytes.functional.gemv_4bit (bnb_quant.gemv_4bit): one row times a 4-bit weight."""

from __future__ import annotations

import pytest
import torch

import bnb_quant.functional as F


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm()).item()


@pytest.mark.parametrize("nested", [True, False])
def test_functional_gemv_4bit(nested: bool) -> None:
    W = torch.randn(40, 96, dtype=torch.bfloat16)
    q, state = F.quantize_4bit(W, quant_type="nf4", compress_statistics=nested)
    x = torch.randn(1, 1, 96, dtype=torch.bfloat16)
    expected = x @ F.dequantize_4bit(q, state).T
    got = F.gemv_4bit(x, q.t(), state=state)
    assert got.shape == (1, 1, 40) and _rel(got, expected) < 1.2e-2
    out = torch.empty(1, 1, 40, dtype=torch.bfloat16)
    assert F.gemv_4bit(x, q.t(), out=out, state=state) is out and _rel(out, expected) < 1.2e-2


def test_functional_gemv_4bit_bad_input() -> None:
    q, state = F.quantize_4bit(torch.randn(8, 32), quant_type="fp4")
    with pytest.raises(ValueError, match="state"):
        F.gemv_4bit(torch.randn(1, 32), q)
    with pytest.raises(ValueError, match="leading dimensions"):
        F.gemv_4bit(torch.randn(2, 32), q, state=state)
    with pytest.raises(TypeError, match="QuantState"):
        F.gemv_4bit(torch.randn(1, 32), q, state="not a state")
