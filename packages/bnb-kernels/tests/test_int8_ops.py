"""LLM.int8() ops: the reference against the release's fixture and an independent float64
computation, the native CPU kernels against the reference (bit for bit), fake kernels."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bnb_kernels import _native, selected_backend
from bnb_kernels.backends.reference import int8 as ref
from bnb_kernels.ops.int8 import MM_DEQUANT

DTYPES = (torch.float16, torch.bfloat16, torch.float32)
needs_native = pytest.mark.skipif(not _native.available(), reason="native CPU library not built")


def _input(rows: int, cols: int, dtype: torch.dtype, seed: int, outliers: bool = False) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    A = torch.randn(rows, cols, generator=g) * 2
    if outliers and cols > 2:
        A[:, cols // 2] *= 10
        A[rows // 2, 1] = -40.0
    return A.to(dtype)


def test_reference_matches_release_fixture(upstream_fixtures) -> None:
    from safetensors.torch import load_file

    d = load_file(upstream_fixtures / "int8_vectorwise_t6.safetensors")
    codes, row_stats, cols = ref.int8_vectorwise_quant(d["input"], 6.0)
    assert torch.equal(codes, d["codes"])
    assert torch.equal(row_stats, d["row_stats"])
    assert torch.equal(cols, d["outlier_cols"])


def test_reference_definition() -> None:
    A = _input(7, 33, torch.float32, 0, outliers=True)
    codes, row_stats, cols = ref.int8_vectorwise_quant(A, 6.0)
    x = A.double()
    outlier = x.abs() >= 6.0
    assert torch.equal(cols, torch.nonzero(outlier.any(0)).view(-1))
    absmax = x.masked_fill(outlier, 0).abs().amax(1)
    assert torch.equal(row_stats.double(), absmax)
    expected = torch.round(x * (127.0 / absmax)[:, None])
    expected[:, cols] = 0
    assert (codes.double() - expected).abs().max() <= 1  # the float32 scale may round a tie the other way
    assert (codes.double() != expected).float().mean() < 0.01
    # zero rows and NaN: code 0, NaN never counts in the absmax
    A[2] = 0
    A[3, 4] = float("nan")
    codes, row_stats, _ = ref.int8_vectorwise_quant(A, 0.0)
    assert row_stats[2] == 0 and (codes[2] == 0).all()
    assert codes[3, 4] == 0 and torch.isfinite(row_stats[3])


def test_reference_matmul_and_dequant_are_exact() -> None:
    g = torch.Generator().manual_seed(1)
    A = torch.randint(-127, 128, (9, 70), generator=g, dtype=torch.int8)
    B = torch.randint(-127, 128, (13, 70), generator=g, dtype=torch.int8)
    acc = ref.int8_linear_matmul(A, B)
    assert acc.dtype == torch.int32
    assert torch.equal(acc.long(), A.long() @ B.long().t())
    row, col = torch.rand(9, generator=g) * 3, torch.rand(13, generator=g) * 2
    out = ref.int8_mm_dequant(acc, row, col, torch.float32)
    expected = acc.double() * row.double()[:, None] * col.double()[None, :] * MM_DEQUANT
    assert torch.allclose(out.double(), expected, rtol=1e-6, atol=1e-6)


def test_reference_mixed_equals_dense_on_outlier_columns() -> None:
    A = _input(12, 40, torch.float32, 2, outliers=True)
    W = torch.randn(24, 40)
    CB, SCB, _ = ref.int8_vectorwise_quant(W, 0.0)
    CA, SCA, cols = ref.int8_vectorwise_quant(A, 6.0)
    out, subA = ref.int8_mixed_scaled_mm(A, CA, CB, SCA, SCB, cols, None)
    Wd = CB.float() * SCB[:, None] / 127
    Ad = CA.float() * SCA[:, None] / 127
    expected = Ad @ Wd.t() + A[:, cols] @ Wd[:, cols].t()
    assert torch.equal(subA, A[:, cols])
    assert torch.allclose(out, expected, rtol=1e-3, atol=1e-3)
    dense = A @ W.t()
    assert ((out - dense).norm() / dense.norm()) < 0.02


@needs_native
@settings(max_examples=20, deadline=None)
@given(
    rows=st.integers(1, 40),
    cols=st.integers(1, 300),
    dtype=st.sampled_from(DTYPES),
    threshold=st.sampled_from([0.0, 3.0, 6.0]),
    seed=st.integers(0, 1000),
)
def test_native_quant_matches_reference(rows: int, cols: int, dtype: torch.dtype, threshold: float, seed: int) -> None:
    from bnb_kernels.backends.cpu import int8 as cpu

    A = _input(rows, cols, dtype, seed, outliers=True)
    if rows > 2 and cols > 3:
        A[1, 2] = float("nan")
        A[rows - 1] = 0
    got = cpu.int8_vectorwise_quant(A, threshold)
    exp = ref.int8_vectorwise_quant(A, threshold)
    assert torch.equal(got[0], exp[0])
    assert torch.equal(got[1], exp[1])
    assert (got[2] is None) == (exp[2] is None)
    if exp[2] is not None:
        assert torch.equal(got[2], exp[2])


@needs_native
def test_native_quant_3d_and_strided() -> None:
    from bnb_kernels.backends.cpu import int8 as cpu

    A = _input(6, 50, torch.float16, 3).reshape(2, 3, 50)
    for x in (A, A[:, :, :45], A.transpose(0, 1)):
        got = cpu.int8_vectorwise_quant(x, 0.0)
        exp = ref.int8_vectorwise_quant(x, 0.0)
        assert got[0].shape == x.shape
        assert torch.equal(got[0], exp[0]) and torch.equal(got[1], exp[1])


@needs_native
@pytest.mark.parametrize("out_dtype", DTYPES)
@pytest.mark.parametrize("bias_dtype", [None, *DTYPES])
def test_native_mm_dequant_matches_reference(out_dtype: torch.dtype, bias_dtype: torch.dtype | None) -> None:
    from bnb_kernels.backends.cpu import int8 as cpu

    g = torch.Generator().manual_seed(4)
    acc = torch.randint(-(2**22), 2**22, (11, 37), generator=g, dtype=torch.int32)
    row, col = torch.rand(11, generator=g) * 5, torch.rand(37, generator=g) * 5
    bias = None if bias_dtype is None else torch.randn(37, generator=g).to(bias_dtype)
    got = cpu.int8_mm_dequant(acc, row, col, out_dtype, bias)
    exp = ref.int8_mm_dequant(acc, row, col, out_dtype, bias)
    assert got.dtype == out_dtype
    assert torch.equal(got, exp)


@needs_native
def test_native_matmul_matches_reference() -> None:
    from bnb_kernels.backends.cpu import int8 as cpu

    g = torch.Generator().manual_seed(5)
    for M, N, K in [(1, 5, 3), (7, 9, 37), (33, 16, 128)]:
        A = torch.randint(-128, 128, (M, K), generator=g, dtype=torch.int8)
        B = torch.randint(-128, 128, (N, K), generator=g, dtype=torch.int8)
        assert torch.equal(cpu.int8_linear_matmul(A, B), ref.int8_linear_matmul(A, B))
        out = torch.empty(M, N, dtype=torch.int32)
        cpu.int8_linear_matmul_out(A, B, out)
        assert torch.equal(out, ref.int8_linear_matmul(A, B))


@needs_native
def test_dispatcher_picks_native_on_cpu_and_reproduces_fixtures(upstream_fixtures) -> None:
    from safetensors.torch import load_file

    assert selected_backend("int8_vectorwise_quant", "cpu") == "cpu"
    for name, t in (("linear8bit_t0", 0.0), ("linear8bit_t6", 6.0)):
        d = load_file(upstream_fixtures / f"{name}.safetensors")
        y = torch.ops.bitsandbytes.int8_linear_fused(
            d["input"], d["module.weight"], d["module.SCB"], d["module.bias"], t
        )
        assert torch.equal(y, d["expected_output"])


def test_double_quant_columns() -> None:
    A = _input(10, 20, torch.float16, 6, outliers=True)
    row_c, col_c, _row_s, col_s, cols = torch.ops.bitsandbytes.int8_double_quant(A, 6.0)
    assert cols.numel() > 0
    assert (col_c[:, cols] == 0).all() and (row_c[:, cols] == 0).all()
    x = A.float().masked_fill(A.float().abs() >= 6.0, 0)
    assert torch.equal(col_s, x.abs().amax(0))
    keep = torch.ones(20, dtype=torch.bool)
    keep[cols] = False
    deq = col_c.float()[:, keep] * col_s[keep] / 127
    assert (deq - x[:, keep]).abs().max() <= col_s.max() / 127


def test_fake_kernels_give_shapes() -> None:
    from torch._subclasses.fake_tensor import FakeTensorMode
    from torch.fx.experimental.symbolic_shapes import ShapeEnv

    with FakeTensorMode(shape_env=ShapeEnv()):
        A = torch.empty(2, 3, 40, dtype=torch.float16)
        codes, stats, cols = torch.ops.bitsandbytes.int8_vectorwise_quant(A, 0.0)
        assert codes.shape == (2, 3, 40) and codes.dtype == torch.int8 and stats.shape == (6,) and cols is None
        CB = torch.empty(24, 40, dtype=torch.int8)
        acc = torch.ops.bitsandbytes.int8_linear_matmul(codes, CB)
        assert acc.shape == (2, 3, 24) and acc.dtype == torch.int32
        y = torch.ops.bitsandbytes.int8_linear_fused(A, CB, torch.empty(24), None, 6.0)
        assert y.shape == (2, 3, 24) and y.dtype == torch.float16
        y = torch.ops.bitsandbytes.int8_scaled_mm(codes, CB, stats, torch.empty(24), None, torch.bfloat16)
        assert y.dtype == torch.bfloat16


def test_bad_input_to_ops() -> None:
    with pytest.raises((RuntimeError, ValueError)):
        torch.ops.bitsandbytes.int8_linear_fused(
            torch.randn(2, 8), torch.zeros(4, 9, dtype=torch.int8), torch.ones(4), None, 0.0
        )
