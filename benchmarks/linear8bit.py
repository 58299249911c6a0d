"""Linear8bitLt (LLM.int8()) against ``torch.nn.Linear`` in fp16, same run, and the
``int8_vectorwise_quant`` op.

    python -m benchmarks.linear8bit --device cpu|cuda [--json out.json] [--only K4096_N4096]

CUDA: the three shapes of ``ANCHORS.md`` (4096->4096, 4096->14336, 14336->4096) at 1, 16,
512 and 4096 tokens, threshold 0 and 6 (with a few outlier columns, as
``anchor_gpu.py`` makes them), modules built exactly as ``anchor_gpu.py linear8bit()`` builds
them (``Linear8bitLt(K, N, bias=False, has_fp16_weights=False, threshold=t)`` with an
``Int8Params`` of the dense weight, ``.cuda()``, inference mode) and timed the same way
(``do_bench`` flushes L2 between calls). Targets (issue 3): threshold 0 at 1-16 tokens
>= 1.5x fp16 dense, at 4096 tokens >= 1.1x; threshold 6 >= 0.9x at every batch;
``int8_vectorwise_quant`` (threshold 6, 4096x8192 fp16) >= 2000 GB/s.
CPU: 4096x4096 at 1 and 32 tokens against fp32 and bf16 dense (no targets).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

import bnb_quant.functional as F
from bnb_nn import Int8Params, Linear8bitLt

from .harness import Bench, Target, parse_args

SHAPES = [(4096, 4096), (4096, 14336), (14336, 4096)]
GPU_BATCHES = (1, 16, 512, 4096)
GRAPH_MAX_M = 512  # also time CUDA-graph replays (GPU time without launch overhead) up to this batch
CPU_BATCHES = (1, 32)
SOURCE = "issue 3 / ANCHORS.md"


def _target(threshold: float, M: int) -> Target | None:
    if threshold > 0:
        return Target("speedup_vs_fp16", ">=", 0.9, SOURCE)
    if M <= 16:
        return Target("speedup_vs_fp16", ">=", 1.5, SOURCE)
    if M >= 4096:
        return Target("speedup_vs_fp16", ">=", 1.1, SOURCE)
    return None


def _path(device: str, M: int, N: int, K: int, threshold: float) -> str:
    if device != "cuda":
        return "native int8"
    from bnb_kernels.backends.triton import int8 as T

    return T.path_taken(M, N, K, torch.float16, threshold, False)


def _quant(A: torch.Tensor, t: float):
    return F.int8_vectorwise_quant(A, threshold=t)


def _call(module: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return module(x)


def _graph_ms(bench: Bench, module: torch.nn.Module, x: torch.Tensor) -> float:
    """Milliseconds of a CUDA-graph replay of ``module(x)``: the GPU time alone, without the
    host's launch overhead (NaN if the forward cannot be captured)."""
    try:
        side = torch.cuda.Stream()
        side.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(side):
            module(x)
        torch.cuda.current_stream().wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            module(x)
        return bench.time(graph.replay)
    except Exception as exc:  # report, keep benchmarking
        print(f"graph capture failed: {exc!r}"[:300], flush=True)
        return float("nan")


def _host_us(fn, *args, n: int = 200) -> float:
    """Host microseconds per call when calls are issued back to back (launch overhead where
    the GPU work is shorter than it)."""
    import time

    for _ in range(5):
        fn(*args)
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t0 = time.perf_counter()
    for _ in range(n):
        fn(*args)
    host = (time.perf_counter() - t0) / n * 1e6
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return host


def run_quant(bench: Bench) -> None:
    dev = bench.device
    rows, cols = (4096, 8192) if dev == "cuda" else (1024, 4096)
    A = torch.randn(rows, cols, dtype=torch.float16, device=dev)
    byts = 3 * A.numel()  # read fp16, write int8
    for t in (6.0, 0.0):
        name = f"int8_vectorwise_quant_{rows}x{cols}_t{t:g}"
        target = Target("GBps", ">=", 2000, SOURCE) if (dev == "cuda" and t > 0) else None
        try:
            bench.case(name, _quant, [(A, t)], bytes_moved=byts, target=target)
        except Exception as exc:  # report and go on with the other cases
            print(f"{name} FAILED: {exc!r}"[:500], flush=True)
    if dev == "cuda":
        # the fused kernel alone, without the op's one host sync (the outlier count it returns)
        from bnb_kernels.backends.triton import int8 as T

        bench.case(f"row_quant_kernel_only_{rows}x{cols}_t6", T.row_quant, [(A, 6.0)], bytes_moved=byts)


def run_shape(bench: Bench, K: int, N: int, batches: Sequence[int], dense_dtypes: Sequence[torch.dtype]) -> None:
    dev = bench.device
    names = [f"K{K}_N{N}_M{M}_t{t:g}" for t in (0.0, 6.0) for M in batches]
    if not any(bench.wanted(n) for n in names):
        return
    dense = {dt: torch.nn.Linear(K, N, bias=False, dtype=dt, device=dev) for dt in dense_dtypes}
    base = dense[dense_dtypes[0]]
    for t in (0.0, 6.0):
        m = Linear8bitLt(K, N, bias=False, has_fp16_weights=False, threshold=t)
        m.weight = Int8Params(base.weight.data.cpu(), requires_grad=False, has_fp16_weights=False)
        m = m.cuda() if dev == "cuda" else m.cpu()
        for M in batches:
            name = f"K{K}_N{N}_M{M}_t{t:g}"
            if not bench.wanted(name):
                continue
            x = torch.randn(M, K, dtype=dense_dtypes[0], device=dev)
            if t > 0:
                x[:, :: max(1, K // 8)] *= 20.0  # a few outlier columns, as in real LLM activations
            try:
                with torch.inference_mode():
                    ref = base(x)
                    got = m(x)  # first call: compiles / autotunes the kernels for this shape
                    rel = ((got.float() - ref.float()).norm() / ref.float().norm()).item()
                    t8 = bench.time(_call, [(m, x)])
                    times = {dt: bench.time(_call, [(d, x.to(dt))]) for dt, d in dense.items()}
                    extra = {}
                    for dt, td in times.items():
                        tag = {torch.float16: "fp16", torch.bfloat16: "bf16", torch.float32: "fp32"}[dt]
                        extra[f"{tag}_dense_ms"] = td
                        extra[f"speedup_vs_{tag}"] = td / t8
                    if dev == "cuda" and M <= GRAPH_MAX_M:
                        g8 = _graph_ms(bench, m, x)
                        gd = _graph_ms(bench, base, x)
                        extra.update(graph_ms=g8, graph_dense_ms=gd, graph_speedup=gd / g8)
                        extra.update(host_us=_host_us(m, x), dense_host_us=_host_us(base, x))
            except Exception as exc:  # report and go on with the other cases
                print(f"{name} FAILED: {exc!r}"[:800], flush=True)
                continue
            print("   " + ", ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}" for k, v in extra.items()))
            bench.record(
                name,
                t8,
                bytes_moved=N * K + 4 * N + 2 * M * (K + N),
                target=_target(t, M) if dev == "cuda" else None,
                rel_err_vs_dense=rel,
                path=_path(dev, M, N, K, t),
                **extra,
            )
        del m
    if dev == "cuda" and K == N == 4096 and bench.wanted("int8path"):
        # the int8 (quantize + GEMM) path at 16 tokens, for the choice of SMALL_M
        from bnb_kernels.backends.triton import int8 as T

        m = Linear8bitLt(K, N, bias=False, has_fp16_weights=False, threshold=0.0)
        m.weight = Int8Params(base.weight.data.cpu(), requires_grad=False, has_fp16_weights=False)
        m = m.cuda()
        x = torch.randn(16, K, dtype=dense_dtypes[0], device=dev)
        saved, T.SMALL_M = T.SMALL_M, 0
        saved_mid, T.MID_M = T.MID_M, 0
        try:
            with torch.inference_mode():
                m(x)
                t8 = bench.time(_call, [(m, x)])
                g8 = _graph_ms(bench, m, x)
            bench.record(f"K{K}_N{N}_M16_t0_int8path", t8, graph_ms=g8, path="quant + int8 gemm (forced)")
        except Exception as exc:
            print(f"int8path FAILED: {exc!r}"[:500], flush=True)
        finally:
            T.SMALL_M = saved
            T.MID_M = saved_mid
        del m
    del dense, base
    if dev == "cuda":
        torch.cuda.empty_cache()


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args("linear8bit", argv, description=__doc__)
    bench = Bench(args)
    torch.manual_seed(0)
    run_quant(bench)
    if bench.device == "cuda":
        for K, N in SHAPES:
            run_shape(bench, K, N, GPU_BATCHES, (torch.float16,))
    else:
        run_shape(bench, 4096, 4096, CPU_BATCHES, (torch.float32, torch.bfloat16))
    if bench.device == "cuda":
        from bnb_kernels.backends.triton import int8 as T

        timings = T.tuning_timings()
        for key, vals in timings.items():
            if key[0] in ("one_row", "small_rows", "mid_rows"):
                print("path race", key, vals)
        for key, cfg in T.best_configs().items():
            print("best config", key, cfg)
            for c, t in sorted(timings.get(key, {}).items(), key=lambda kv: kv[1] if isinstance(kv[1], float) else 0):
                print("      ", c, t)
    bench.finish()


if __name__ == "__main__":
    main()
