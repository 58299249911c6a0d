"""Triton LLM.int8() kernels against the reference.

Without a GPU, every kernel path runs under the Triton interpreter on small shapes in a
subprocess (``TRITON_INTERPRET=1`` must be set before Triton is imported): running this file
as a script does those checks. With a GPU, the ``gpu`` tests run the kernels at full size.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import torch


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return ((a.float() - b.float()).norm() / b.float().norm().clamp_min(1e-12)).item()


def _activations(M: int, K: int, dtype: torch.dtype, device: str, seed: int, outliers: bool) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(M, K, generator=g)
    if outliers and K > 4:
        x[:, :: max(1, K // 4)] *= 20.0
        x[M // 2, 1] = 50.0
    return x.to(dtype).to(device)


def _weight(N: int, K: int, device: str, seed: int):
    from bnb_kernels.backends.reference import int8 as ref

    g = torch.Generator().manual_seed(seed)
    W = torch.randn(N, K, generator=g) * 0.05
    CB, SCB, _ = ref.row_quant(W, 0.0)
    return W.to(device), CB.to(device), SCB.to(device)


def check_all(device: str, shapes_quant, shapes_mm, dtypes) -> list[str]:
    """Run every kernel path; return a list of failure messages."""
    from bnb_kernels.backends.reference import int8 as ref
    from bnb_kernels.backends.triton import int8 as T

    fails: list[str] = []
    for M, K in shapes_quant:
        for dt in (torch.float16, torch.bfloat16, torch.float32):
            for t in (0.0, 6.0):
                A = _activations(M, K, dt, device, M * K, outliers=True)
                if M > 2 and K > 3:
                    A[1, 3] = float("nan")
                    A[M - 1] = 0
                got = T.int8_vectorwise_quant(A, t)
                exp = ref.row_quant(A.cpu(), t)
                ok = torch.equal(got[0].cpu(), exp[0]) and torch.equal(got[1].cpu(), exp[1])
                if t > 0:
                    ok = ok and torch.equal(got[2].cpu(), exp[2])
                if not ok:
                    fails.append(f"quant {M}x{K} {dt} t={t}")
    for M, N, K in shapes_mm:
        g = torch.Generator().manual_seed(M + N + K)
        A8 = torch.randint(-127, 128, (M, K), generator=g, dtype=torch.int8).to(device)
        B8 = torch.randint(-127, 128, (N, K), generator=g, dtype=torch.int8).to(device)
        acc = T.int8_linear_matmul(A8, B8)
        if not torch.equal(acc.cpu(), ref.int8_linear_matmul(A8.cpu(), B8.cpu())):
            fails.append(f"int8 matmul {M}x{N}x{K}")
        row = (torch.rand(M, generator=g) * 3).to(device)
        col = (torch.rand(N, generator=g) * 3).to(device)
        for dt in dtypes:
            bias = torch.randn(N, generator=g).to(dt).to(device)
            got = T.int8_scaled_mm(A8, B8, row, col, bias, dt)
            exp = ref.int8_mm_dequant(ref.int8_linear_matmul(A8.cpu(), B8.cpu()), row.cpu(), col.cpu(), dt, bias.cpu())
            if _rel(got.cpu(), exp) > 1e-3:
                fails.append(f"scaled_mm {M}x{N}x{K} {dt}: {_rel(got.cpu(), exp)}")
            got = T.int8_mm_dequant(acc, row, col, dt, bias)
            if _rel(got.cpu(), exp) > 1e-3:
                fails.append(f"mm_dequant {M}x{N}x{K} {dt}")
            W, CB, SCB = _weight(N, K, device, M)
            for t in (0.0, 6.0):
                x = _activations(M, K, dt, device, N, outliers=t > 0)
                got = T.int8_linear_fused(x, CB, SCB, bias, t)
                exp = ref.int8_linear_fused(x.cpu(), CB.cpu(), SCB.cpu(), bias.cpu(), t)
                dense = x.cpu().float() @ W.cpu().t() + bias.cpu().float()
                # small M skips the activation quantization; with outliers the fp16/bf16 outlier
                # product is rounded to the activation dtype in the reference but not in the fused
                # epilogue, so bf16 (unit roundoff 3.9e-3) differs by up to about one rounding
                tol = (5e-3 if dt == torch.bfloat16 and t > 0 else 2e-3) if M > T.SMALL_M else 2e-2
                if got.shape != exp.shape or _rel(got.cpu(), exp) > tol or _rel(got.cpu(), dense) > 3e-2:
                    fails.append(f"fused {M}x{N}x{K} {dt} t={t}: {_rel(got.cpu(), exp)} {_rel(got.cpu(), dense)}")
                if M > T.SMALL_M:  # the weight-only kernel with row tiles (raced against the int8 path)
                    got = T.w8a16_big(x, CB, SCB, bias)
                    wdq = x.cpu().float() @ (CB.cpu().float() * SCB.cpu()[:, None] / 127).t() + bias.cpu().float()
                    if got.shape != wdq.shape or _rel(got.cpu(), wdq) > 2e-3:
                        fails.append(f"w8a16_big {M}x{N}x{K} {dt}: {_rel(got.cpu(), wdq)}")
                if t > 0 and M > 1:
                    CA, SCA, cols = ref.row_quant(x.cpu(), t)
                    got, subA = T.int8_mixed_scaled_mm(x, CA.to(device), CB, SCA.to(device), SCB, cols.to(device), bias)
                    exp, subA2 = ref.int8_mixed_scaled_mm(x.cpu(), CA, CB.cpu(), SCA, SCB.cpu(), cols, bias.cpu())
                    mixed_tol = 5e-3 if dt == torch.bfloat16 else 2e-3
                    if _rel(got.cpu(), exp) > mixed_tol or not torch.equal(subA.cpu(), subA2):
                        fails.append(f"mixed {M}x{N}x{K} {dt}: {_rel(got.cpu(), exp)}")
    return fails


def check_direct_launch() -> list[str]:
    """The per-shape plans of the module path (``prepare_int8_linear``), launched directly
    from their flat argument tuples, against the reference: under the interpreter the direct
    launch is emulated by handing the tuple back to the kernel, which checks that every
    path builds its arguments in signature order."""
    from bnb_kernels.backends.reference import int8 as ref
    from bnb_kernels.backends.triton import int8 as T

    launched: list[object] = []

    def fake_direct(ck, grid, stream, args):
        launched.append(ck)
        ck[grid](*args)

    def slow(self, args):
        self.kernel[self.grid](*args, **self.kw)
        if self.ck is None:
            self.ck = self.kernel
            self.consts = tuple(self.kw[n] for n in self.kernel.arg_names[len(args) :])

    T._Step.slow = slow
    T.direct_launch = fake_direct
    T._DIRECT = True
    T._DIRECT_DEVICES = ("cuda", "cpu")
    T._stream_of = lambda index: 0
    T._INT_POINTERS = False  # the interpreter needs tensors; the addresses are compared below
    fails: list[str] = []
    N, K = 24, 40
    _W, CB, SCB = _weight(N, K, "cpu", 3)
    for M, t, kind in (
        (1, 0.0, "gemv"),
        (5, 6.0, "w8a16"),
        (20, 0.0, "int8"),
        (20, 6.0, "int8"),
        (18, 6.0, "w8a16big"),
    ):
        for dt in (torch.float16, torch.float32):
            if kind == "w8a16big":
                if dt == torch.float32:
                    continue  # float32 always takes the int8 path from 17 rows on
                T._MID[(T._mbucket(M), N, K, dt, True, True)] = True
            run = T.prepare_int8_linear(CB, SCB)
            bias = torch.randn(N, dtype=dt)
            n0 = len(launched)
            for seed in range(3):
                x = _activations(M, K, dt, "cpu", seed, outliers=t > 0)
                got = run(x, bias, t)
                exp = ref.int8_linear_fused(x, CB, SCB, bias, t)
                tol = 2e-3 if kind == "int8" else 2e-2
                if got.shape != exp.shape or _rel(got, exp) > tol:
                    fails.append(f"direct {kind} M={M} t={t} {dt} call {seed}: {_rel(got, exp)}")
            plan = next(iter(run.plans.values()))
            if plan.kind != kind or not plan.fast or len(launched) == n0:
                fails.append(f"direct {kind} M={M} t={t} {dt}: plan {plan.kind} fast={plan.fast}")
            # the integer arguments of a direct launch are the addresses of the tensor arguments
            bufs = plan.alloc(x.device)
            for a_t, a_p in zip(plan.args(x, bias, bufs, False), plan.args(x, bias, bufs, True)):
                same = len(a_t) == len(a_p) and all(
                    (p == t.data_ptr()) if isinstance(t, torch.Tensor) else (p == t and type(p) is type(t))
                    for t, p in zip(a_t, a_p)
                )
                if not same:
                    fails.append(f"direct {kind} M={M} t={t} {dt}: addresses differ from the tensors")
    # int8_vectorwise_quant launches directly from the third call of a shape on (the second
    # checks a direct launch against Triton's): codes, stats and columns stay the reference's
    for t in (0.0, 6.0):
        for seed in range(4):
            A = _activations(6, 37, torch.float16, "cpu", seed, outliers=True)
            got = T.int8_vectorwise_quant(A, t)
            exp = ref.row_quant(A, t)
            same = torch.equal(got[0], exp[0]) and torch.equal(got[1], exp[1])
            if t > 0:
                same = same and torch.equal(got[2], exp[2])
            if not same:
                fails.append(f"direct int8_vectorwise_quant t={t} call {seed}")
    if not any(T._QUANT_DIRECT.values()):
        fails.append("int8_vectorwise_quant never launched directly")
    # A plan keeps its outlier flags between calls and counts epochs instead of zeroing them:
    # eager calls see only their own outlier columns; a replay of a CUDA graph (same epoch)
    # also those flagged by earlier replays, and its result is then the reference's mixed
    # product over the union of the columns. float32: the two cases differ beyond the tolerance.
    for replay in (False, True):
        run = T.prepare_int8_linear(CB, SCB)
        bias = torch.randn(N)
        seen: set[int] = set()
        for i, cols in enumerate(((0, 10), (5,), (10, 33))):
            x = _activations(20, K, torch.float32, "cpu", i, outliers=False)
            x[:, list(cols)] *= 40.0
            got = run(x, bias, 6.0)
            if replay:
                run.plans[(20, torch.float32, True, 6.0)].epoch -= 1  # the next call reuses this epoch
            CA, SCA, now = ref.row_quant(x, 6.0)
            seen = (seen if replay else set()) | set(now.tolist())
            union = torch.tensor(sorted(seen), dtype=torch.int64)
            CA[:, union] = 0
            exp, _ = ref.int8_mixed_scaled_mm(x, CA, CB, SCA, SCB, union, bias)
            if _rel(got, exp) > 1e-5:
                fails.append(f"outlier flags kept between calls (replay={replay}) {cols}: {_rel(got, exp)}")
    return fails


def check_quant_variant(device: str, shapes_quant, **consts) -> list[str]:
    """The quantization kernel with other launch constants (several rows per program, the
    two-pass path at small K, ...) gives the reference's codes, stats and outlier columns."""
    from bnb_kernels.backends.triton import int8 as T

    saved = {name: getattr(T, name) for name in consts}
    for name, value in consts.items():
        setattr(T, name, value)
    T._QUANT_STEPS.clear()
    T._QUANT_DIRECT.clear()
    try:
        fails = check_all(device, shapes_quant, [], ())
    finally:
        for name, value in saved.items():
            setattr(T, name, value)
        T._QUANT_STEPS.clear()
        T._QUANT_DIRECT.clear()
    return [f"{f} ({consts})" for f in fails]


def _interpreter_main() -> int:
    # The interpreter's bf16 tl.dot is broken: bf16 is checked on the quantization kernel only.
    fails = check_all(
        "cpu",
        shapes_quant=[(1, 7), (5, 37), (17, 96), (3, 200)],
        shapes_mm=[(1, 24, 40), (5, 24, 40), (20, 33, 70), (17, 16, 64)],
        dtypes=(torch.float16, torch.float32),
    )
    fails += check_direct_launch()
    shapes = [(1, 7), (5, 37), (17, 96), (3, 200)]
    fails += check_quant_variant("cpu", shapes, ONE_PASS_ROW_ELEMS=512)
    fails += check_quant_variant("cpu", shapes, ONE_PASS_MAX_K=16, TWO_PASS_BLOCK=32)
    for f in fails:
        print("FAIL", f)
    return 1 if fails else 0


def test_triton_kernels_under_interpreter() -> None:
    pytest.importorskip("triton")
    env = dict(os.environ, TRITON_INTERPRET="1")
    proc = subprocess.run([sys.executable, __file__], env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]


_GPU_PARTS = {  # split so that the parts can run in parallel processes (compilation dominates)
    "quant": dict(shapes_quant=[(1, 4096), (333, 5000), (8, 20000), (2048, 8192)], shapes_mm=[], dtypes=()),
    "mm_fp16": dict(
        shapes_quant=[],
        shapes_mm=[(1, 4096, 4096), (16, 1000, 777), (40, 512, 300), (512, 1024, 4096)],
        dtypes=(torch.float16,),
    ),
    "mm_bf16": dict(
        shapes_quant=[],
        shapes_mm=[(1, 4096, 4096), (16, 1000, 777), (40, 512, 300), (512, 1024, 4096)],
        dtypes=(torch.bfloat16,),
    ),
    "mm_fp32": dict(shapes_quant=[], shapes_mm=[(70, 200, 256)], dtypes=(torch.float32,)),
}


@pytest.mark.gpu
@pytest.mark.parametrize("part", sorted(_GPU_PARTS))
def test_triton_kernels_full_size_gpu(monkeypatch: pytest.MonkeyPatch, part: str) -> None:
    from bnb_kernels.backends.triton import int8 as T

    monkeypatch.setattr(T, "AUTOTUNE", False)  # one tile config: fewer compilations
    fails = check_all("cuda", **_GPU_PARTS[part])
    if part == "quant":
        fails += check_quant_variant("cuda", [(333, 1000), (2049, 4096)], ONE_PASS_ROW_ELEMS=16384)
        fails += check_quant_variant("cuda", [(333, 1000), (70, 4096)], ONE_PASS_MAX_K=512)
    assert not fails, fails


@pytest.mark.gpu
def test_fused_forward_has_no_host_sync_and_captures_in_a_cuda_graph(monkeypatch: pytest.MonkeyPatch) -> None:
    from bnb_kernels.backends.reference import int8 as ref
    from bnb_kernels.backends.triton import int8 as T

    monkeypatch.setattr(T, "AUTOTUNE", False)

    _W, CB, SCB = _weight(1024, 512, "cuda", 0)
    for M, t in ((4, 6.0), (300, 6.0), (300, 0.0)):
        x = _activations(M, 512, torch.float16, "cuda", 1, outliers=True)
        bias = torch.randn(1024, device="cuda", dtype=torch.float16)
        eager = torch.ops.bitsandbytes.int8_linear_fused(x, CB, SCB, bias, t)  # warm up (autotune, compile)
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            torch.ops.bitsandbytes.int8_linear_fused(x, CB, SCB, bias, t)
        finally:
            torch.cuda.set_sync_debug_mode("default")
        graph = torch.cuda.CUDAGraph()
        stream = torch.cuda.Stream()
        with torch.cuda.stream(stream):
            with torch.cuda.graph(graph):
                out = torch.ops.bitsandbytes.int8_linear_fused(x, CB, SCB, bias, t)
        x.copy_(_activations(M, 512, torch.float16, "cuda", 2, outliers=True))
        graph.replay()
        torch.cuda.synchronize()
        exp = ref.int8_linear_fused(x.cpu(), CB.cpu(), SCB.cpu(), bias.cpu(), t)
        assert _rel(out.cpu(), exp) < (2e-3 if M > 16 else 2e-2)
        assert eager.shape == out.shape


if __name__ == "__main__":
    sys.exit(_interpreter_main())


@pytest.mark.gpu
def test_outlier_count_read_back() -> None:
    from bnb_kernels.backends.reference import int8 as ref
    from bnb_kernels.backends.triton import int8 as T

    for dtype in (torch.int32, torch.int64):
        for value in (0, 7, 123456789):
            assert T._read_count(torch.tensor([value], dtype=dtype, device="cuda")) == value
    A = _activations(64, 300, torch.float16, "cuda", 3, outliers=True)
    got = T.int8_vectorwise_quant(A, 6.0)
    exp = ref.row_quant(A.cpu(), 6.0)
    assert all(torch.equal(g.cpu(), e) for g, e in zip(got, exp))


def test_int8_to_fp16_permute_trick_is_exact_for_every_byte() -> None:
    """The PTX of ``_int8_to_f16`` (xor, two prmt, sub.f16x2), run by the PTX emulator on
    all 256 codes: every code comes out as the exact fp16 of its value."""
    pytest.importorskip("triton")
    from bnb_kernels.backends.triton import int8 as T
    from bnb_kernels.backends.triton.ptx_emulator import from_bits16, run_ptx

    asm = T._I8_F16_ASM.value if hasattr(T._I8_F16_ASM, "value") else T._I8_F16_ASM
    codes = torch.arange(-128, 128, dtype=torch.int64)
    words = (codes & 0xFF).reshape(-1, 4)  # 4 codes per 32-bit word, code i in byte i
    w = words[:, 0] | (words[:, 1] << 8) | (words[:, 2] << 16) | (words[:, 3] << 24)
    regs = run_ptx(asm, {"$2": w})
    lo, hi = regs["$0"], regs["$1"]  # codes 0, 1 in the halves of $0; codes 2, 3 in $1
    halves = torch.stack([lo, lo >> 16, hi, hi >> 16], dim=1).reshape(-1)
    assert torch.equal(from_bits16(halves, torch.float16).float(), codes.float())


def test_autotuned_configs_compile_ahead_with_what_the_autotuner_passes(monkeypatch: pytest.MonkeyPatch) -> None:
    """A shape's first call compiles every configuration of the autotuner on a few threads
    (``_precompile_configs``) before the autotuner times them: each with the call's
    constexprs plus the configuration's own values and launch options, as the autotuner runs
    it, the first one alone, and nothing when one thread is asked for."""
    triton = pytest.importorskip("triton")
    from bnb_kernels.backends.triton import _common
    from bnb_kernels.backends.triton import int8 as T

    events: list = []

    class FakeKernel:
        def warmup(self, *args, grid, **kwargs):
            events.append(("warm", args, grid, kwargs))

    class FakeTuner:
        def __init__(self) -> None:
            self.fn = FakeKernel()
            self.configs = [
                triton.Config({"BLOCK_N": 16 * (i + 1), "BLOCK_K": 128}, num_warps=4, num_stages=2 + i)
                for i in range(5)
            ]
            self.best_config = self.configs[2]
            self.configs_timings: dict = {}

        def __getitem__(self, grid):
            return lambda *args, **kwargs: events.append(("run", args, grid, kwargs))

    tuner = FakeTuner()
    args, flags = ("x", "w", 7), {"HAS_BIAS": False, "FAST_CVT": True}
    monkeypatch.setenv(_common.COMPILE_THREADS_ENV, "4")
    best = T._tune("w8a16", tuner, ("test-key",), 16, 64, args, flags)
    assert best == ({"BLOCK_N": 48, "BLOCK_K": 128}, 4, 4)
    warms = [e for e in events if e[0] == "warm"]
    assert events[-1][0] == "run" and len(warms) == 5 and warms[0][3]["BLOCK_N"] == 16
    for cfg in tuner.configs:
        want = {**flags, **cfg.kwargs, "num_warps": cfg.num_warps, "num_stages": cfg.num_stages}
        assert any(w[1] == args and all(w[3].get(k) == v for k, v in want.items()) for w in warms), cfg
    events.clear()
    monkeypatch.setenv(_common.COMPILE_THREADS_ENV, "1")
    T._precompile_configs(tuner, None, args, flags)
    assert not events
    T._BEST.pop(("test-key",), None)
    T._TIMINGS.pop(("test-key",), None)
