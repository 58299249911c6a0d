"""The functional API: round trips and their error bounds, nested statistics, quant_storage,
shapes and dtypes, the out=/absmax= arguments, and non-finite input on both CPU backends."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

import bnb_quant as F
from bnb_kernels import _native
from bnb_kernels._registry import FORCE_ENV, reset_selection, selected_backend

BACKENDS = ["reference"] + (["cpu"] if _native.available() else [])


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    monkeypatch.setenv(FORCE_ENV, request.param)
    reset_selection()
    assert selected_backend("quantize_4bit", "cpu") == request.param
    yield request.param
    monkeypatch.delenv(FORCE_ENV)
    reset_selection()


def _randn(*shape: int, dtype: torch.dtype = torch.float32, seed: int = 0) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)).to(dtype)


def _rel_error(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.float(), b.float()
    return float((a - b).norm() / a.norm())


# --------------------------------------------------------------------------------------
# Round trips
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("quant_type", "blocksize", "low", "high"),
    [("nf4", 64, 0.085, 0.10), ("nf4", 32, 0.08, 0.095), ("nf4", 4096, 0.10, 0.12), ("fp4", 64, 0.11, 0.13)],
)
def test_4bit_round_trip_error(quant_type: str, blocksize: int, low: float, high: float) -> None:
    A = _randn(512, 512)
    packed, state = F.quantize_4bit(A, blocksize=blocksize, quant_type=quant_type)
    assert low < _rel_error(A, F.dequantize_4bit(packed, state)) < high


@pytest.mark.parametrize(("blocksize", "high"), [(64, 0.011), (256, 0.012), (4096, 0.014)])
def test_blockwise_round_trip_error(blocksize: int, high: float) -> None:
    A = _randn(512, 512)
    codes, state = F.quantize_blockwise(A, blocksize=blocksize)
    assert _rel_error(A, F.dequantize_blockwise(codes, state)) < high


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("shape", [(1,), (129,), (3, 5, 67), (2, 130)])
def test_shapes_and_dtypes_round_trip(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    A = _randn(*shape, dtype=dtype)
    codes, state8 = F.quantize_blockwise(A, blocksize=64)
    assert codes.shape == A.shape and codes.dtype == torch.uint8
    assert state8.absmax.shape == (-(A.numel() // -64),)
    out8 = F.dequantize_blockwise(codes, state8)
    assert out8.shape == A.shape and out8.dtype == dtype
    packed, state4 = F.quantize_4bit(A, blocksize=64, quant_type="nf4")
    assert packed.shape == ((A.numel() + 1) // 2, 1) and packed.dtype == torch.uint8
    assert state4.shape == A.shape and state4.dtype == dtype
    out4 = F.dequantize_4bit(packed, state4)
    assert out4.shape == A.shape and out4.dtype == dtype
    assert (out4.float() - A.float()).abs().max() <= A.float().abs().max() * 0.2


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_compress_statistics(quant_type: str) -> None:
    A = _randn(300, 64, dtype=torch.bfloat16)
    packed, plain = F.quantize_4bit(A, blocksize=64, quant_type=quant_type)
    packed_n, nested = F.quantize_4bit(A, blocksize=64, quant_type=quant_type, compress_statistics=True)
    assert torch.equal(packed, packed_n)
    assert nested.nested and nested.absmax.dtype == torch.uint8 and nested.absmax.shape == plain.absmax.shape
    assert nested.state2.blocksize == 256 and nested.state2.absmax.shape == (2,)
    assert torch.isclose(nested.offset, plain.absmax.mean())
    a, b = F.dequantize_4bit(packed, plain), F.dequantize_4bit(packed_n, nested)
    assert _rel_error(a, b) < 0.01


def test_nested_blockwise() -> None:
    A = _randn(4096 * 3 + 5)
    codes, plain = F.quantize_blockwise(A, blocksize=64)
    codes_n, nested = F.quantize_blockwise(A, blocksize=64, nested=True)
    assert torch.equal(codes, codes_n)
    assert nested.nested and nested.state2.blocksize == 64 and nested.absmax.dtype == torch.uint8
    assert _rel_error(F.dequantize_blockwise(codes, plain), F.dequantize_blockwise(codes_n, nested)) < 0.01


@pytest.mark.parametrize("quant_storage", [torch.uint8, torch.float16, torch.bfloat16, torch.float32])
def test_quant_storage(quant_storage: torch.dtype) -> None:
    A = _randn(16, 64, dtype=torch.float16)
    ref_packed, ref_state = F.quantize_4bit(A, blocksize=64, quant_type="nf4")
    packed, state = F.quantize_4bit(A, blocksize=64, quant_type="nf4", quant_storage=quant_storage)
    assert packed.dtype == quant_storage and packed.shape == (512 // quant_storage.itemsize, 1)
    assert torch.equal(packed.reshape(-1).view(torch.uint8), ref_packed.reshape(-1))
    assert torch.equal(F.dequantize_4bit(packed, state), F.dequantize_4bit(ref_packed, ref_state))


def test_odd_size_and_storage_that_does_not_divide() -> None:
    A = _randn(7)
    packed, state = F.quantize_4bit(A, blocksize=64)
    assert packed.shape == (4, 1)
    assert F.dequantize_4bit(packed, state).shape == (7,)
    with pytest.raises(ValueError, match="quant_storage"):
        F.quantize_4bit(_randn(5), blocksize=64, quant_storage=torch.float32)


def test_out_and_absmax_arguments() -> None:
    A = _randn(3, 128)
    out = torch.empty(3, 128, dtype=torch.uint8)
    absmax = torch.empty(6)
    codes, state = F.quantize_blockwise(A, absmax=absmax, out=out, blocksize=64)
    assert codes is out and state.absmax is absmax
    assert torch.equal(codes, F.quantize_blockwise(A, blocksize=64)[0])
    deq = torch.empty(3, 128)
    assert F.dequantize_blockwise(codes, state, out=deq) is deq
    assert torch.equal(deq, F.dequantize_blockwise(codes, state))
    assert torch.equal(F.dequantize_blockwise(codes, absmax=absmax, blocksize=64), deq)
    packed, state4 = F.quantize_4bit(A, blocksize=64, quant_type="nf4")
    out4 = torch.empty(3, 128)
    assert F.dequantize_4bit(packed, state4, out=out4) is out4
    assert torch.equal(F.dequantize_4bit(packed, absmax=state4.absmax, out=torch.empty(3, 128), quant_type="nf4"), out4)


def test_nf4_fp4_shortcuts() -> None:
    A = _randn(4, 64)
    for quantize, dequantize, quant_type in (
        (F.quantize_nf4, F.dequantize_nf4, "nf4"),
        (F.quantize_fp4, F.dequantize_fp4, "fp4"),
    ):
        packed, state = quantize(A, blocksize=64)
        assert state.quant_type == quant_type
        assert torch.equal(packed, F.quantize_4bit(A, blocksize=64, quant_type=quant_type)[0])
        assert torch.equal(dequantize(packed, state), F.dequantize_4bit(packed, state))


# --------------------------------------------------------------------------------------
# Non-finite input (README): a NaN block -> absmax NaN and NaN out; other blocks unaffected
# --------------------------------------------------------------------------------------


def test_nan_and_inf_blocks(backend: str) -> None:
    A = _randn(4, 64)
    clean = A.clone()
    A[1, 3] = float("nan")
    A[2, 9] = float("inf")
    A[3] = 0.0
    codes, state = F.quantize_blockwise(A, blocksize=64)
    out = F.dequantize_blockwise(codes, state)
    assert state.absmax[1].isnan() and state.absmax[2].isinf() and state.absmax[3] == 0
    assert out[1].isnan().all() and (out[3] == 0).all() and not out[2].isfinite().all()
    assert torch.equal(codes[0], F.quantize_blockwise(clean[0], blocksize=64)[0])
    assert torch.equal(out[0], F.dequantize_blockwise(*F.quantize_blockwise(clean[0], blocksize=64)))
    for quant_type in ("nf4", "fp4"):
        packed, state4 = F.quantize_4bit(A, blocksize=64, quant_type=quant_type)
        out4 = F.dequantize_4bit(packed, state4)
        assert state4.absmax[1].isnan() and out4[1].isnan().all() and (out4[3] == 0).all()
        first, _ = F.quantize_4bit(clean[:1], blocksize=64, quant_type=quant_type)
        assert torch.equal(packed[:32], first)
