"""A short self-test on each device: quantize, multiply, step an optimizer.

Only bnb-kernels is required. The op-level checks call ``torch.ops.bitsandbytes`` directly and
compare the backend the registry picked against the pure-torch reference backend; the
module-level checks run when bnb-nn / bnb-optim are installed and are skipped (not failed)
otherwise. Each check is small enough to finish in well under a second on a CPU.
"""

from __future__ import annotations

import importlib
import time
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

import torch

__all__ = ["CHECKS", "CheckResult", "Skip", "run"]


class Skip(Exception):
    """Raised by a check that cannot run here (a package or op is missing)."""


@dataclass
class CheckResult:
    check: str
    device: str
    status: str  # "pass" | "fail" | "skip"
    detail: str
    seconds: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise Skip(f"{module.replace('_', '-')} is not installed ({exc})") from exc


def _op_defined(name: str) -> bool:
    from bnb_kernels import _registry

    return name in _registry._DEFINED


def _reference_fn(op: str) -> Callable[..., Any]:
    from bnb_kernels import implementations

    for impl in implementations(op):
        if impl.backend == "reference":
            return impl.fn
    raise Skip(f"no reference implementation of {op}")


def _rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.float(), want.float()
    return float((got - want).norm() / want.norm().clamp_min(1e-12))


def _expect(cond: bool, message: str) -> None:
    if not cond:
        raise AssertionError(message)


def _gen() -> torch.Generator:
    """Inputs are drawn on the CPU from a fixed seed, then moved, so every device sees the same data."""
    return torch.Generator(device="cpu").manual_seed(0)


def check_blockwise(device: str) -> str:
    """8-bit blockwise quantization: round trip error and agreement with the reference backend."""
    from bnb_kernels import selected_backend

    x = torch.randn(3000, generator=_gen()).to(device)  # not a multiple of the block size
    code = torch.linspace(-1.0, 1.0, 256, device=device)
    codes, absmax = torch.ops.bitsandbytes.quantize_blockwise(x, code, 256)
    back = torch.ops.bitsandbytes.dequantize_blockwise(codes, absmax, code, 256, torch.float32)
    err = _rel_err(back, x)
    _expect(err < 0.02, f"round-trip relative error {err:.4f} >= 0.02")
    ref_codes, ref_absmax = _reference_fn("quantize_blockwise")(x, code, 256)
    _expect(torch.equal(codes, ref_codes), "codes differ from the reference backend")
    _expect(torch.allclose(absmax, ref_absmax), "absmax differs from the reference backend")
    return f"backend {selected_backend('quantize_blockwise', device)}, round-trip rel. error {err:.4f}"


def check_4bit(device: str) -> str:
    """NF4 and FP4 quantization: round trip error and agreement with the reference backend."""
    from bnb_kernels import selected_backend

    x = torch.randn(64, 72, generator=_gen()).to(device=device, dtype=torch.bfloat16)
    errs = []
    for quant_type, limit in (("nf4", 0.12), ("fp4", 0.16)):
        packed, absmax = torch.ops.bitsandbytes.quantize_4bit(x, 64, quant_type, torch.uint8)
        back = torch.ops.bitsandbytes.dequantize_4bit(packed, absmax, 64, quant_type, list(x.shape), x.dtype)
        err = _rel_err(back, x)
        _expect(err < limit, f"{quant_type} round-trip relative error {err:.4f} >= {limit}")
        ref_packed, _ = _reference_fn("quantize_4bit")(x, 64, quant_type, torch.uint8)
        _expect(torch.equal(packed, ref_packed), f"{quant_type} codes differ from the reference backend")
        errs.append(f"{quant_type} {err:.3f}")
    return f"backend {selected_backend('quantize_4bit', device)}, round-trip rel. error " + ", ".join(errs)


def check_matmul_4bit(device: str) -> str:
    """A 4-bit linear layer (bnb-nn) or the gemv_4bit op against a dense matmul of its weight."""
    try:
        bnb_nn = _optional("bnb_nn")
        if not hasattr(bnb_nn, "Linear4bit"):
            raise Skip("bnb-nn has no Linear4bit")
    except Skip:
        if not _op_defined("gemv_4bit"):
            raise
        return _gemv_op(device)
    dtype = torch.bfloat16 if device == "cpu" else torch.float16
    torch.manual_seed(0)
    dense = torch.nn.Linear(128, 96, dtype=dtype)
    layer = bnb_nn.Linear4bit(128, 96, compute_dtype=dtype, quant_type="nf4")
    layer.load_state_dict(dense.state_dict())
    layer = layer.to(device)
    x = torch.randn(5, 128, generator=_gen()).to(device=device, dtype=dtype)
    with torch.no_grad():
        got = layer(x)
        w = bnb_nn_dequantize(layer)
        want = torch.nn.functional.linear(x.float(), w.float(), layer.bias.float())
        ref_dense = dense.to(device)(x).float()
    err = _rel_err(got, want)
    _expect(err < 0.02, f"Linear4bit vs. its dequantized weight: relative error {err:.4f} >= 0.02")
    q_err = _rel_err(got, ref_dense)
    _expect(q_err < 0.2, f"Linear4bit vs. the dense layer: relative error {q_err:.4f} >= 0.2")
    return f"Linear4bit nf4: vs. dequantized {err:.4f}, vs. dense {q_err:.3f}"


def bnb_nn_dequantize(layer: torch.nn.Module) -> torch.Tensor:
    bnb_quant = _optional("bnb_quant")
    return bnb_quant.dequantize_4bit(layer.weight.data, layer.weight.quant_state)


def _gemv_op(device: str) -> str:
    from bnb_kernels import selected_backend
    from bnb_kernels.codebooks import fourbit_table

    w = torch.randn(96, 128, generator=_gen()).to(device=device, dtype=torch.bfloat16)
    packed, absmax = torch.ops.bitsandbytes.quantize_4bit(w, 64, "nf4", torch.uint8)
    wq = torch.ops.bitsandbytes.dequantize_4bit(packed, absmax, 64, "nf4", list(w.shape), w.dtype)
    x = torch.randn(1, 128, generator=_gen()).to(device=device, dtype=torch.bfloat16)
    code = fourbit_table("nf4", device).to(torch.float32)
    got = torch.ops.bitsandbytes.gemv_4bit(x, packed.t(), [96, 128], absmax, code, 64)
    err = _rel_err(got, x.float() @ wq.float().t())
    _expect(err < 0.02, f"gemv_4bit relative error {err:.4f} >= 0.02")
    return f"gemv_4bit backend {selected_backend('gemv_4bit', device)}, rel. error {err:.4f}"


def check_matmul_8bit(device: str) -> str:
    """An LLM.int8() linear layer (bnb-nn) or the int8 matmul op against exact integer math."""
    try:
        bnb_nn = _optional("bnb_nn")
        if not hasattr(bnb_nn, "Linear8bitLt"):
            raise Skip("bnb-nn has no Linear8bitLt")
    except Skip:
        if not _op_defined("int8_linear_matmul"):
            raise
        return _int8_op(device)
    dtype = torch.float16 if device != "cpu" else torch.bfloat16
    torch.manual_seed(0)
    dense = torch.nn.Linear(128, 96, dtype=dtype)
    layer = bnb_nn.Linear8bitLt(128, 96, has_fp16_weights=False, threshold=0.0)
    layer.load_state_dict(dense.state_dict())
    layer = layer.to(device)
    x = torch.randn(5, 128, generator=_gen()).to(device=device, dtype=dtype)
    with torch.no_grad():
        got = layer(x)
        want = dense.to(device)(x)
    err = _rel_err(got, want)
    _expect(err < 0.03, f"Linear8bitLt vs. the dense layer: relative error {err:.4f} >= 0.03")
    return f"Linear8bitLt threshold 0: vs. dense {err:.4f}"


def _int8_op(device: str) -> str:
    from bnb_kernels import selected_backend

    g = _gen()
    a = torch.randint(-127, 128, (7, 80), generator=g, dtype=torch.int8).to(device)
    b = torch.randint(-127, 128, (48, 80), generator=g, dtype=torch.int8).to(device)
    got = torch.ops.bitsandbytes.int8_linear_matmul(a, b)
    want = (a.cpu().to(torch.int64) @ b.cpu().to(torch.int64).t()).to(torch.int32)
    _expect(torch.equal(got.cpu(), want), "int8_linear_matmul differs from exact integer matmul")
    return f"int8_linear_matmul backend {selected_backend('int8_linear_matmul', device)}: exact"


def check_optimizer(device: str) -> str:
    """Five AdamW8bit steps track torch.optim.AdamW (bnb-optim)."""
    bnb_optim = _optional("bnb_optim")
    if not hasattr(bnb_optim, "AdamW8bit"):
        raise Skip("bnb-optim has no AdamW8bit")
    torch.manual_seed(0)
    start = torch.randn(80, 80, generator=_gen()).to(device)  # 6400 > min_8bit_size
    p8 = torch.nn.Parameter(start.clone())
    p32 = torch.nn.Parameter(start.clone())
    opt8 = bnb_optim.AdamW8bit([p8], lr=1e-3)
    opt32 = torch.optim.AdamW([p32], lr=1e-3)
    for step in range(5):
        grad = torch.randn(80, 80, generator=torch.Generator().manual_seed(step + 1)).to(device)
        p8.grad, p32.grad = grad.clone(), grad.clone()
        opt8.step()
        opt32.step()
    moved = float((p32.detach() - start).norm())
    diff = float((p8.detach() - p32.detach()).norm())
    _expect(moved > 0, "torch AdamW did not move the parameter")
    _expect(diff < 0.1 * moved, f"AdamW8bit strays from torch AdamW by {diff / moved:.3f} of the update")
    state = opt8.state[p8]
    kinds = sorted({str(v.dtype) for v in state.values() if isinstance(v, torch.Tensor) and v.numel() > 1})
    return f"AdamW8bit: deviation {diff / moved:.4f} of the update; state dtypes {', '.join(kinds) or '-'}"


CHECKS: dict[str, Callable[[str], str]] = {
    "quantize 8-bit blockwise": check_blockwise,
    "quantize 4-bit nf4/fp4": check_4bit,
    "matmul 4-bit": check_matmul_4bit,
    "matmul int8": check_matmul_8bit,
    "optimizer 8-bit step": check_optimizer,
}


def run(devices: list[str], checks: dict[str, Callable[[str], str]] | None = None) -> list[CheckResult]:
    """Run every check on every device; never raises."""
    results = []
    for device in devices:
        for name, fn in (CHECKS if checks is None else checks).items():
            start = time.perf_counter()
            try:
                detail, status = fn(device), "pass"
            except Skip as exc:
                detail, status = str(exc), "skip"
            except Exception as exc:
                last = traceback.extract_tb(exc.__traceback__)[-1]
                detail = f"{type(exc).__name__}: {exc} (at {last.filename.rsplit('/', 1)[-1]}:{last.lineno})"
                status = "fail"
            results.append(CheckResult(name, device, status, detail, round(time.perf_counter() - start, 4)))
    return results
