"""Build the fixed-bits / paged variants of an optimizer family (``Lion8bit``, ``PagedLion``...)
with the constructor signature of the reference release: the options a variant fixes are
dropped from its signature (or kept and ignored, where the reference release keeps them)."""

from __future__ import annotations

import inspect
from typing import Any


def variant(
    base: type,
    name: str,
    *,
    bits: int | None = None,
    paged: bool | None = None,
    drop: tuple[str, ...] = (),
    doc: str | None = None,
) -> type:
    sig = inspect.signature(base.__init__)
    new_sig = sig.replace(parameters=[p for p in sig.parameters.values() if p.name not in drop])

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        bound = new_sig.bind(self, *args, **kwargs)
        bound.apply_defaults()
        kw = dict(bound.arguments)
        kw.pop("self")
        if bits is not None:
            kw["optim_bits"] = bits
        if paged is not None:
            kw["is_paged"] = paged
        base.__init__(self, **kw)

    __init__.__signature__ = new_sig  # type: ignore[attr-defined]
    what = [f"{bits}-bit state"] if bits else []
    if paged:
        what.append("paged (CUDA managed memory) state")
    text = doc or f"{base.__name__.lstrip('_').replace('Base', '')} with {' and '.join(what) or 'default'} options."
    return type(name, (base,), {"__init__": __init__, "__doc__": text, "__module__": base.__module__})
