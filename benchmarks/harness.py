"""Benchmark harness shared by every ``benchmarks/<family>.py``.

A benchmark module builds a :class:`Bench`, times its cases with :meth:`Bench.case` (or
:meth:`Bench.time` + :meth:`Bench.record` when it needs a baseline first), and calls
:meth:`Bench.finish`, which prints a markdown table and writes JSON, the same table as
markdown and, when matplotlib imports, a PNG plot.

Timing:

- CPU: ``time.perf_counter`` around each call; warm-up calls first, then the median of
  the repeats (as many as fit in ``--budget`` seconds, between ``--min-repeats`` and
  ``--max-repeats``).
- CUDA: ``triton.testing.do_bench`` with ``return_mode="median"``.

Inputs rotate: a case gets a list of argument tuples and each call takes the next one, so
an op never finds its input already in cache (:func:`copies_for` says how many copies
exceed the last-level cache).

Every row carries the bytes it moves (reads + writes, the op's minimum), the bandwidth
that gives, and the fraction of a ceiling measured in the same run: device-to-device
copy bandwidth on CUDA, ``Tensor.copy_`` (a parallel memcpy) on the CPU, both counted as
read + write.
"""

from __future__ import annotations

import argparse
import json
import math
import operator
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

RESULTS_DIR = Path(__file__).parent / "results"

__all__ = [
    "Bench",
    "Result",
    "Target",
    "copies_for",
    "parse_args",
]


_OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt}


@dataclass(frozen=True)
class Target:
    """A goal for one metric of a row, e.g. ``Target("GBps", ">=", 2000, "ANCHORS.md H100")``."""

    metric: str
    op: str
    value: float
    source: str = ""

    def __post_init__(self) -> None:
        if self.op not in _OPS:
            raise ValueError(f"Target.op must be one of {sorted(_OPS)}, got {self.op!r}")

    def met(self, metrics: dict[str, Any]) -> bool | None:
        value = metrics.get(self.metric)
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return None
        return bool(_OPS[self.op](value, self.value))

    def describe(self) -> str:
        unit = {"ms": " ms", "GBps": " GB/s"}.get(self.metric, "")
        name = "" if self.metric in ("ms", "GBps") else f"{self.metric} "
        return f"{name}{self.op} {self.value:g}{unit}"


@dataclass
class Result:
    name: str
    ms: float
    bytes_moved: float | None
    GBps: float | None
    fraction_of_ceiling: float | None
    target: str | None
    target_source: str | None
    met: bool | None
    extra: dict[str, Any] = field(default_factory=dict)


def copies_for(nbytes_per_input: float, device: str) -> int:
    """How many copies of an input to rotate through so the set exceeds the cache.

    CUDA: 256 MB (5x an H100's L2); CPU: 128 MB (well past a server L3 slice). At least 1,
    at most 8.
    """
    budget = 256e6 if device == "cuda" else 128e6
    return int(min(8, max(1, math.ceil(budget / max(1.0, nbytes_per_input)))))


def parse_args(suite: str, argv: Sequence[str] | None = None, description: str | None = None) -> argparse.Namespace:
    """The command line every benchmark module shares."""
    parser = argparse.ArgumentParser(prog=f"python -m benchmarks.{suite}", description=description)
    parser.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"], help="default: cuda if available")
    parser.add_argument(
        "--json", type=Path, default=None, help=f"JSON output (default {RESULTS_DIR}/{suite}-<device>.json)"
    )
    parser.add_argument("--md", type=Path, default=None, help="markdown table output (default: beside the JSON)")
    parser.add_argument("--no-plot", action="store_true", help="skip the PNG plot even if matplotlib imports")
    parser.add_argument("--only", default="", help="comma-separated substrings: run only the cases whose name has one")
    parser.add_argument("--budget", type=float, default=1.0, help="CPU: seconds of timed repeats per case (default 1)")
    parser.add_argument("--min-repeats", type=int, default=3)
    parser.add_argument("--max-repeats", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=2, help="CPU warm-up calls (GPU: do_bench's own warm-up)")
    args = parser.parse_args(argv)
    if args.device == "auto":
        args.device = "cuda" if torch.cuda.is_available() else "cpu"
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if args.min_repeats < 1 or args.max_repeats < args.min_repeats:
        parser.error("need 1 <= --min-repeats <= --max-repeats")
    args.suite = suite
    return args


def _device_name(device: str) -> str:
    if device == "cuda":
        return torch.cuda.get_device_name()
    name = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                name = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{name} ({torch.get_num_threads()} threads)"


def _versions() -> dict[str, str]:
    out = {"python": platform.python_version(), "torch": torch.__version__}
    for mod in ("triton", "bnb_kernels", "bnb_quant", "bnb_nn", "bnb_optim"):
        module = sys.modules.get(mod)
        if module is None:
            try:
                module = __import__(mod)
            except Exception:  # an absent or broken optional module is just not listed
                continue
        out[mod] = str(getattr(module, "__version__", "?"))
    return out


class Bench:
    """Times cases on one device and collects their rows; see the module docstring."""

    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.suite: str = args.suite
        self.device: str = args.device
        self.only = [s for s in args.only.split(",") if s]
        self.results: list[Result] = []
        self.ceiling_GBps = self._measure_ceiling()
        print(
            f"# {self.suite} on {self.device}: {_device_name(self.device)}; "
            f"copy ceiling {self.ceiling_GBps:.1f} GB/s (read + write)",
            flush=True,
        )

    # -- timing ----------------------------------------------------------------------------
    def wanted(self, name: str) -> bool:
        return not self.only or any(s in name for s in self.only)

    def time(self, fn: Callable[..., Any], inputs: Sequence[tuple[Any, ...]] | None = None) -> float:
        """Median milliseconds of ``fn(*inputs[i])``, rotating ``i`` on every call."""
        rotation = list(inputs) if inputs else [()]
        state = {"i": 0}

        def call() -> Any:
            args = rotation[state["i"] % len(rotation)]
            state["i"] += 1
            return fn(*args)

        if self.device == "cuda":
            import triton.testing

            return float(triton.testing.do_bench(call, warmup=25, rep=100, return_mode="median"))
        return self._time_cpu(call)

    def _time_cpu(self, call: Callable[[], Any]) -> float:
        for _ in range(max(0, self.args.warmup)):
            call()
        times: list[float] = []
        start = time.perf_counter()
        while len(times) < self.args.max_repeats:
            t0 = time.perf_counter()
            call()
            times.append(time.perf_counter() - t0)
            if len(times) >= self.args.min_repeats and time.perf_counter() - start >= self.args.budget:
                break
        return statistics.median(times) * 1e3

    def _measure_ceiling(self) -> float:
        if self.device == "cuda":
            n = 1 << 28  # 1 GiB of fp32
            a = torch.empty(n, dtype=torch.float32, device="cuda").uniform_()
            b = torch.empty_like(a)
            ms = self.time(lambda: b.copy_(a))
            del a, b
            torch.cuda.empty_cache()
        else:
            n = 1 << 25  # 128 MiB of fp32
            a = torch.rand(n, dtype=torch.float32)
            b = torch.empty_like(a)
            ms = self.time(lambda: b.copy_(a))
        return 2 * n * 4 / ms / 1e6

    # -- rows ------------------------------------------------------------------------------
    def record(
        self,
        name: str,
        ms: float,
        bytes_moved: float | None = None,
        target: Target | None = None,
        **extra: Any,
    ) -> Result:
        """Add a row from an already measured time; ``extra`` metrics go to JSON and the table."""
        gbps = bytes_moved / ms / 1e6 if bytes_moved else None
        frac = gbps / self.ceiling_GBps if gbps is not None else None
        metrics = {"ms": ms, "GBps": gbps, "fraction_of_ceiling": frac, **extra}
        row = Result(
            name=name,
            ms=ms,
            bytes_moved=bytes_moved,
            GBps=gbps,
            fraction_of_ceiling=frac,
            target=target.describe() if target else None,
            target_source=target.source if target else None,
            met=target.met(metrics) if target else None,
            extra=extra,
        )
        self.results.append(row)
        shown = f"{name}: {ms:.3f} ms"
        if gbps is not None:
            shown += f", {gbps:.4g} GB/s ({100 * frac:.3g}% of copy)"
        if target:
            shown += f"  [target {row.target}: {'met' if row.met else 'NOT met'}]"
        print(shown, flush=True)
        return row

    def case(
        self,
        name: str,
        fn: Callable[..., Any],
        inputs: Sequence[tuple[Any, ...]] | None = None,
        bytes_moved: float | None = None,
        target: Target | None = None,
        **extra: Any,
    ) -> Result | None:
        """Time ``fn`` over rotating ``inputs`` and record the row (None if ``--only`` skips it)."""
        if not self.wanted(name):
            return None
        return self.record(name, self.time(fn, inputs), bytes_moved=bytes_moved, target=target, **extra)

    # -- output ----------------------------------------------------------------------------
    def table(self) -> str:
        extra_keys: list[str] = []
        for r in self.results:
            for k in r.extra:
                if k not in extra_keys:
                    extra_keys.append(k)
        head = ["case", "ms", "GB/s", "% of copy", *extra_keys, "target", "met"]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for r in self.results:
            cells = [
                f"`{r.name}`",
                f"{r.ms:.3f}",
                "-" if r.GBps is None else f"{r.GBps:.4g}",
                "-" if r.fraction_of_ceiling is None else f"{100 * r.fraction_of_ceiling:.3g}%",
                *(_fmt(r.extra.get(k)) for k in extra_keys),
                r.target or "-",
                {True: "yes", False: "**no**", None: "-"}[r.met],
            ]
            lines.append("| " + " | ".join(cells) + " |")
        return "\n".join(lines)

    def finish(self) -> dict[str, Any]:
        """Print the table; write JSON, markdown and (if matplotlib imports) a PNG."""
        json_path: Path = self.args.json or RESULTS_DIR / f"{self.suite}-{self.device}.json"
        md_path: Path = self.args.md or json_path.with_suffix(".md")
        json_path.parent.mkdir(parents=True, exist_ok=True)
        md_path.parent.mkdir(parents=True, exist_ok=True)
        header = (
            f"## {self.suite} on {self.device}: {_device_name(self.device)}\n\n"
            f"Copy ceiling {self.ceiling_GBps:.1f} GB/s (read + write), measured in this run. "
            f"Versions: {', '.join(f'{k} {v}' for k, v in _versions().items())}.\n"
        )
        table = self.table()
        print("\n" + header + "\n" + table, flush=True)
        report = {
            "suite": self.suite,
            "device": self.device,
            "device_name": _device_name(self.device),
            "versions": _versions(),
            "threads": torch.get_num_threads(),
            "ceiling_copy_GBps": self.ceiling_GBps,
            "results": [asdict(r) for r in self.results],
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "env": {k: v for k, v in os.environ.items() if k.startswith(("BNB_", "OMP_", "TRITON_"))},
        }
        json_path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        md_path.write_text(header + "\n" + table + "\n")
        written = [str(json_path), str(md_path)]
        if not self.args.no_plot:
            png = self._plot(json_path.with_suffix(".png"))
            if png:
                written.append(str(png))
        print("\nwrote " + ", ".join(written), flush=True)
        return report

    def _plot(self, path: Path) -> Path | None:
        try:
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
        except ImportError:
            return None
        rows = [r for r in self.results if r.fraction_of_ceiling is not None]
        if not rows:
            return None
        fig, ax = plt.subplots(figsize=(8, 0.45 * len(rows) + 1.2))
        colors = ["tab:green" if r.met else "tab:red" if r.met is False else "tab:blue" for r in rows]
        ax.barh([r.name for r in rows], [100 * r.fraction_of_ceiling for r in rows], color=colors)
        ax.axvline(100, color="black", linewidth=0.8)
        ax.invert_yaxis()
        ax.set_xlabel("% of copy bandwidth (green: target met, red: missed)")
        ax.set_title(f"{self.suite} on {self.device}: {_device_name(self.device)}", fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path


def _fmt(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)
