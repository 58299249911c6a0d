"""Params4bit: a frozen weight that quantizes itself to 4 bit on its first move to a device.

Behaviour follows the reference release: the parameter holds the float weight until the
first ``.to(device)`` / ``.cuda()`` / ``.cpu()``; then its data becomes the packed 4-bit
tensor ``[numel / 2 / itemsize, 1]`` of ``quant_storage`` and ``quant_state`` holds the
QuantState. Later moves carry the packed data and the state along. Deep copies, shallow
copies, pickling, ``torch.chunk`` and ``torch.split`` keep the quantization attributes.
"""

from __future__ import annotations

import copy
import warnings
from typing import Any

import torch

from bnb_kernels.ops.quant import BLOCKSIZES_4BIT, QUANT_STORAGE_DTYPES
from bnb_quant import QuantState, quantize_4bit

__all__ = ["Params4bit", "fix_4bit_weight_quant_state_from_module"]

QUANT_TYPES = ("nf4", "fp4")

_ATTRS = ("blocksize", "compress_statistics", "quant_type", "quant_state", "quant_storage", "bnb_quantized", "module")


def _check_args(blocksize: int, quant_type: str, quant_storage: torch.dtype) -> None:
    if quant_type not in QUANT_TYPES:
        raise ValueError(f"quant_type must be one of {list(QUANT_TYPES)}, got {quant_type!r}")
    if blocksize not in BLOCKSIZES_4BIT:
        raise ValueError(f"blocksize must be one of {list(BLOCKSIZES_4BIT)}, got {blocksize!r}")
    if quant_storage not in QUANT_STORAGE_DTYPES:
        raise ValueError(f"quant_storage must be one of {list(QUANT_STORAGE_DTYPES)}, got {quant_storage!r}")


class Params4bit(torch.nn.Parameter):
    """A 4-bit quantized, frozen parameter (see the module docstring)."""

    def __new__(
        cls,
        data: torch.Tensor | None = None,
        requires_grad: bool = False,
        quant_state: QuantState | None = None,
        blocksize: int | None = None,
        compress_statistics: bool = True,
        quant_type: str = "fp4",
        quant_storage: torch.dtype = torch.uint8,
        module: torch.nn.Module | None = None,
        bnb_quantized: bool = False,
    ) -> Params4bit:
        if data is None:
            data = torch.empty(0)
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
        blocksize = 64 if blocksize is None else blocksize
        _check_args(blocksize, quant_type, quant_storage)
        if isinstance(data, Params4bit):
            data = data.as_subclass(torch.Tensor)
        self = torch.Tensor._make_subclass(cls, data, requires_grad)
        self.blocksize = blocksize
        self.compress_statistics = compress_statistics
        self.quant_type = quant_type
        self.quant_state = quant_state
        self.quant_storage = quant_storage
        self.bnb_quantized = bnb_quantized
        self.module = module
        return self

    def __getstate__(self) -> dict[str, Any]:
        state = {k: v for k, v in self.__dict__.items() if k != "_bnb_fast"}
        state["data"] = self.data
        state["requires_grad"] = self.requires_grad
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.requires_grad = state["requires_grad"]
        for k in _ATTRS:
            setattr(self, k, state.get(k))
        self.data = state["data"]

    def __reduce_ex__(self, proto: int) -> Any:
        # The state (which may reference the owning module, and through it this parameter)
        # is applied after the object exists, so reference cycles pickle fine.
        return (_empty_params4bit, (), self.__getstate__())

    def __deepcopy__(self, memo: dict[int, Any]) -> Params4bit:
        state = self.__getstate__()
        new = type(self).__new__(
            type(self),
            data=copy.deepcopy(state["data"], memo),
            requires_grad=state["requires_grad"],
            quant_state=copy.deepcopy(state["quant_state"], memo),
            blocksize=state["blocksize"],
            compress_statistics=state["compress_statistics"],
            quant_type=state["quant_type"],
            quant_storage=state["quant_storage"],
            module=memo.get(id(state["module"]), state["module"]),
            bnb_quantized=state["bnb_quantized"],
        )
        memo[id(self)] = new
        return new

    def __copy__(self) -> Params4bit:
        new = type(self).__new__(type(self))
        new.__setstate__(self.__getstate__())
        return new

    @classmethod
    def from_prequantized(
        cls,
        data: torch.Tensor,
        quantized_stats: dict[str, Any],
        requires_grad: bool = False,
        device: torch.device | str = "cuda",
        module: torch.nn.Module | None = None,
        **kwargs: Any,
    ) -> Params4bit:
        """Wrap packed 4-bit ``data`` and its serialized state (``QuantState.as_dict(packed=True)``)."""
        if not isinstance(data, torch.Tensor):
            raise TypeError(f"data must be a torch.Tensor, got {type(data).__name__}")
        if data.dtype not in QUANT_STORAGE_DTYPES:
            raise TypeError(f"packed 4-bit data must be one of {list(QUANT_STORAGE_DTYPES)}, got {data.dtype}")
        quant_state = QuantState.from_dict(qs_dict=quantized_stats, device=device)
        configured = getattr(module, "weight", None) if module is not None else None
        if isinstance(configured, Params4bit):
            # A checkpoint of another format than the layer was built for is a wrong model
            # waiting to happen (the reference release loads it silently): refuse it.
            if configured.quant_type != quant_state.quant_type:
                raise ValueError(
                    f"the checkpoint's weight is quantized as {quant_state.quant_type}, but the layer is "
                    f"configured for {configured.quant_type}"
                )
            if configured.blocksize != quant_state.blocksize:
                raise ValueError(
                    f"the checkpoint's weight has block size {quant_state.blocksize}, but the layer is "
                    f"configured for block size {configured.blocksize}"
                )
        expected = (quant_state.shape.numel() + 1) // 2
        if data.numel() * data.element_size() != expected:
            raise ValueError(
                f"packed data holds {data.numel() * data.element_size()} bytes, but the quant state "
                f"describes a weight of shape {tuple(quant_state.shape)} ({expected} bytes)"
            )
        self = cls(
            data.to(device),
            requires_grad=requires_grad,
            quant_state=quant_state,
            blocksize=quant_state.blocksize,
            compress_statistics=quant_state.nested,
            quant_type=quant_state.quant_type,
            quant_storage=data.dtype,
            module=module,
            bnb_quantized=True,
        )
        if module is not None:
            module.quant_state = quant_state
        return self

    def _quantize(self, device: torch.device) -> Params4bit:
        w = self.data.contiguous().to(device)
        if not w.is_floating_point():
            raise TypeError(f"Params4bit can only quantize a floating point weight, got {w.dtype}")
        w_4bit, quant_state = quantize_4bit(
            w,
            blocksize=self.blocksize,
            compress_statistics=self.compress_statistics,
            quant_type=self.quant_type,
            quant_storage=self.quant_storage,
        )
        self.data = w_4bit
        self.quant_state = quant_state
        if self.module is not None:
            self.module.quant_state = quant_state
        self.bnb_quantized = True
        return self

    def cpu(self) -> Params4bit:  # type: ignore[override]
        return self.to(device="cpu")

    def cuda(self, device: int | torch.device | str | None = None, non_blocking: bool = False) -> Params4bit:  # type: ignore[override]
        return self.to(device="cuda" if device is None else device, non_blocking=non_blocking)

    def to(self, *args: Any, **kwargs: Any) -> Params4bit:  # type: ignore[override]
        device, dtype, non_blocking, _ = torch._C._nn._parse_to(*args, **kwargs)
        if device is not None and device.type != "meta" and not self.bnb_quantized:
            return self._quantize(device)
        if self.quant_state is not None and device is not None:
            self.quant_state.to(device)
        if self.bnb_quantized and dtype is not None and dtype != self.dtype:
            # The packed bytes are not a float tensor: never cast them.
            dtype = None
        moved = torch.Tensor.to(self.as_subclass(torch.Tensor), device=device, dtype=dtype, non_blocking=non_blocking)
        return Params4bit(
            moved,
            requires_grad=self.requires_grad,
            quant_state=self.quant_state,
            blocksize=self.blocksize,
            compress_statistics=self.compress_statistics,
            quant_type=self.quant_type,
            quant_storage=self.quant_storage,
            module=self.module,
            bnb_quantized=self.bnb_quantized,
        )

    @classmethod
    def __torch_function__(cls, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        if func in _SPLITS:
            tensor = args[0]
            with torch._C.DisableTorchFunctionSubclass():
                result = func(*args, **kwargs)
            attrs = {k: getattr(tensor, k) for k in _ATTRS}
            if isinstance(result, (tuple, list)):
                return tuple(cls(chunk, requires_grad=tensor.requires_grad, **attrs) for chunk in result)
            return cls(result, requires_grad=tensor.requires_grad, **attrs)
        if func in _CASTS and args and isinstance(args[0], Params4bit) and args[0].bnb_quantized:
            # Module.half()/.float() must not reinterpret packed 4-bit bytes as numbers.
            return args[0].as_subclass(torch.Tensor)
        with torch._C.DisableTorchFunctionSubclass():
            return func(*args, **kwargs)

    def __repr__(self) -> str:
        state = "quantized" if self.bnb_quantized else "not quantized yet"
        with torch._C.DisableTorchFunctionSubclass():
            base = torch.Tensor.__repr__(self)
        return f"Params4bit({state}, quant_type={self.quant_type!r}, blocksize={self.blocksize}):\n{base}"


_SPLITS = (torch.chunk, torch.split, torch.Tensor.chunk, torch.Tensor.split)
_CASTS = (torch.Tensor.half, torch.Tensor.float, torch.Tensor.bfloat16, torch.Tensor.double)


def _empty_params4bit() -> Params4bit:
    return Params4bit.__new__(Params4bit)


def fix_4bit_weight_quant_state_from_module(module: torch.nn.Module) -> None:
    """Restore ``weight.quant_state`` from the module when a wrapper (e.g. FSDP) dropped it."""
    weight = module.weight
    if getattr(weight, "quant_state", None) is not None:
        return
    if getattr(module, "quant_state", None) is None:
        raise RuntimeError(
            f"{type(module).__name__}: the 4-bit weight was never quantized. Move the module to a device "
            "first (module.to(device), .cuda() or .cpu()), or load a quantized state dict."
        )
    if weight.dim() != 2 or weight.shape[1] != 1:
        raise RuntimeError(
            f"{type(module).__name__}: the weight has shape {tuple(weight.shape)}, not the packed [n, 1] form "
            "of a 4-bit weight; it was replaced after quantization"
        )
    if not isinstance(weight, Params4bit):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            module.weight = Params4bit(weight.data, quant_storage=module.quant_storage, bnb_quantized=True)
    module.weight.quant_state = module.quant_state
