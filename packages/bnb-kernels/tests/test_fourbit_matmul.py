"""4-bit matmul ops: the reference against an independent dense computation, the native CPU
kernel (every path) against the reference, the ops through the dispatcher, bad input."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from bnb_kernels import _native
from bnb_kernels.backends.cpu import fourbit_matmul as cpu
from bnb_kernels.backends.reference import fourbit_matmul as ref
from bnb_kernels.codebooks import fourbit_table

DTYPES = (torch.float32, torch.float16, torch.bfloat16)
needs_native = pytest.mark.skipif(not _native.available(), reason="native CPU library not built")


def _tol(dtype: torch.dtype) -> float:
    return {torch.float32: 1e-5, torch.float16: 2e-3, torch.bfloat16: 1.2e-2}[dtype]


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


# An 8-bit codebook for the nested absmax (any sorted 256 values serve these tests).
CODE8 = torch.linspace(-1.0, 1.0, 256)


def _weight(N, K, dtype, blocksize, quant_type, nested, storage=torch.uint8, seed=0):
    """Quantize with the ops alone (these tests must not need bnb-quant). Returns the dense
    weight, the packed weight, the flat float32 absmax and the gemm_4bit absmax arguments."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(N, K, generator=g).to(dtype)
    q, absmax = torch.ops.bitsandbytes.quantize_4bit(W, blocksize, quant_type, storage)
    if nested:
        offset = absmax.mean()
        a8, absmax2 = torch.ops.bitsandbytes.quantize_blockwise(absmax - offset, CODE8, 256)
        flat = ref.decode_nested_absmax(a8, absmax2, CODE8, offset)
        extra = (absmax2, a8, CODE8, offset)
    else:
        flat = absmax
        extra = (absmax, None, None, None)
    return W, q, flat, extra


def test_reference_matches_dense_dequantize_then_matmul() -> None:
    _, q, flat, extra = _weight(48, 160, torch.float32, 64, "nf4", True)
    x = torch.randn(5, 160)
    bias = torch.randn(48)
    got = ref.gemm_4bit(x, q, [48, 160], extra[0], 64, "nf4", bias, *extra[1:])
    W = torch.ops.bitsandbytes.dequantize_4bit(q, flat, 64, "nf4", [48, 160], torch.float32)  # an independent path
    expected = x @ W.T + bias
    assert _rel(got, expected) < 1e-6


def test_reference_gemv_uses_the_given_codebook() -> None:
    _, q, flat, _ = _weight(32, 64, torch.float16, 32, "fp4", False)
    x = torch.randn(1, 64, dtype=torch.float16)
    got = ref.gemv_4bit(x, q, [32, 64], flat, fourbit_table("fp4"), 32)
    W = torch.ops.bitsandbytes.dequantize_4bit(q, flat, 32, "fp4", [32, 64], torch.float16)
    assert torch.equal(got, torch.nn.functional.linear(x, W))


@needs_native
@pytest.mark.parametrize("path", ["auto", "scalar", "avx2", "avx512"])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize(
    ("N", "K", "M", "blocksize", "nested", "quant_type"),
    [
        (64, 128, 1, 64, False, "nf4"),
        (70, 256, 2, 32, True, "fp4"),
        (33, 130, 5, 64, False, "nf4"),  # K not a multiple of the block size
        (48, 96, 7, 128, True, "nf4"),  # blocks cross rows
        (20, 1000, 3, 4096, False, "fp4"),  # one block spans many rows
        (16, 9, 2, 32, False, "nf4"),  # odd K: rows do not start on a byte
        (5, 512, 9, 256, True, "nf4"),
    ],
)
def test_cpu_native_matches_reference(path, dtype, N, K, M, blocksize, nested, quant_type) -> None:
    _, q, _, extra = _weight(N, K, dtype, blocksize, quant_type, nested, seed=N + K)
    x = torch.randn(M, K).to(dtype)
    bias = torch.randn(N).to(dtype)
    expected = ref.gemm_4bit(x, q, [N, K], extra[0], blocksize, quant_type, bias, *extra[1:])
    got = cpu.run(x, q, [N, K], extra[0], fourbit_table(quant_type), blocksize, bias, *extra[1:], path=path)
    assert got.dtype == dtype and got.shape == (M, N)
    assert torch.isfinite(got).all()
    assert _rel(got, expected) < _tol(dtype)


@needs_native
@settings(max_examples=15, deadline=None)
@given(
    N=st.integers(1, 40),
    Kh=st.integers(1, 150),
    M=st.integers(1, 9),
    blocksize=st.sampled_from([32, 64, 128, 256, 1024]),
    nested=st.booleans(),
    dtype=st.sampled_from(DTYPES),
    storage=st.sampled_from([torch.uint8, torch.float16, torch.bfloat16, torch.float32]),
    seed=st.integers(0, 1000),
)
def test_cpu_native_random_shapes(N, Kh, M, blocksize, nested, dtype, storage, seed) -> None:
    K = 2 * Kh
    if (N * K // 2) % storage.itemsize:
        storage = torch.uint8
    _, q, _, extra = _weight(N, K, dtype, blocksize, "nf4", nested, storage, seed)
    x = torch.randn(M, K, generator=torch.Generator().manual_seed(seed + 1)).to(dtype)
    expected = ref.gemm_4bit(x, q, [N, K], extra[0], blocksize, "nf4", None, *extra[1:])
    got = torch.ops.bitsandbytes.gemm_4bit(x, q, [N, K], extra[0], blocksize, "nf4", None, *extra[1:])
    assert _rel(got, expected) < _tol(dtype)


@needs_native
def test_ops_dispatch_to_native_on_cpu_and_keep_shapes() -> None:
    from bnb_kernels import selected_backend

    assert selected_backend("gemm_4bit", "cpu") == "cpu"
    assert selected_backend("gemv_4bit", "cpu") == "cpu"
    _, q, absmax, _ = _weight(24, 64, torch.bfloat16, 64, "nf4", False)
    code = fourbit_table("nf4")
    x = torch.randn(2, 3, 64, dtype=torch.bfloat16)
    out = torch.ops.bitsandbytes.gemm_4bit(x, q, [24, 64], absmax, 64, "nf4")
    assert out.shape == (2, 3, 24)
    v = torch.randn(1, 1, 64, dtype=torch.bfloat16)
    g = torch.ops.bitsandbytes.gemv_4bit(v, q, [24, 64], absmax, code, 64)
    assert g.shape == (1, 1, 24)
    expected = ref.gemv_4bit(v, q, [24, 64], absmax, code, 64)
    assert _rel(g, expected) < _tol(torch.bfloat16)
    out2 = torch.full((1, 1, 24), float("nan"), dtype=torch.bfloat16)
    torch.ops.bitsandbytes.gemv_4bit.out(v, q, [24, 64], absmax, code, 64, out=out2)
    assert torch.equal(out2, g)


def test_fake_kernels_give_shapes() -> None:
    with torch._subclasses.fake_tensor.FakeTensorMode():
        x = torch.empty(3, 4, 64, dtype=torch.float16)
        B = torch.empty(24 * 64 // 2, 1, dtype=torch.uint8)
        absmax = torch.empty(24, dtype=torch.float32)
        out = torch.ops.bitsandbytes.gemm_4bit(x, B, [24, 64], absmax, 64, "nf4")
        assert out.shape == (3, 4, 24) and out.dtype == torch.float16


@pytest.mark.parametrize("backend", ["reference", "cpu"])
def test_bad_input_is_rejected(backend: str) -> None:
    if backend == "cpu" and not _native.available():
        pytest.skip("native CPU library not built")
    fn = ref.gemm_4bit if backend == "reference" else cpu.gemm_4bit
    _, q, absmax, _ = _weight(16, 64, torch.float32, 64, "nf4", False)
    x = torch.randn(2, 64)
    with pytest.raises(ValueError, match="features"):
        fn(torch.randn(2, 63), q, [16, 64], absmax, 64, "nf4")
    with pytest.raises(ValueError, match="blocksize"):
        fn(x, q, [16, 64], absmax, 48, "nf4")
    with pytest.raises(ValueError, match="quant_type"):
        fn(x, q, [16, 64], absmax, 64, "int4")
    with pytest.raises(ValueError, match="bytes"):
        fn(x, q[:-1], [16, 64], absmax, 64, "nf4")
    with pytest.raises(ValueError, match="absmax"):
        fn(x, q, [16, 64], absmax[:-1], 64, "nf4")
    with pytest.raises(TypeError, match="A must be"):
        fn(x.to(torch.int32), q, [16, 64], absmax, 64, "nf4")
    with pytest.raises(ValueError, match="bias"):
        fn(x, q, [16, 64], absmax, 64, "nf4", torch.zeros(15))
    if torch.device("meta") != x.device:
        with pytest.raises(ValueError, match="one device"):
            fn(x, q, [16, 64], absmax.to("meta"), 64, "nf4")
