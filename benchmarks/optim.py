"""Optimizer step time against the memory limit and torch's AdamW, in one run.

    python -m benchmarks.optim --device cpu|cuda [--json out.json]

CUDA (ANCHORS.md): 470 M parameters = 8 x 4096x14336 + 8 x 4096, fp32 and bf16, against
``torch.optim.AdamW(fused=True)``. The memory limit of a step is the bytes it must move
(read gradient, parameter and states, write parameter and states) over the device copy
bandwidth measured in the same run: 16 B/param for AdamW8bit with fp32 parameters, 10 with
bf16, 14 for Lion8bit, 18 for AdEMAMix8bit, 28 for 32-bit AdamW. ``fraction_of_ceiling`` is
limit / time; the targets are >= 1/1.5 (within 1.5x of the limit). ``state_B_per_param`` is
the optimizer state allocated by the first step.

CPU: AdamW8bit and 32-bit AdamW on 67 M fp32 parameters against ``torch.optim.AdamW``.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

import torch

import bnb_kernels
import bnb_optim

from .harness import Bench, Target, parse_args

GPU_SRC = "ANCHORS.md, H100"
CPU_SRC = "ANCHORS.md, 2-core CPU"
WITHIN_1_5X = Target("fraction_of_ceiling", ">=", 1 / 1.5, GPU_SRC)

# bytes per parameter a step must move: (param itemsize -> bytes) per case
STATE_BYTES = {"AdamW8bit": 2, "PagedAdamW8bit": 2, "Lion8bit": 1, "AdEMAMix8bit": 3, "AdamW32": 8, "torch": 8}


def step_bytes(case: str, itemsize: int) -> int:
    # gradient read + parameter read and write + every state read and written
    return 3 * itemsize + 2 * STATE_BYTES[case]


def _params(shapes: Sequence[tuple[int, ...]], dtype: torch.dtype, device: str) -> list[torch.nn.Parameter]:
    gen = torch.Generator(device=device).manual_seed(0)
    params = []
    for s in shapes:
        p = torch.nn.Parameter((torch.randn(s, generator=gen, device=device) * 0.02).to(dtype))
        p.grad = (torch.randn(s, generator=gen, device=device) * 1e-3).to(dtype)
        params.append(p)
    return params


def _sync(device: str) -> None:
    if device == "cuda":
        torch.cuda.synchronize()


def _run_case(
    bench: Bench,
    name: str,
    make: Callable[[list[torch.nn.Parameter]], torch.optim.Optimizer],
    params: list[torch.nn.Parameter],
    case: str,
    baseline_ms: float | None,
    target: Target | None,
) -> float | None:
    if not bench.wanted(name):
        return None
    dev = bench.device
    _sync(dev)
    before = torch.cuda.memory_allocated() if dev == "cuda" else 0
    opt = make(params)
    t0 = time.perf_counter()
    opt.step()
    _sync(dev)
    first_s = time.perf_counter() - t0
    nparam = sum(p.numel() for p in params)
    state_bpp = (torch.cuda.memory_allocated() - before) / nparam if dev == "cuda" else float("nan")
    ms = bench.time(opt.step)
    itemsize = params[0].element_size()
    extra = {
        "Gparam_per_s": nparam / ms / 1e6,
        "first_step_s": first_s,
        "state_B_per_param": state_bpp,
        "B_per_param": step_bytes(case, itemsize),
    }
    if baseline_ms is not None:
        extra["vs_torch_AdamW"] = baseline_ms / ms
    bench.record(name, ms, bytes_moved=nparam * step_bytes(case, itemsize), target=target, **extra)
    del opt
    if dev == "cuda":
        torch.cuda.empty_cache()
    return ms


def run_cuda(bench: Bench) -> None:
    shapes = [(4096, 14336)] * 8 + [(4096,)] * 8
    for dtype, tag in ((torch.float32, "fp32"), (torch.bfloat16, "bf16")):
        params = _params(shapes, dtype, "cuda")
        base = _run_case(
            bench,
            f"torch_AdamW_fused_{tag}",
            lambda ps: torch.optim.AdamW(ps, lr=1e-4, fused=True),
            params,
            "torch",
            None,
            None,
        )
        faster = Target("vs_torch_AdamW", ">=", 1.0, GPU_SRC)
        cases = [
            ("AdamW8bit", lambda ps: bnb_optim.AdamW8bit(ps, lr=1e-4), WITHIN_1_5X),
            ("AdamW32", lambda ps: bnb_optim.AdamW(ps, lr=1e-4), faster),
            ("PagedAdamW8bit", lambda ps: bnb_optim.PagedAdamW8bit(ps, lr=1e-4), None),
            ("Lion8bit", lambda ps: bnb_optim.Lion8bit(ps, lr=1e-4), WITHIN_1_5X),
            ("AdEMAMix8bit", lambda ps: bnb_optim.AdEMAMix8bit(ps, lr=1e-4), WITHIN_1_5X),
        ]
        for case, make, target in cases:
            if tag == "bf16" and case in ("Lion8bit", "AdEMAMix8bit", "PagedAdamW8bit"):
                continue
            _run_case(bench, f"bnb_{case}_{tag}", make, params, case, base, target)
        del params
        torch.cuda.empty_cache()


def run_cpu(bench: Bench) -> None:
    params = _params([(4096, 16384)], torch.float32, "cpu")  # 67 M
    base = _run_case(
        bench, "torch_AdamW_fp32_67M", lambda ps: torch.optim.AdamW(ps, lr=1e-4), params, "torch", None, None
    )
    faster = Target("vs_torch_AdamW", ">=", 1.0, CPU_SRC)
    _run_case(
        bench, "bnb_AdamW8bit_fp32_67M", lambda ps: bnb_optim.AdamW8bit(ps, lr=1e-4), params, "AdamW8bit", base, faster
    )
    _run_case(bench, "bnb_AdamW32_fp32_67M", lambda ps: bnb_optim.AdamW(ps, lr=1e-4), params, "AdamW32", base, None)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("optim", argv, description=__doc__)
    bench = Bench(args)
    op = "optimizer_update_8bit_blockwise"
    print(f"# {op} runs on the {bnb_kernels.selected_backend(op, bench.device)} backend", flush=True)
    if bench.device == "cuda":
        run_cuda(bench)
    else:
        run_cpu(bench)
    bench.finish()


if __name__ == "__main__":
    main()
