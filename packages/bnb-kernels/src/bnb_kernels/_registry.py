"""Explicit, inspectable backend registry.

Every op in the ``bitsandbytes`` namespace gets exactly one torch dispatcher kernel (for the
``CompositeExplicitAutograd`` key, so it serves every device). That kernel looks up the
implementation chosen for the device of its first tensor argument. Implementations register
here with a backend name, the device types they serve, a priority and an availability check,
so ``backends()`` can list what runs where and ``BNB_BACKEND=reference`` forces the reference.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import torch

__all__ = [
    "Implementation",
    "backends",
    "define_op",
    "implementations",
    "register",
    "selected_backend",
]

# Higher wins. The reference serves every device at the lowest priority.
PRIORITY = {"reference": 0, "cpu": 10, "triton": 10}
ANY_DEVICE = "*"
FORCE_ENV = "BNB_BACKEND"


@dataclass(frozen=True)
class Implementation:
    op: str
    backend: str
    device_types: tuple[str, ...]
    fn: Callable[..., Any]
    priority: int
    available: Callable[[], bool] = field(default=lambda: True, compare=False)

    def serves(self, device_type: str) -> bool:
        return ANY_DEVICE in self.device_types or device_type in self.device_types


_IMPLS: dict[str, list[Implementation]] = {}
_SELECTED: dict[tuple[str, str], Implementation] = {}
_DEFINED: set[str] = set()


def define_op(name: str, schema: str) -> None:
    """Define ``bitsandbytes::<name>`` with ``schema`` and route it through the registry."""
    if name in _DEFINED:
        return
    qualname = f"bitsandbytes::{name}"
    torch.library.define(qualname, schema)

    def dispatch(*args: Any, **kwargs: Any) -> Any:
        device_type = _device_type_of(args, kwargs)
        return _select(name, device_type).fn(*args, **kwargs)

    dispatch.__name__ = f"bnb_dispatch_{name.replace('.', '_')}"
    torch.library.impl(qualname, "CompositeExplicitAutograd")(dispatch)
    _DEFINED.add(name)


def register(
    op: str,
    backend: str,
    device_types: tuple[str, ...] | str,
    *,
    priority: int | None = None,
    available: Callable[[], bool] | None = None,
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: ``fn`` implements ``op`` on ``device_types`` under the name ``backend``."""
    if isinstance(device_types, str):
        device_types = (device_types,)

    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        impl = Implementation(
            op=op,
            backend=backend,
            device_types=tuple(device_types),
            fn=fn,
            priority=PRIORITY.get(backend, 5) if priority is None else priority,
            available=available or (lambda: True),
        )
        _IMPLS.setdefault(op, []).append(impl)
        _SELECTED.clear()
        return fn

    return wrap


def _device_type_of(args: tuple[Any, ...], kwargs: dict[str, Any]) -> str:
    for a in (*args, *kwargs.values()):
        if isinstance(a, torch.Tensor):
            return a.device.type
    return "cpu"


def _forced_backend() -> str | None:
    value = os.environ.get(FORCE_ENV, "").strip().lower()
    return value or None


def _select(op: str, device_type: str) -> Implementation:
    key = (op, device_type)
    impl = _SELECTED.get(key)
    if impl is not None:
        return impl
    candidates = [i for i in _IMPLS.get(op, []) if i.serves(device_type)]
    forced = _forced_backend()
    if forced is not None:
        candidates = [i for i in candidates if i.backend == forced] or candidates
    candidates.sort(key=lambda i: i.priority, reverse=True)
    for impl in candidates:
        if impl.available():
            _SELECTED[key] = impl
            return impl
    raise NotImplementedError(f"bitsandbytes::{op} has no implementation for device type {device_type!r}")


def implementations(op: str) -> list[Implementation]:
    """All registered implementations of ``op``, highest priority first."""
    return sorted(_IMPLS.get(op, []), key=lambda i: i.priority, reverse=True)


def selected_backend(op: str, device: torch.device | str) -> str:
    """Name of the backend ``op`` runs on for ``device`` (e.g. ``"cpu"``, ``"triton"``)."""
    device_type = torch.device(device).type
    return _select(op, device_type).backend


def backends(device_types: tuple[str, ...] = ("cpu", "cuda")) -> dict[str, dict[str, str]]:
    """Table of ``{op: {device_type: backend}}`` for every defined op."""
    table: dict[str, dict[str, str]] = {}
    for op in sorted(_DEFINED):
        row = {}
        for dt in device_types:
            try:
                row[dt] = _select(op, dt).backend
            except NotImplementedError:
                row[dt] = "-"
        table[op] = row
    return table


def reset_selection() -> None:
    """Forget cached choices (after changing ``BNB_BACKEND`` in a running process)."""
    _SELECTED.clear()
