"""LLM.int8() functional API: results through the ops, and clear errors on bad input."""

from __future__ import annotations

import pytest
import torch

import bnb_quant.functional as F


def test_quant_dequant_roundtrip() -> None:
    A = torch.randn(6, 50, dtype=torch.float16)
    codes, stats, cols = F.int8_vectorwise_quant(A)
    assert codes.dtype == torch.int8 and stats.dtype == torch.float32 and cols is None
    back = F.int8_vectorwise_dequant(codes, stats)
    assert back.dtype == torch.float32
    assert (back - A.float()).abs().max() <= stats.max() / 127 * 0.51


def test_outlier_columns_and_matmul() -> None:
    A = torch.randn(8, 32)
    A[:, 5] *= 30
    codes, stats, cols = F.int8_vectorwise_quant(A, threshold=6.0)
    assert cols.tolist() == [5] and (codes[:, 5] == 0).all()
    B = torch.randint(-127, 128, (12, 32), dtype=torch.int8)
    acc = F.int8_linear_matmul(codes, B)
    assert torch.equal(acc.long(), codes.long() @ B.long().t())
    out = torch.empty_like(acc)
    assert F.int8_linear_matmul(codes, B, out=out) is out and torch.equal(out, acc)
    y = F.int8_mm_dequant(acc, stats, torch.rand(12) + 1, bias=torch.randn(12, dtype=torch.float16))
    assert y.dtype == torch.float16 and y.shape == (8, 12)
    with pytest.warns(FutureWarning):
        y2 = F.mm_dequant(acc, None, stats, torch.ones(12))
    assert torch.equal(y2, F.int8_mm_dequant(acc, stats, torch.ones(12)))
    row, col, mask = F.get_colrow_absmax(A, threshold=6.0)
    assert torch.equal(row, stats) and mask.shape == A.shape and col.shape == (32,)
    assert torch.equal(F.get_row_absmax(A, 6.0), stats)
    rc, _cc, rs, _cs, oc = F.int8_double_quant(A, threshold=6.0)
    assert torch.equal(rc, codes) and torch.equal(rs, stats) and oc.tolist() == [5]


def test_bad_input() -> None:
    A = torch.randn(4, 8)
    with pytest.raises(TypeError, match="A must have dtype"):
        F.int8_vectorwise_quant(A.to(torch.int32))
    with pytest.raises(ValueError, match="threshold must be >= 0"):
        F.int8_vectorwise_quant(A, threshold=-1.0)
    with pytest.raises(TypeError, match="threshold must be a number"):
        F.int8_vectorwise_quant(A, threshold="6")
    codes, stats, _ = F.int8_vectorwise_quant(A)
    with pytest.raises(ValueError, match="stats must have 4 elements"):
        F.int8_vectorwise_dequant(codes, stats[:3])
    with pytest.raises(ValueError, match="inner dimensions differ"):
        F.int8_linear_matmul(codes, torch.zeros(3, 7, dtype=torch.int8))
    with pytest.raises(TypeError, match="B must have dtype"):
        F.int8_linear_matmul(codes, torch.zeros(3, 8))
    with pytest.raises(ValueError, match="B must be 2-d"):
        F.int8_linear_matmul(codes, torch.zeros(3, 8, 1, dtype=torch.int8))
    acc = F.int8_linear_matmul(codes, torch.zeros(3, 8, dtype=torch.int8))
    with pytest.raises(ValueError, match="col_stats must have 3 elements"):
        F.int8_mm_dequant(acc, stats, torch.ones(4))
    with pytest.raises(TypeError, match="A must have dtype int32"):
        F.int8_mm_dequant(acc.float(), stats, torch.ones(3))
    with pytest.raises(ValueError, match="out must have shape"):
        F.int8_linear_matmul(codes, torch.zeros(3, 8, dtype=torch.int8), out=torch.empty(2, 3, dtype=torch.int32))
    with pytest.raises(ValueError, match="must be None"):
        F.int8_double_quant(A, row_stats=torch.ones(4))
