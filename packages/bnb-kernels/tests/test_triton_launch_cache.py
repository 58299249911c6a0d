"""LaunchCache: Triton's launch the first time for a specialization, the compiled kernel
directly from then on, and Triton's launch again whenever Triton would specialize anew."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")


class _FakeKernel:
    arg_names = ("x", "n", "BS")

    def __init__(self, calls: list) -> None:
        self.calls = calls

    def __getitem__(self, grid: tuple):
        def run(*args, **kw):
            self.calls.append(("triton", grid, args, kw))
            return "compiled"

        return run


def test_launch_cache_goes_direct_only_for_a_seen_specialization(monkeypatch: pytest.MonkeyPatch) -> None:
    from bnb_kernels.backends.triton import _common as C

    calls: list = []
    monkeypatch.setattr(C, "direct_launch", lambda ck, grid, stream, args: calls.append(("direct", ck, grid, args)))
    monkeypatch.setattr(C, "current_stream", lambda index: 7)
    monkeypatch.setattr(C, "_is_current", lambda device: True)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: 0)
    kernel = _FakeKernel(calls)
    cache = C.LaunchCache()
    cache.direct = True
    device = torch.device("cuda")
    x = torch.zeros(64)
    consts = {"BS": 64, "num_warps": 4}

    cache(kernel, (4,), (x, 32), consts, device)
    cache(kernel, (4,), (x, 32), consts, device)
    assert calls[0][0] == "triton"
    assert calls[1] == ("direct", "compiled", (4,), (x.data_ptr(), 32, 64))
    # what Triton specializes on changes: its own launch again
    for args, kw, grid in [
        ((x, 33), consts, (4,)),  # not a multiple of 16
        ((x, 1), consts, (4,)),  # equal to 1
        ((x[1:], 32), consts, (4,)),  # not 16-byte aligned
        ((x.half(), 32), consts, (4,)),  # another dtype
        ((x, 32), {"BS": 128, "num_warps": 4}, (4,)),  # another constexpr
        ((x, 32), {"BS": 64, "num_warps": 8}, (4,)),  # another launch option
        ((x, 32), consts, (8,)),  # another grid
    ]:
        n = len(calls)
        cache(kernel, grid, args, kw, device)
        assert calls[n][0] == "triton", (args, kw, grid)
    # a constexpr left to its default: never launched directly (its value is unknown here)
    n = len(calls)
    cache(kernel, (2,), (x, 32), {"num_warps": 4}, device)
    cache(kernel, (2,), (x, 32), {"num_warps": 4}, device)
    assert [c[0] for c in calls[n:]] == ["triton", "triton"]


def test_launch_cache_without_direct_launches_always_uses_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    from bnb_kernels.backends.triton import _common as C

    calls: list = []
    monkeypatch.setattr(C, "direct_launch", lambda *a: calls.append("direct"))
    cache = C.LaunchCache()
    cache.direct = False
    kernel = _FakeKernel(calls)
    for _ in range(3):
        cache(kernel, (1,), (torch.zeros(16), 16), {"BS": 64}, torch.device("cpu"))
    assert [c[0] for c in calls] == ["triton"] * 3
