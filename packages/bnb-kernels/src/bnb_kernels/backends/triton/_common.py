"""Helpers shared by the Triton kernel families: import guard, availability, device checks.

Triton kernels run on CUDA GPUs. Under ``TRITON_INTERPRET=1`` (set before Triton is
imported) the same kernels run on CPU tensors through Triton's interpreter; the tests use
that to check the kernel logic on machines without a GPU.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor

import torch

try:  # Triton ships with torch on Linux x86-64 only.
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - depends on the platform
    triton = None  # type: ignore[assignment]
    tl = None  # type: ignore[assignment]
    HAS_TRITON = False

__all__ = [
    "HAS_TRITON",
    "available",
    "check_device",
    "compile_ahead",
    "compile_threads",
    "current_stream",
    "device_guard",
    "direct_launch",
    "direct_launch_supported",
    "interpreting",
    "tl",
    "triton",
]


def interpreting() -> bool:
    """True when Triton runs kernels in its CPU interpreter (``TRITON_INTERPRET=1``)."""
    return os.environ.get("TRITON_INTERPRET", "0") not in ("", "0")


COMPILE_THREADS_ENV = "BNB_TRITON_COMPILE_THREADS"


def compile_threads() -> int:
    """Threads that compile a shape's candidate kernels ahead of their first timing
    (``BNB_TRITON_COMPILE_THREADS``; default: the CPU count, at most 8)."""
    value = os.environ.get(COMPILE_THREADS_ENV, "")
    if value.strip():
        try:
            return max(1, int(value))
        except ValueError:
            raise ValueError(f"{COMPILE_THREADS_ENV} must be a whole number of threads, got {value!r}") from None
    return min(8, os.cpu_count() or 1)


def compile_ahead(
    device: torch.device | None, first: Sequence[Callable[[], None]], rest: Sequence[Callable[[], None]]
) -> None:
    """Run compile-only calls (kernel warm-ups) before a shape's candidates are timed: ``first``
    one after another (Triton builds a kernel function's caches on its first compile), then
    ``rest`` on up to :func:`compile_threads` threads, since Triton's compiler spends most of
    its time outside the GIL (LLVM, ptxas). Each runs with ``device`` current: a worker thread
    starts on the default device. A call that raises is skipped; its kernel compiles (and
    fails) again at its first launch, where the caller's timing loop skips it. Nothing runs
    with one thread or fewer than two calls: the first launches compile as before."""
    threads = compile_threads()
    if threads < 2 or len(first) + len(rest) < 2:
        return

    def run(call: Callable[[], None]) -> None:
        try:
            with device_guard(device) if device is not None else contextlib.nullcontext():
                call()
        except Exception:
            pass

    for call in first:
        run(call)
    if rest:
        with ThreadPoolExecutor(min(threads, len(rest))) as pool:
            list(pool.map(run, rest))


def available() -> bool:
    """The Triton backend serves CUDA devices when Triton imports and CUDA is usable."""
    return HAS_TRITON and torch.cuda.is_available()


def check_device(name: str, t: torch.Tensor, device: torch.device | None = None) -> None:
    """Raise ValueError unless ``t`` is on a device these kernels can run on (and on ``device``)."""
    if device is not None and t.device != device:
        raise ValueError(f"{name} must be on {device} like the other inputs, got {t.device}")
    if t.device.type == "cuda":
        return
    if t.device.type == "cpu" and interpreting():
        return
    raise ValueError(f"{name} must be a CUDA tensor for the Triton backend, got device {t.device}")


@contextlib.contextmanager
def device_guard(device: torch.device) -> Iterator[None]:
    """Make ``device`` current while launching (Triton launches on the current CUDA device)."""
    if device.type == "cuda" and device.index is not None and device.index != torch.cuda.current_device():
        with torch.cuda.device(device):
            yield
    else:
        yield


def direct_launch_supported() -> bool:
    """Whether :func:`direct_launch` works with this Triton (>= 3.4: the launcher takes every
    bound argument, constexprs included) and is not switched off (``BNB_TRITON_FAST_LAUNCH=0``)."""
    if not HAS_TRITON or interpreting() or os.environ.get("BNB_TRITON_FAST_LAUNCH", "1") in ("0", ""):
        return False
    try:
        from triton import knobs  # noqa: F401
    except ImportError:
        return False
    return True


_RUNTIME: list = []  # triton.knobs.runtime, looked up once
_STREAM_GETTER: list = []  # the driver's current-stream getter, looked up once


def current_stream(index: int) -> int:
    """Triton's handle of the current CUDA stream of device ``index`` (what a direct launch
    takes as its stream)."""
    if not _STREAM_GETTER:
        from triton.runtime import driver

        _STREAM_GETTER.append(driver.active.get_current_stream)
    return _STREAM_GETTER[0](index)


def _runtime():
    from triton import knobs

    _RUNTIME.append(knobs.runtime)
    return knobs.runtime


def direct_launch(ck, grid: tuple, stream: int, args: tuple) -> None:
    """Launch the already compiled kernel ``ck`` as ``JITFunction.run`` does after binding,
    specialization and cache lookup (most of a launch's host time). ``args``: every argument
    of the kernel in signature order, constexprs included; integers and pointer alignments
    must be those ``ck`` was compiled for (the caller keeps them fixed)."""
    rt = _RUNTIME[0] if _RUNTIME else _runtime()
    g1 = grid[1] if len(grid) > 1 else 1
    g2 = grid[2] if len(grid) > 2 else 1
    meta = ck.launch_metadata(grid, stream, *args) if rt.launch_enter_hook is not None else None
    ck.run(
        grid[0], g1, g2, stream, ck.function, ck.packed_metadata, meta, rt.launch_enter_hook, rt.launch_exit_hook, *args
    )
