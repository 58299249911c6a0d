"""Huge-page backed CPU outputs: ordinary tensors to every user, and the dequantize kernels
write them exactly as they write ``torch.empty`` outputs."""

from __future__ import annotations

import gc
import pickle
import weakref

import pytest
import torch

from bnb_kernels import _native
from bnb_kernels.backends.cpu import _alloc
from bnb_kernels.backends.reference import quant as ref


@pytest.fixture
def always_huge(monkeypatch):
    monkeypatch.setattr(_alloc, "HUGE_OUTPUT_BYTES", 0)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16, torch.uint8])
@pytest.mark.parametrize("shape", [(1,), (3, 5), (2, 3, 7), (1000, 33)])
def test_huge_output_is_an_ordinary_tensor(always_huge, shape, dtype):
    t = _alloc.empty_output(shape, dtype)
    assert t.shape == shape and t.dtype == dtype and t.device.type == "cpu" and t.is_contiguous()
    src = torch.randint(0, 100, shape).to(dtype)
    t.copy_(src)
    assert torch.equal(t, src)
    assert torch.equal(pickle.loads(pickle.dumps(t)), src)
    assert torch.equal(t.clone() * 1, src * 1)


def test_small_outputs_use_the_torch_allocator():
    t = _alloc.empty_output((4, 4), torch.float32)
    assert t.untyped_storage().resizable()


def test_huge_output_memory_is_released(always_huge):
    t = _alloc.empty_output((1 << 20,), torch.float32)
    ref_to_storage = weakref.ref(t.untyped_storage())
    del t
    gc.collect()
    assert ref_to_storage() is None


@pytest.mark.skipif(not _native.available(), reason="native CPU library not built")
@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16, torch.float16])
def test_dequantize_into_huge_outputs_matches_reference(always_huge, dtype):
    from bnb_kernels.backends.cpu import quant as cpu

    g = torch.Generator().manual_seed(7)
    A = torch.randn(3, 1000, generator=g).to(dtype)
    code = torch.linspace(-1.0, 1.0, 256)  # any sorted 256-entry code
    q8, absmax8 = ref.quantize_blockwise(A, code, 256)
    got = cpu.dequantize_blockwise_impl(q8, absmax8, code, 256, dtype)
    assert torch.equal(got, ref.dequantize_blockwise(q8, absmax8, code, 256, dtype))
    q4, absmax4 = ref.quantize_4bit(A, 64, "nf4", torch.uint8)
    got4 = cpu.dequantize_4bit_impl(q4, absmax4, 64, "nf4", A.shape, dtype)
    assert torch.equal(got4, ref.dequantize_4bit(q4, absmax4, 64, "nf4", A.shape, dtype))
