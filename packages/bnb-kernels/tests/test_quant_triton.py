"""Triton blockwise 8-bit and 4-bit quantization kernels against the reference backend.

Codes, absmax and dequantized values must be bit-identical to ``backends/reference/quant.py``.
Without a GPU the kernels run under the Triton interpreter on CPU tensors, in a subprocess
(``TRITON_INTERPRET=1`` must be set before Triton is imported): running this file as a
script (``python test_quant_triton.py 8bit|4bit|errors``) does those checks and exits
non-zero on a mismatch. With a GPU the ``gpu`` tests run the same checks at full size.
"""

from __future__ import annotations

import os
import random
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest
import torch

FLOATS = (torch.float32, torch.float16, torch.bfloat16)
STORAGES = (torch.uint8, torch.float16, torch.bfloat16, torch.float32)


def _dynamic_code() -> torch.Tensor:
    # The signed dynamic map (the default 8-bit codebook), built here from its definition
    # so this test does not depend on bnb-quant: 7 decades of linear fractions, +-, 0 and 1.
    values = []
    for i in range(7):
        bounds = torch.linspace(0.1, 1, 2**i + 1, dtype=torch.float64)
        means = (bounds[:-1] + bounds[1:]) / 2
        scale = 10 ** (-(6 - i))
        values += (means * scale).tolist() + (-means * scale).tolist()
    values += [0.0, 1.0]
    return torch.tensor(sorted(values), dtype=torch.float32)


def _codes(g: torch.Generator) -> dict[str, torch.Tensor]:
    """8-bit codebooks: the dynamic map, a shuffled one (unsorted), a short one with a duplicate."""
    dyn = _dynamic_code()
    short = torch.sort(torch.rand(15, generator=g) * 2 - 1).values
    short = torch.cat((short, short[3:4]))
    return {"dynamic": dyn, "shuffled": dyn[torch.randperm(256, generator=g)], "short": short}


def _input(n: int, dtype: torch.dtype, g: torch.Generator, special: bool) -> torch.Tensor:
    x = torch.randn(n, generator=g) * float(torch.rand(1, generator=g) * 4 + 0.01)
    if special and n > 300:
        x[5] = float("nan")  # block 0 becomes NaN
        x[n // 2 : n // 2 + 70] = 0.0  # a zero block for block sizes up to 64
        x[n - 3] = float("inf")  # the last block gets absmax inf
        x[n // 3] = -x[n // 3] * 1e-38  # a tiny (denormal in float32) value
        x[n // 4] = 0.0
        x[n // 4 + 1] = -0.0
    if special and n > 1000:
        # A block (for block sizes up to 128) of float32 denormals, zeros of both signs among
        # them: 1 / absmax overflows, so s is +-inf or NaN (0 * inf) there.
        tiny = torch.randn(270, generator=g) * 1e-39
        tiny[::7] = 0.0
        tiny[3::7] = -0.0
        x[n // 2 + 140 : n // 2 + 410] = tiny
    return x.to(dtype)


def _with_ties(x: torch.Tensor, thresholds: torch.Tensor, blocksize: int) -> torch.Tensor:
    """Prepend blocks whose absmax is exactly 1 holding every finite threshold and its two
    float32 neighbours, so the normalized values land exactly on the decision points."""
    t = thresholds[thresholds.isfinite()].to(torch.float32)
    bits = t.view(torch.int32)
    values = torch.cat((t, (bits - 1).view(torch.float32), (bits + 1).view(torch.float32)))
    values = values[values.abs() <= 1]
    per = blocksize - 1
    chunks = values.split(per)
    block = torch.zeros(len(chunks), blocksize)
    block[:, 0] = 1.0
    for i, c in enumerate(chunks):
        block[i, 1 : 1 + c.numel()] = c
    return torch.cat((block.reshape(-1).to(x.dtype), x))


def _same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, dtype and bits (any NaN matches any NaN; -0.0 differs from 0.0)."""
    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    if not a.is_floating_point():
        return torch.equal(a, b)
    nan = a.isnan()
    if not torch.equal(nan, b.isnan()):
        return False
    ints = {2: torch.int16, 4: torch.int32}[a.element_size()]
    return torch.equal(a[~nan].view(ints), b[~nan].view(ints))


def check_8bit(
    device: str, n: int, dtype: torch.dtype, blocksize: int, code: torch.Tensor, tile: int | None,
    variant: str | None = None, knobs: dict | None = None,
) -> list[str]:  # fmt: skip
    """Triton vs reference, both on ``device`` (the reference runs anywhere)."""
    from bnb_kernels.backends.reference import quant as R
    from bnb_kernels.backends.triton import quant as T
    from bnb_kernels.codebooks import codebook_search_table

    g = torch.Generator().manual_seed(n * 7 + blocksize)
    A = _with_ties(_input(n, dtype, g, special=True), codebook_search_table(code)[0], blocksize).to(device)
    code = code.to(device)
    where = f"8-bit n={n} {dtype} bs={blocksize} code={code.numel()} tile={tile} variant={variant} {knobs}"
    fails = []
    q, absmax = T.quantize_blockwise(A, code, blocksize, tile=tile, variant=variant, **(knobs or {}))
    q_ref, absmax_ref = R.quantize_blockwise(A, code, blocksize)
    if not _same(absmax, absmax_ref):
        fails.append(f"{where}: absmax differs")
    if not _same(q, q_ref):
        bad = (q != q_ref).nonzero().flatten()[:5].tolist()
        fails.append(f"{where}: codes differ at {bad}")
    # Dequantize the reference's codes (so a quantize mismatch does not hide this check).
    for out_dtype in {dtype, torch.float32}:
        got = T.dequantize_blockwise(q_ref, absmax_ref, code, blocksize, out_dtype, tile=tile)
        exp = R.dequantize_blockwise(q_ref, absmax_ref, code, blocksize, out_dtype)
        if not _same(got, exp):
            fails.append(f"{where}: dequantize to {out_dtype} differs")
    return fails


def check_4bit(
    device: str, n: int, dtype: torch.dtype, blocksize: int, quant_type: str, storage: torch.dtype,
    tile: int | None, lut: bool | None, variant: str | None = None, knobs: dict | None = None,
) -> list[str]:  # fmt: skip
    from bnb_kernels.backends.reference import quant as R
    from bnb_kernels.backends.triton import quant as T
    from bnb_kernels.codebooks import fourbit_search_table

    g = torch.Generator().manual_seed(n * 5 + blocksize)
    A = _with_ties(_input(n, dtype, g, special=True), fourbit_search_table(quant_type)[0], blocksize).to(device)
    n = A.numel()
    where = f"4-bit n={n} {dtype} bs={blocksize} {quant_type} {storage} tile={tile} lut={lut} variant={variant} {knobs}"
    fails = []
    q, absmax = T.quantize_4bit(A, blocksize, quant_type, storage, tile=tile, lut=lut, variant=variant, **(knobs or {}))
    q_ref, absmax_ref = R.quantize_4bit(A, blocksize, quant_type, storage)
    if not _same(absmax, absmax_ref):
        fails.append(f"{where}: absmax differs")
    if (
        q.shape != q_ref.shape
        or q.dtype != q_ref.dtype
        or not torch.equal(q.view(torch.uint8), q_ref.view(torch.uint8))
    ):
        fails.append(f"{where}: packed codes differ")
    for out_dtype in {dtype, torch.float32}:
        got = T.dequantize_4bit(q_ref, absmax_ref, blocksize, quant_type, (n,), out_dtype, tile=tile)
        exp = R.dequantize_4bit(q_ref, absmax_ref, blocksize, quant_type, (n,), out_dtype)
        if not _same(got, exp):
            fails.append(f"{where}: dequantize to {out_dtype} differs")
    return fails


def check_out_variants(device: str) -> list[str]:
    """The .out ops (contiguous and strided out), 2-d/3-d shapes, and the registry entries."""
    from bnb_kernels.backends.reference import quant as R
    from bnb_kernels.backends.triton import quant as T

    g = torch.Generator().manual_seed(3)
    fails = []
    A = _input(3 * 5 * 67, torch.bfloat16, g, special=False).reshape(3, 5, 67)
    code = _dynamic_code()
    q, absmax = T.quantize_blockwise(A.to(device), code.to(device), 64)
    q_ref, absmax_ref = R.quantize_blockwise(A, code, 64)
    if q.shape != A.shape or not torch.equal(q.cpu(), q_ref):
        fails.append("8-bit 3-d shape")
    exp = R.dequantize_blockwise(q_ref, absmax_ref, code, 64, torch.float16)
    out = torch.full(A.shape, float("nan"), dtype=torch.float16, device=device)
    T.dequantize_blockwise_out(q.to(device), absmax.to(device), code.to(device), 64, torch.float16, out)
    if not _same(out.cpu(), exp):
        fails.append("dequantize_blockwise.out")
    strided = torch.full((3, 5, 134), float("nan"), dtype=torch.float16, device=device)[..., ::2]
    T.dequantize_blockwise_out(q.to(device), absmax.to(device), code.to(device), 64, torch.float16, strided)
    if not _same(strided.cpu().contiguous(), exp):
        fails.append("dequantize_blockwise.out, strided out")
    q4, absmax4 = T.quantize_4bit(A.to(device), 32, "fp4", torch.uint8)
    exp = R.dequantize_4bit(q4.cpu(), absmax4.cpu(), 32, "fp4", A.shape, torch.bfloat16)
    out = torch.full(A.shape, float("nan"), dtype=torch.bfloat16, device=device)
    T.dequantize_4bit_out(q4, absmax4, 32, "fp4", list(A.shape), torch.bfloat16, out)
    if not _same(out.cpu(), exp):
        fails.append("dequantize_4bit.out")
    strided = torch.full((3, 10, 67), float("nan"), dtype=torch.bfloat16, device=device)[:, ::2]
    T.dequantize_4bit_out(q4, absmax4, 32, "fp4", list(A.shape), torch.bfloat16, strided)
    if not _same(strided.cpu().contiguous(), exp):
        fails.append("dequantize_4bit.out, strided out")
    empty = torch.empty(0, dtype=torch.float32, device=device)
    q0, a0 = T.quantize_4bit(empty, 64, "nf4", torch.uint8)
    q8, a8 = T.quantize_blockwise(empty, code.to(device), 64)
    if q0.shape != (0, 1) or a0.numel() != 0 or q8.numel() != 0 or a8.numel() != 0:
        fails.append("empty input")
    return fails


def check_code_tables(device: str) -> list[str]:
    """The 8-bit search tables follow the code: in-place changes and inference tensors."""
    from bnb_kernels.backends.reference import quant as R
    from bnb_kernels.backends.triton import quant as T

    fails = []
    g = torch.Generator().manual_seed(11)
    A = torch.randn(700, generator=g).to(device)
    code = _dynamic_code().to(device)
    q1, _ = T.quantize_blockwise(A, code, 64)
    code.mul_(0.5)  # same storage, new values
    q2, _ = T.quantize_blockwise(A, code, 64)
    if not torch.equal(q2, R.quantize_blockwise(A, code, 64)[0]) or torch.equal(q1, q2):
        fails.append("8-bit tables not rebuilt after an in-place change of the code")
    with torch.inference_mode():
        code = _dynamic_code().to(device)
        A = torch.randn(700, generator=g).to(device)
        if not torch.equal(T.quantize_blockwise(A, code, 64)[0], R.quantize_blockwise(A, code, 64)[0]):
            fails.append("8-bit quantize under inference_mode")
    return fails


def check_errors(device: str) -> list[str]:
    """Bad input raises ValueError/TypeError naming what was expected."""
    from bnb_kernels.backends.triton import quant as T

    code = _dynamic_code().to(device)
    A = torch.randn(256, device=device)
    q, absmax = T.quantize_blockwise(A, code, 64)
    q4, absmax4 = T.quantize_4bit(A, 64, "nf4", torch.uint8)
    cases: list[tuple[str, type[Exception], Callable[[], object]]] = [
        ("int input", TypeError, lambda: T.quantize_blockwise(A.int(), code, 64)),
        ("blocksize 32 for 8-bit", ValueError, lambda: T.quantize_blockwise(A, code, 32)),
        ("blocksize 100", ValueError, lambda: T.quantize_4bit(A, 100, "nf4", torch.uint8)),
        ("quant_type", ValueError, lambda: T.quantize_4bit(A, 64, "int4", torch.uint8)),
        ("quant_storage", TypeError, lambda: T.quantize_4bit(A, 64, "nf4", torch.int32)),
        ("storage size", ValueError, lambda: T.quantize_4bit(A[:10], 64, "nf4", torch.float32)),
        ("code length", ValueError, lambda: T.quantize_blockwise(A, torch.zeros(300, device=device), 64)),
        ("8-bit variant", ValueError, lambda: T.quantize_blockwise(A, code, 64, variant="fast")),
        ("4-bit variant", ValueError, lambda: T.quantize_4bit(A, 64, "nf4", torch.uint8, variant="grid")),
        ("per_thread", ValueError, lambda: T.quantize_4bit(A, 64, "nf4", torch.uint8, variant="rows", per_thread=48)),
        ("num_warps", ValueError, lambda: T.quantize_blockwise(A, code, 64, variant="grid", num_warps=3)),
        ("code dtype", TypeError, lambda: T.quantize_blockwise(A, torch.zeros(256, dtype=torch.int32, device=device), 64)),
        ("float codes", TypeError, lambda: T.dequantize_blockwise(A, absmax, code, 64, torch.float32)),
        ("short absmax", ValueError, lambda: T.dequantize_blockwise(q, absmax[:2], code, 64, torch.float32)),
        ("out dtype", TypeError, lambda: T.dequantize_blockwise(q, absmax, code, 64, torch.int8)),
        ("short packed", ValueError, lambda: T.dequantize_4bit(q4, absmax4, 64, "nf4", (1000,), torch.float32)),
        ("bad shape", TypeError, lambda: T.dequantize_4bit(q4, absmax4, 64, "nf4", (2.5,), torch.float32)),
        (
            "out shape",
            ValueError,
            lambda: T.dequantize_4bit_out(q4, absmax4, 64, "nf4", (256,), torch.float32, torch.empty(255, device=device)),
        ),
        (
            "out dtype",
            TypeError,
            lambda: T.dequantize_4bit_out(q4, absmax4, 64, "nf4", (256,), torch.float32, torch.empty(256, device=device, dtype=torch.half)),
        ),
    ]  # fmt: skip
    fails = []
    for what, exc, fn in cases:
        try:
            fn()
        except exc as e:
            if not str(e):
                fails.append(f"{what}: empty message")
        except Exception as e:
            fails.append(f"{what}: raised {type(e).__name__} ({e}), expected {exc.__name__}")
        else:
            fails.append(f"{what}: no error, expected {exc.__name__}")
    return fails


# Kernel variants (see backends/triton/quant.py): every case runs each of them.
VARIANTS_8BIT = ("grid", "tree")
VARIANTS_4BIT = ("rows", "tiles")
# Launch shapes the GPU tests check at the anchor sizes besides the defaults (the other shapes
# scripts/gpu-bench-quant.py times are checked there, bit for bit, on the timed outputs).
ROWS_SHAPES = ({}, {"pair": True, "num_warps": 8}, {"pair": False, "per_thread": 32})
GRID_SHAPES = ({}, {"pair": False, "stream": False}, {"num_warps": 8, "per_thread": 32})


def run_8bit(
    device: str, sizes: list[int], tiles: tuple[int | None, ...], seed: int, knobs: tuple[dict, ...] = ({},)
) -> list[str]:
    rng = random.Random(seed)
    g = torch.Generator().manual_seed(seed)
    codes = _codes(g)
    fails = []
    for i, n in enumerate(sizes):
        dtype = FLOATS[i % 3]
        blocksize = rng.choice((64, 128, 256, 512, 1024, 2048, 4096))
        name = ("dynamic", "shuffled", "short")[i % 3] if i >= 3 else "dynamic"
        for variant in VARIANTS_8BIT:
            extra = knobs[i % len(knobs)] if variant == "grid" else {}
            fails += check_8bit(device, n, dtype, blocksize, codes[name], tiles[i % len(tiles)], variant, extra)
    return fails


def run_4bit(
    device: str, sizes: list[int], tiles: tuple[int | None, ...], seed: int, knobs: tuple[dict, ...] = ({},)
) -> list[str]:
    rng = random.Random(seed)
    fails = []
    for i, n in enumerate(sizes):
        dtype = FLOATS[i % 3]
        blocksize = rng.choice((32, 64, 128, 256, 512, 1024, 2048, 4096))
        quant_type = ("nf4", "fp4")[i % 2] if i % 4 != 3 else "nf4"
        storage = STORAGES[(i // 2) % 4]
        while ((n + 1) // 2) % storage.itemsize:
            n += 1
        tile = tiles[i % len(tiles)]
        fails += check_4bit(
            device, n, dtype, blocksize, quant_type, storage, tile, (True, False)[(i // 4) % 2], "tiles"
        )
        if quant_type == "nf4":  # the "rows" variant serves NF4 (FP4 falls back to "tiles")
            fails += check_4bit(
                device, n, dtype, blocksize, quant_type, storage, tile, None, "rows", knobs[i % len(knobs)]
            )
    return fails


def _interpreted(part: str, seed: int) -> list[str]:
    # Few programs per launch (the interpreter's cost is per program): large tiles, small n;
    # the "rows" variants get small launch shapes so that their full-tile path runs.
    rng = random.Random(seed)
    small = (
        {"num_warps": 1, "per_thread": 16, "pair": False},
        {"num_warps": 2, "per_thread": 32, "pair": True},
        {"num_warps": 1, "per_thread": 64, "pair": False},
        {"num_warps": 1, "per_thread": 16, "pair": True},
    )
    if part == "8bit":
        sizes = [1, 63, 4097] + [rng.randrange(2, 6000) for _ in range(4)]
        return run_8bit("cpu", sizes, (4096, 512), seed, small)
    if part == "4bit":
        sizes = [1, 2, 31, 4097] + [rng.randrange(2, 6000) for _ in range(6)]
        return run_4bit("cpu", sizes, (4096, 256), seed, small)
    return check_errors("cpu") + check_out_variants("cpu") + check_code_tables("cpu")


def _run_interpreted(part: str) -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    env = dict(os.environ, TRITON_INTERPRET="1", PYTHONWARNINGS="ignore")
    proc = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), part, str(seed)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, f"seed {seed}\n{proc.stdout[-4000:]}\n{proc.stderr[-4000:]}"
    assert "checked" in proc.stdout


@pytest.mark.parametrize("part", ["8bit", "4bit", "errors"])
def test_interpreted(part: str) -> None:
    pytest.importorskip("triton")
    _run_interpreted(part)


def test_registered_for_cuda() -> None:
    pytest.importorskip("triton")
    from bnb_kernels import implementations

    for op in ("quantize_blockwise", "dequantize_blockwise", "dequantize_blockwise.out"):
        assert any(i.backend == "triton" and "cuda" in i.device_types for i in implementations(op)), op
    for op in ("quantize_4bit", "dequantize_4bit", "dequantize_4bit.out"):
        assert any(i.backend == "triton" and "cuda" in i.device_types for i in implementations(op)), op


def test_nf4_bin_table_matches_reference() -> None:
    """The NF4 bin tables are accepted (they agree with the reference on their check values)."""
    pytest.importorskip("triton")
    from bnb_kernels.backends.triton import quant as T

    assert T._fourbit_lut("nf4") is not None
    assert T._rows4_entries("nf4") is not None


def test_rows4_table_emulation_is_exact() -> None:
    """The "rows" NF4 table, emulated as the kernel computes it, gives the reference codes on
    fresh random values (all of [-1, 1], the thresholds' float32 neighbourhoods) and +-inf."""
    pytest.importorskip("triton")
    from bnb_kernels.backends.reference.quant import fourbit_codes
    from bnb_kernels.backends.triton import quant as T
    from bnb_kernels.codebooks import fourbit_search_table

    entries = T._rows4_entries("nf4")
    g = torch.Generator().manual_seed(int.from_bytes(os.urandom(4), "little"))
    mids = fourbit_search_table("nf4")[0]
    near = mids.view(torch.int32)[None, :] + torch.randint(-300, 301, (200, 15), generator=g, dtype=torch.int32)
    s = torch.cat((torch.rand(200_000, generator=g) * 2 - 1, near.view(torch.float32).reshape(-1)))
    s = torch.cat((s, torch.tensor([float("inf"), -float("inf"), 1.0, -1.0, 0.0, -0.0])))
    assert torch.equal(T._emulate_rows4(s, entries), fourbit_codes(s, "nf4").long())


def test_grid_table_needs_finite_codebook() -> None:
    """The 8-bit "grid" path is refused for a codebook whose NaN/inf codes it cannot give."""
    pytest.importorskip("triton")
    from bnb_kernels.backends.triton import quant as T

    assert T._code8_tables(_dynamic_code(), torch.device("cpu"))[2] is not None
    wide = torch.tensor([-3.0, -0.5, 0.5, 3.0])  # -inf/+inf thresholds below/above the grid
    assert T._code8_tables(wide, torch.device("cpu"))[2] is None


def test_variant_selection(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argument first, then $BNB_TRITON_<OP>_VARIANT, then TUNING; unknown names raise."""
    pytest.importorskip("triton")
    from bnb_kernels.backends.triton import quant as T

    monkeypatch.delenv("BNB_TRITON_QUANTIZE_4BIT_VARIANT", raising=False)
    assert T._variant("quantize_4bit", None, ("rows", "tiles")) == T.TUNING["quantize_4bit"]["variant"]
    monkeypatch.setenv("BNB_TRITON_QUANTIZE_4BIT_VARIANT", "tiles")
    assert T._variant("quantize_4bit", None, ("rows", "tiles")) == "tiles"
    assert T._variant("quantize_4bit", "rows", ("rows", "tiles")) == "rows"
    monkeypatch.setenv("BNB_TRITON_QUANTIZE_4BIT_VARIANT", "bogus")
    with pytest.raises(ValueError, match="variant"):
        T._variant("quantize_4bit", None, ("rows", "tiles"))


@pytest.mark.gpu
def test_gpu_8bit_full_size() -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    sizes = [4096 * 4096 + 1000, 255, 1_000_003]
    fails = run_8bit("cuda", sizes, (None,), seed, ({}, {"num_warps": 8, "pair": False}, {"per_thread": 32}))
    # The anchor case, several launch shapes.
    fails += check_8bit("cuda", 64 * 2**20, torch.float32, 256, _dynamic_code(), None, "tree")
    for knobs in GRID_SHAPES:
        fails += check_8bit("cuda", 64 * 2**20, torch.float32, 256, _dynamic_code(), None, "grid", knobs)
    assert not fails, f"seed {seed}: {fails}"


@pytest.mark.gpu
def test_gpu_4bit_full_size() -> None:
    seed = int.from_bytes(os.urandom(4), "little")
    sizes = [4096 * 4096 + 2, 3, 1_000_001, 5 * 4096 + 7]
    fails = run_4bit("cuda", sizes, (None,), seed, ({}, {"num_warps": 8, "pair": True}, {"per_thread": 32}))
    # The anchor case, every variant, several launch shapes.
    for quant_type in ("nf4", "fp4"):
        for lut in (True, False):
            fails += check_4bit("cuda", 8192 * 8192, torch.bfloat16, 64, quant_type, torch.uint8, None, lut, "tiles")
    for knobs in ROWS_SHAPES:
        fails += check_4bit("cuda", 8192 * 8192, torch.bfloat16, 64, "nf4", torch.uint8, None, None, "rows", knobs)
    assert not fails, f"seed {seed}: {fails}"


@pytest.mark.gpu
def test_gpu_out_variants_and_errors() -> None:
    fails = check_out_variants("cuda") + check_errors("cuda") + check_code_tables("cuda")
    assert not fails, fails


@pytest.mark.gpu
def test_gpu_dispatch_selects_triton() -> None:
    import bnb_kernels  # noqa: F401  (defines the ops)

    A = torch.randn(4096, device="cuda", dtype=torch.bfloat16)
    q, absmax = torch.ops.bitsandbytes.quantize_4bit(A, 64, "nf4", torch.uint8)
    from bnb_kernels.backends.reference import quant as R

    q_ref, absmax_ref = R.quantize_4bit(A, 64, "nf4", torch.uint8)
    assert torch.equal(q, q_ref) and torch.equal(absmax, absmax_ref)


if __name__ == "__main__":
    which = sys.argv[1] if len(sys.argv) > 1 else "all"
    seed = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    parts = ("8bit", "4bit", "errors") if which == "all" else (which,)
    failures = [f for p in parts for f in _interpreted(p, seed)]
    for f in failures:
        print("FAIL", f)
    print(f"checked {', '.join(parts)} with seed {seed}: {len(failures)} failures")
    sys.exit(1 if failures else 0)
