"""Params4bit: quantize on first move, from_prequantized, copies, pickle, bad input."""

from __future__ import annotations

import copy
import pickle

import pytest
import torch

import bnb_quant.functional as F
from bnb_nn import Params4bit
from bnb_quant import QuantStateError


def test_quantizes_on_first_move_only() -> None:
    w = torch.randn(64, 96, dtype=torch.bfloat16)
    p = Params4bit(w.clone(), quant_type="nf4", blocksize=128, compress_statistics=False)
    assert not p.bnb_quantized and p.quant_state is None and p.dtype == torch.bfloat16
    q = p.to("cpu")
    assert q is p and p.bnb_quantized and p.shape == (64 * 96 // 2, 1) and p.dtype == torch.uint8
    assert p.quant_state.blocksize == 128 and p.quant_state.shape == (64, 96)
    before = p.clone()
    again = p.cpu()  # already quantized: moved, not quantized twice
    assert isinstance(again, Params4bit) and torch.equal(again, before) and again.quant_state is p.quant_state
    deq = F.dequantize_4bit(p, p.quant_state)
    assert ((deq.float() - w.float()).norm() / w.float().norm()).item() < 0.11


def test_from_prequantized_roundtrip() -> None:
    w = torch.randn(32, 64)
    q, state = F.quantize_4bit(w, blocksize=64, quant_type="fp4", compress_statistics=True)
    p = Params4bit.from_prequantized(q, state.as_dict(packed=True), device="cpu")
    assert p.bnb_quantized and p.quant_type == "fp4" and p.compress_statistics and p.blocksize == 64
    assert torch.equal(F.dequantize_4bit(p, p.quant_state), F.dequantize_4bit(q, state))
    with pytest.raises(ValueError, match="bytes"):
        Params4bit.from_prequantized(q[:-2], state.as_dict(packed=True), device="cpu")
    bad = dict(state.as_dict(packed=True))
    del bad["absmax"]
    with pytest.raises(QuantStateError):
        Params4bit.from_prequantized(q, bad, device="cpu")


def test_deepcopy_copy_pickle_keep_state() -> None:
    p = Params4bit(torch.randn(16, 32), quant_type="nf4").cpu()
    for other in (copy.deepcopy(p), pickle.loads(pickle.dumps(p)), copy.copy(p)):
        assert isinstance(other, Params4bit)
        assert other.bnb_quantized and other.quant_type == "nf4" and other.blocksize == p.blocksize
        assert other.quant_state == p.quant_state
        assert torch.equal(other, p)
    assert copy.deepcopy(p).quant_state is not p.quant_state
    unq = Params4bit(torch.randn(4, 8), quant_type="fp4")
    restored = pickle.loads(pickle.dumps(unq))
    assert not restored.bnb_quantized and torch.equal(restored, unq)


def test_split_and_chunk_keep_attributes() -> None:
    p = Params4bit(torch.randn(16, 32), quant_type="nf4").cpu()
    for parts in (torch.split(p, [100, 156]), torch.chunk(p, 4), p.split(64)):
        assert all(isinstance(x, Params4bit) and x.quant_state is p.quant_state for x in parts)
    # other ops give plain tensors, as the reference release's Parameter does
    assert type(p + 0) is torch.Tensor


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="quant_type"):
        Params4bit(torch.randn(2, 2), quant_type="q4")
    with pytest.raises(ValueError, match="blocksize"):
        Params4bit(torch.randn(2, 2), blocksize=100)
    with pytest.raises(ValueError, match="quant_storage"):
        Params4bit(torch.randn(2, 2), quant_storage=torch.int32)
    with pytest.raises(TypeError, match="floating point"):
        Params4bit(torch.zeros(4, 4, dtype=torch.int64)).cpu()
