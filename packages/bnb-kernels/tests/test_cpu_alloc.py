"""Huge-page backed CPU outputs: ordinary tensors to every user, the dequantize kernels write
them exactly as they write ``torch.empty`` outputs, and a mapping is reused only once no
tensor uses it."""

from __future__ import annotations

import gc
import pickle
import weakref

import pytest
import torch

from bnb_kernels import _native
from bnb_kernels.backends.cpu import _alloc
from bnb_kernels.backends.reference import quant as ref

reuse = pytest.mark.skipif(not _alloc._REFCOUNTS_EXACT, reason="no output cache on a free-threaded Python")


@pytest.fixture
def always_huge(monkeypatch):
    monkeypatch.setattr(_alloc, "HUGE_OUTPUT_BYTES", 0)
    monkeypatch.delenv(_alloc.CACHE_ENV, raising=False)
    _alloc.release_cached_outputs()
    yield
    _alloc.release_cached_outputs()


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


@reuse
def test_huge_output_memory_is_released(always_huge):
    t = _alloc.empty_output((1 << 20,), torch.float32)
    ref_to_storage = weakref.ref(t.untyped_storage())
    assert _alloc.cached_output_bytes() == (4 << 20, 0)
    del t
    gc.collect()
    assert ref_to_storage() is None
    assert _alloc.cached_output_bytes() == (0, 4 << 20)  # kept for the next output of that size
    assert _alloc.release_cached_outputs() == 4 << 20
    assert _alloc.cached_output_bytes() == (0, 0)


@reuse
def test_a_freed_output_is_reused_and_a_live_one_never(always_huge):
    n = 1 << 20
    t = _alloc.empty_output((n,), torch.float32)
    ptr = t.data_ptr()
    del t
    again = _alloc.empty_output((n - 100,), torch.float32)  # same size rounded to 2 MiB
    assert again.data_ptr() == ptr
    other = _alloc.empty_output((n,), torch.float32)  # `again` is alive: a new mapping
    assert other.data_ptr() != ptr
    again.fill_(1.0)
    other.fill_(2.0)
    view = again[10:20]  # a view keeps the storage, and so the mapping, in use
    del again
    third = _alloc.empty_output((n,), torch.float32)
    assert third.data_ptr() not in (ptr, other.data_ptr())
    third.fill_(3.0)
    assert torch.equal(view, torch.ones(10)) and bool((other == 2.0).all())
    third_ptr = third.data_ptr()
    del view, third
    assert _alloc.empty_output((n,), torch.float32).data_ptr() in (ptr, third_ptr)


@reuse
def test_unused_outputs_kept_up_to_the_limit(always_huge, monkeypatch):
    monkeypatch.setenv(_alloc.CACHE_ENV, "4")
    ts = [_alloc.empty_output((1 << 20,), torch.float32) for _ in range(3)]  # 4 MiB each, all in use
    assert _alloc.cached_output_bytes() == (12 << 20, 0)
    del ts
    assert _alloc.cached_output_bytes() == (0, 12 << 20)  # trimmed at the next output
    t = _alloc.empty_output((1 << 20,), torch.float32)  # reuses one, keeps at most 4 MiB unused
    assert _alloc.cached_output_bytes() == (4 << 20, 4 << 20)
    monkeypatch.setenv(_alloc.CACHE_ENV, "0")
    del t
    u = _alloc.empty_output((2 << 20,), torch.float32)  # 0: every unused mapping dropped at the next output
    assert _alloc.cached_output_bytes() == (8 << 20, 0)
    del u
    for bad in ("many", "-1", "inf"):
        monkeypatch.setenv(_alloc.CACHE_ENV, bad)
        with pytest.raises(ValueError, match=_alloc.CACHE_ENV):
            _alloc.empty_output((1 << 20,), torch.float32)


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


@reuse
def test_no_cache_means_a_fresh_mapping_every_time(always_huge, monkeypatch):
    real = _alloc.mmap
    created = []

    class CountingMmap:  # the mmap module, counting the mappings made
        def __getattr__(self, name):
            return getattr(real, name)

        def mmap(self, *args, **kwargs):
            created.append(args[1])
            return real.mmap(*args, **kwargs)

    monkeypatch.setattr(_alloc, "mmap", CountingMmap())
    for limit, fresh in (("0", 3), ("256", 1)):
        monkeypatch.setenv(_alloc.CACHE_ENV, limit)
        created.clear()
        for _ in range(3):
            t = _alloc.empty_output((1 << 20,), torch.float32)
            t.fill_(1.0)
            del t
        assert len(created) == fresh, limit
        _alloc.release_cached_outputs()
