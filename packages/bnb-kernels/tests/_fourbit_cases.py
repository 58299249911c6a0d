"""Inputs shared by the Triton 4-bit kernel tests (test_fourbit_matmul_triton.py and
test_fourbit_gemv_triton.py), which also run as scripts under the Triton interpreter."""

from __future__ import annotations

import os
import subprocess
import sys

import torch


def run_under_interpreter(script: str) -> None:
    """Runs ``script`` (a test file's own ``__main__`` checks) in a fresh process under the
    Triton interpreter, which must be chosen before Triton is imported; asserts it passed."""
    env = dict(os.environ, TRITON_INTERPRET="1", CUDA_VISIBLE_DEVICES="")
    proc = subprocess.run([sys.executable, script], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "checks passed" in proc.stdout


def rel_err(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def quantized_case(N, K, M, blocksize, dtype, nested, quant_type, device, seed=0):
    """(W, x, bias, packed weight, (absmax, a8, code2, offset)) for a random [N, K] weight and
    [M, K] input, quantized with the ops alone (bnb-kernels tests must not need bnb-quant)."""
    g = torch.Generator().manual_seed(seed)
    W = torch.randn(N, K, generator=g).to(dtype).to(device)
    x = torch.randn(M, K, generator=g).to(dtype).to(device)
    bias = torch.randn(N, generator=g).to(dtype).to(device)
    q, absmax = torch.ops.bitsandbytes.quantize_4bit(W, blocksize, quant_type, torch.uint8)
    if nested:
        code8 = torch.linspace(-1.0, 1.0, 256, device=device)
        offset = absmax.mean()
        a8, absmax2 = torch.ops.bitsandbytes.quantize_blockwise(absmax - offset, code8, 256)
        extra = (absmax2, a8, code8, offset)
    else:
        extra = (absmax, None, None, None)
    return W, x, bias, q, extra


def launch_args(extra, nested: bool):
    """(absmax, a8, code2, offset) of a ``quantized_case`` as the Triton launch helpers take
    them (``fourbit_gemv.gemv_launch``, ``fourbit_mma.mma_launch``): plain absmax passed
    for all four when not nested."""
    if nested:
        absmax2, a8, code8, offset = extra
        return absmax2.float(), a8, code8.float(), torch.as_tensor(offset, dtype=torch.float32, device=a8.device)
    a = extra[0].float()
    return a, a, a, a
