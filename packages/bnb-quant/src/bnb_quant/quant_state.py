"""QuantState: the one carrier of quantization metadata (absmax, codebook, block size, shape,
dtype, and the nested state when absmax itself is quantized).

``as_dict(packed=True)`` gives the reference release's serialized form key for key: tensors
``absmax``, ``quant_map`` (and ``nested_absmax``, ``nested_quant_map``) plus
``quant_state.bitsandbytes__<nf4|fp4>``, a uint8 tensor of UTF-8 JSON holding the rest.
Loading parses that JSON and checks every field; nothing is unpickled or evaluated.
"""

from __future__ import annotations

import json
from typing import Any

import torch

__all__ = ["QuantState", "QuantStateError", "pack_dict_to_tensor", "unpack_tensor_to_dict"]

_DTYPES = {
    "float32": torch.float32,
    "float16": torch.float16,
    "bfloat16": torch.bfloat16,
    "float64": torch.float64,
    "uint8": torch.uint8,
    "int8": torch.int8,
}


class QuantStateError(ValueError):
    """A serialized quant state is malformed (missing key, bad JSON, wrong shapes)."""


def dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).replace("torch.", "")


def parse_dtype(name: object, what: str) -> torch.dtype:
    if not isinstance(name, str) or name.replace("torch.", "") not in _DTYPES:
        raise QuantStateError(f"{what} must name one of {sorted(_DTYPES)}, got {name!r}")
    return _DTYPES[name.replace("torch.", "")]


def pack_dict_to_tensor(source: dict[str, Any]) -> torch.Tensor:
    """JSON-encode a dict of plain values into a uint8 tensor (the reference release's format)."""
    data = json.dumps(source).encode("utf-8")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8)


def unpack_tensor_to_dict(tensor: torch.Tensor) -> dict[str, Any]:
    """Inverse of ``pack_dict_to_tensor``; raises QuantStateError on anything but a JSON object."""
    if not isinstance(tensor, torch.Tensor) or tensor.dtype != torch.uint8 or tensor.dim() != 1:
        raise QuantStateError("packed quant state must be a 1-d uint8 tensor of UTF-8 JSON")
    try:
        value = json.loads(bytes(tensor.cpu().tolist()).decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise QuantStateError(f"packed quant state is not valid UTF-8 JSON: {exc}") from exc
    if not isinstance(value, dict):
        raise QuantStateError(f"packed quant state must be a JSON object, got {type(value).__name__}")
    return value


class QuantState:
    """Quantization state of a blockwise-quantized tensor."""

    valid_quant_types = ("fp4", "nf4")
    valid_qs_type_keys = tuple(f"bitsandbytes__{t}" for t in valid_quant_types)
    valid_qs_keys = (
        "absmax",
        "quant_map",
        "nested_absmax",
        "nested_quant_map",
        "quant_state",
        "quant_type",
        "blocksize",
        "dtype",
        "shape",
        "nested_blocksize",
        "nested_dtype",
        "nested_offset",
    )

    def __init__(
        self,
        absmax: torch.Tensor,
        shape: torch.Size | tuple[int, ...] | None = None,
        code: torch.Tensor | None = None,
        blocksize: int | None = None,
        quant_type: str | None = None,
        dtype: torch.dtype | None = None,
        offset: torch.Tensor | None = None,
        state2: QuantState | None = None,
    ) -> None:
        self.absmax = absmax
        self.shape = torch.Size(shape) if shape is not None else None
        self.code = code
        self.dtype = dtype
        self.blocksize = blocksize
        self.quant_type = quant_type
        self.offset = offset
        self.state2 = state2
        self.nested = state2 is not None

    def __getitem__(self, idx: int) -> Any:
        """List-like access kept by the reference release for old callers."""
        if self.nested:
            items = [self.absmax, self.shape, self.dtype, self.blocksize, [self.offset, self.state2], self.quant_type]
        else:
            items = [self.absmax, self.shape, self.dtype, self.blocksize, None, self.quant_type]
        return items[idx]

    @classmethod
    def from_dict(cls, qs_dict: dict[str, Any], device: torch.device | str) -> QuantState:
        """Rebuild from ``as_dict(packed=True)`` output (keys may carry a module prefix)."""
        if not isinstance(qs_dict, dict):
            raise QuantStateError(f"quant state must be a dict, got {type(qs_dict).__name__}")
        packed_keys = [k for k in qs_dict if "quant_state" in k and isinstance(qs_dict[k], torch.Tensor)]
        if len(packed_keys) > 1:
            raise QuantStateError(f"expected one packed quant_state entry, found {packed_keys}")
        plain = {k.split(".")[-1]: v for k, v in qs_dict.items()}
        if packed_keys:
            suffix = packed_keys[0].split(".")[-1]
            if suffix not in cls.valid_qs_type_keys:
                raise QuantStateError(
                    f"packed quant state key must end in one of {cls.valid_qs_type_keys}, got {suffix}"
                )
            plain.pop(suffix)
            plain.update(unpack_tensor_to_dict(qs_dict[packed_keys[0]]))
        missing = [k for k in ("absmax", "quant_map", "quant_type", "blocksize", "dtype", "shape") if k not in plain]
        if missing:
            raise QuantStateError(f"quant state is missing {missing}")
        unknown = [k for k in plain if k not in cls.valid_qs_keys]
        if unknown:
            raise QuantStateError(f"quant state has unexpected keys {unknown}")

        quant_type = plain["quant_type"]
        if quant_type not in cls.valid_quant_types:
            raise QuantStateError(f"quant_type must be one of {cls.valid_quant_types}, got {quant_type!r}")
        blocksize = plain["blocksize"]
        if not isinstance(blocksize, int) or blocksize <= 0:
            raise QuantStateError(f"blocksize must be a positive int, got {blocksize!r}")
        shape = plain["shape"]
        if not isinstance(shape, (list, tuple)) or not all(isinstance(s, int) and s >= 0 for s in shape):
            raise QuantStateError(f"shape must be a list of non-negative ints, got {shape!r}")
        numel = 1
        for s in shape:
            numel *= s
        blocks = -(numel // -blocksize)
        dtype = parse_dtype(plain["dtype"], "dtype")
        quant_map = _tensor(plain, "quant_map", (16,), torch.float32)

        if "nested_absmax" in plain:
            for key in ("nested_quant_map", "nested_blocksize", "nested_dtype", "nested_offset"):
                if key not in plain:
                    raise QuantStateError(f"nested quant state is missing {key!r}")
            nested_blocksize = plain["nested_blocksize"]
            if not isinstance(nested_blocksize, int) or nested_blocksize <= 0:
                raise QuantStateError(f"nested_blocksize must be a positive int, got {nested_blocksize!r}")
            if not isinstance(plain["nested_offset"], (int, float)):
                raise QuantStateError(f"nested_offset must be a number, got {plain['nested_offset']!r}")
            absmax = _tensor(plain, "absmax", (blocks,), torch.uint8)
            nested_absmax = _tensor(plain, "nested_absmax", (-(blocks // -nested_blocksize),), torch.float32)
            state2 = cls(
                absmax=nested_absmax.to(device),
                code=_tensor(plain, "nested_quant_map", (256,), torch.float32).to(device),
                blocksize=nested_blocksize,
                dtype=parse_dtype(plain["nested_dtype"], "nested_dtype"),
            )
            offset = torch.tensor(float(plain["nested_offset"]), device=device)
        else:
            absmax = _tensor(plain, "absmax", (blocks,), torch.float32)
            state2 = offset = None

        return cls(
            quant_type=quant_type,
            absmax=absmax.to(device),
            blocksize=blocksize,
            code=quant_map.to(device),
            dtype=dtype,
            shape=torch.Size(shape),
            offset=offset,
            state2=state2,
        )

    def as_dict(self, packed: bool = False) -> dict[str, Any]:
        """Plain dict of the state; ``packed=True`` gives the serialized (state_dict) form."""
        qs_dict: dict[str, Any] = {
            "quant_type": self.quant_type,
            "absmax": self.absmax,
            "blocksize": self.blocksize,
            "quant_map": self.code,
            "dtype": dtype_name(self.dtype) if self.dtype is not None else None,
            "shape": tuple(self.shape) if self.shape is not None else None,
        }
        if self.nested:
            assert self.state2 is not None and self.offset is not None
            qs_dict.update(
                {
                    "nested_absmax": self.state2.absmax,
                    "nested_blocksize": self.state2.blocksize,
                    "nested_quant_map": self.state2.code.clone() if self.state2.code is not None else None,
                    "nested_dtype": dtype_name(self.state2.dtype) if self.state2.dtype is not None else None,
                    "nested_offset": float(self.offset.item()) if torch.is_tensor(self.offset) else self.offset,
                }
            )
        if not packed:
            return qs_dict
        tensors = {k: v for k, v in qs_dict.items() if isinstance(v, torch.Tensor)}
        plain = {
            k: (list(v) if isinstance(v, tuple) else v) for k, v in qs_dict.items() if not isinstance(v, torch.Tensor)
        }
        tensors[f"quant_state.bitsandbytes__{self.quant_type}"] = pack_dict_to_tensor(plain)
        return tensors

    def to(self, device: torch.device | str) -> QuantState:
        """Move the state's tensors to ``device`` in place (as the reference release does)."""
        self.code = self.code.to(device) if self.code is not None else None
        self.absmax = self.absmax.to(device)
        if self.nested:
            assert self.state2 is not None
            self.offset = self.offset.to(device) if torch.is_tensor(self.offset) else self.offset
            self.state2.absmax = self.state2.absmax.to(device)
            self.state2.code = self.state2.code.to(device) if self.state2.code is not None else None
        return self

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, QuantState):
            return False

        def close(a: torch.Tensor | None, b: torch.Tensor | None, atol: float = 1e-6) -> bool:
            if a is None or b is None:
                return a is None and b is None
            return a.shape == b.shape and torch.allclose(a.float().cpu(), b.float().cpu(), atol=atol)

        return (
            close(self.absmax, other.absmax)
            and self.shape == other.shape
            and close(self.code, other.code, atol=1e-6)
            and self.dtype == other.dtype
            and self.blocksize == other.blocksize
            and self.quant_type == other.quant_type
            and self.nested == other.nested
            and (
                not self.nested
                or (close(torch.as_tensor(self.offset), torch.as_tensor(other.offset)) and self.state2 == other.state2)
            )
        )

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"QuantState(quant_type={self.quant_type!r}, blocksize={self.blocksize}, shape={self.shape}, "
            f"dtype={self.dtype}, nested={self.nested})"
        )


def _tensor(plain: dict[str, Any], key: str, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
    value = plain[key]
    if not isinstance(value, torch.Tensor):
        raise QuantStateError(f"{key} must be a tensor, got {type(value).__name__}")
    if tuple(value.shape) != shape:
        raise QuantStateError(f"{key} must have shape {shape}, got {tuple(value.shape)}")
    if value.dtype != dtype:
        raise QuantStateError(f"{key} must have dtype {dtype_name(dtype)}, got {dtype_name(value.dtype)}")
    return value
