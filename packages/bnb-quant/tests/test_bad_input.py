"""Every public function rejects bad input with a TypeError/ValueError naming what it
expected: wrong dtype, unsupported block size, tensors on different devices, empty input,
unknown quant type or storage, mismatched absmax/out."""

from __future__ import annotations

import pytest
import torch

import bnb_quant as F
from bnb_quant import QuantState

A = torch.randn(4, 64)
META = torch.empty(4, 64, device="meta")  # a second device that every machine has


def _q8() -> tuple[torch.Tensor, QuantState]:
    return F.quantize_blockwise(A, blocksize=64)


def _q4() -> tuple[torch.Tensor, QuantState]:
    return F.quantize_4bit(A, blocksize=64, quant_type="nf4")


CASES = [
    # quantize_blockwise
    (lambda: F.quantize_blockwise(A.double()), TypeError, "float32, float16, bfloat16"),
    (lambda: F.quantize_blockwise(A.int()), TypeError, "dtype"),
    (lambda: F.quantize_blockwise([1.0, 2.0]), TypeError, "torch.Tensor"),
    (lambda: F.quantize_blockwise(A, blocksize=32), ValueError, "blocksize"),
    (lambda: F.quantize_blockwise(A, blocksize=100), ValueError, "blocksize"),
    (lambda: F.quantize_blockwise(torch.empty(0)), ValueError, "empty"),
    (lambda: F.quantize_blockwise(A, code=torch.zeros(16)), ValueError, "256"),
    (lambda: F.quantize_blockwise(A, code=torch.zeros(256, dtype=torch.float64)), TypeError, "code"),
    (lambda: F.quantize_blockwise(A, code=torch.zeros(256, device="meta")), ValueError, "one device"),
    (lambda: F.quantize_blockwise(A, out=torch.empty(4, 64)), TypeError, "out"),
    (lambda: F.quantize_blockwise(A, out=torch.empty(5, dtype=torch.uint8)), ValueError, "out"),
    (lambda: F.quantize_blockwise(A, absmax=torch.empty(3), blocksize=64), ValueError, "absmax"),
    # dequantize_blockwise
    (lambda: F.dequantize_blockwise(_q8()[0].float(), _q8()[1]), TypeError, "uint8"),
    (lambda: F.dequantize_blockwise(_q8()[0]), ValueError, "quant_state or absmax"),
    (lambda: F.dequantize_blockwise(_q8()[0], quant_state="state"), TypeError, "QuantState"),
    (lambda: F.dequantize_blockwise(_q8()[0], absmax=torch.ones(3), blocksize=64), ValueError, "absmax"),
    (lambda: F.dequantize_blockwise(_q8()[0], absmax=torch.ones(4), blocksize=48), ValueError, "blocksize"),
    (lambda: F.dequantize_blockwise(_q8()[0], _q8()[1], out=torch.empty(4, 64, dtype=torch.half)), TypeError, "out"),
    (lambda: F.dequantize_blockwise(_q8()[0], _q8()[1], out=torch.empty(3, 64)), ValueError, "out"),
    (lambda: F.dequantize_blockwise(_q8()[0], absmax=torch.ones(4, device="meta"), blocksize=64), ValueError, "device"),
    # quantize_4bit
    (lambda: F.quantize_4bit(A.double()), TypeError, "float32, float16, bfloat16"),
    (lambda: F.quantize_4bit(torch.empty(0, 3)), ValueError, "empty"),
    (lambda: F.quantize_4bit(A, blocksize=16), ValueError, "blocksize"),
    (lambda: F.quantize_4bit(A, quant_type="int4"), ValueError, "quant_type"),
    (lambda: F.quantize_4bit(A, quant_storage=torch.int32), ValueError, "quant_storage"),
    (lambda: F.quantize_4bit(A, absmax=torch.empty(4, device="meta")), ValueError, "one device"),
    (lambda: F.quantize_4bit(A, blocksize=64, absmax=torch.empty(5)), ValueError, "absmax"),
    (lambda: F.quantize_4bit(A, out=torch.empty(7, dtype=torch.uint8)), ValueError, "out"),
    (lambda: F.quantize_nf4(A.long()), TypeError, "dtype"),
    (lambda: F.quantize_fp4(A, blocksize=8), ValueError, "blocksize"),
    # dequantize_4bit
    (lambda: F.dequantize_4bit(_q4()[0].to(torch.int32), _q4()[1]), TypeError, "dtype"),
    (lambda: F.dequantize_4bit(_q4()[0]), ValueError, "quant_state, or both absmax and out"),
    (lambda: F.dequantize_4bit(_q4()[0], quant_state=[1, 2]), TypeError, "QuantState"),
    (lambda: F.dequantize_4bit(_q4()[0][:-1], _q4()[1]), ValueError, "bytes"),
    (lambda: F.dequantize_4bit(_q4()[0], absmax=torch.ones(3), out=torch.empty(4, 64)), ValueError, "absmax"),
    (lambda: F.dequantize_4bit(_q4()[0], _q4()[1], out=torch.empty(4, 64, dtype=torch.half)), TypeError, "out"),
    (lambda: F.dequantize_4bit(_q4()[0], _q4()[1], out=torch.empty(64, 4)), ValueError, "out must have shape"),
    (
        lambda: F.dequantize_4bit(_q4()[0], absmax=torch.ones(4), out=torch.empty(4, 64), quant_type="q4"),
        ValueError,
        "quant_type",
    ),
    (
        lambda: F.dequantize_nf4(_q4()[0], absmax=torch.ones(4), out=torch.empty(4, 64), blocksize=100),
        ValueError,
        "blocksize",
    ),
    (
        lambda: F.dequantize_fp4(_q4()[0], absmax=torch.ones(4, device="meta"), out=torch.empty(4, 64)),
        ValueError,
        "device",
    ),
    # codebooks
    (lambda: F.get_4bit_type("fp8"), ValueError, "typename"),
    (lambda: F.create_dynamic_map(max_exponent_bits=0), ValueError, "max_exponent_bits"),
    (lambda: F.create_fp8_map(True, 5, 5, 8), ValueError, "exponent_bits"),
]


@pytest.mark.parametrize(("call", "error", "match"), CASES, ids=[f"case{i}" for i in range(len(CASES))])
def test_bad_input_raises(call, error: type[Exception], match: str) -> None:
    with pytest.raises(error, match=match):
        call()


def test_state_missing_shape_or_dtype() -> None:
    packed, state = _q4()
    state.shape = None
    with pytest.raises(ValueError, match="shape and dtype"):
        F.dequantize_4bit(packed, state)
    packed, state = _q4()
    state.dtype = torch.int8
    with pytest.raises(ValueError, match="dtype"):
        F.dequantize_4bit(packed, state)
