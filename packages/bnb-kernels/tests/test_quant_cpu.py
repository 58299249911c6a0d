"""Native CPU quantization kernels against the reference, bit for bit, on every SIMD path.

One table of ops (name, native function, reference function, argument builder) drives the
equivalence tests; hypothesis draws shapes (1-d to 3-d, sizes that are not multiples of
the block size), dtypes, block sizes, special values and the SIMD path.
"""

from __future__ import annotations

import ctypes
import math
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from safetensors.torch import load_file

from bnb_kernels import _native, selected_backend
from bnb_kernels.backends.reference import quant as ref
from bnb_kernels.codebooks import codebook_table
from bnb_kernels.ops.quant import BLOCKSIZES_4BIT, BLOCKSIZES_8BIT, FLOAT_DTYPES, QUANT_STORAGE_DTYPES

pytestmark = pytest.mark.skipif(not _native.available(), reason="native CPU library not built")

if _native.available():
    from bnb_kernels.backends.cpu import quant as cpu
else:  # pragma: no cover - the module needs the library to bind its functions
    cpu = None

SIMD_PATHS = ("scalar", "avx2", "avx512")
HYP = settings(max_examples=20, deadline=None, suppress_health_check=[HealthCheck.too_slow])


FIXTURE_DIR = Path(__file__).resolve().parents[3] / "fixtures" / "upstream-0.50.2"


def _dynamic_map() -> torch.Tensor:
    """The release's default 8-bit code, from its fixtures (bnb-quant's tests check that its
    create_dynamic_map() equals it), so these tests need bnb-kernels only."""
    return load_file(FIXTURE_DIR / "blockwise8_float32_bs64.safetensors")["code"]


def _linear_map() -> torch.Tensor:
    """255 evenly spaced values in [-1, 1] with a second zero in the middle (a repeated value)."""
    values = torch.linspace(-1.0, 1.0, 255)
    return torch.cat((values[:127], torch.zeros(1), values[127:]))


def _e4m3_map() -> torch.Tensor:
    """Every float8 e4m3 value scaled to [-1, 1], its two NaNs as zeros: a sorted code dense
    near zero with four zeros."""
    values = torch.arange(256, dtype=torch.uint8).view(torch.float8_e4m3fn).float()
    values = torch.where(values.isnan(), torch.zeros(()), values)
    return (values / values.max()).sort().values


def same(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Equal values, dtypes and shapes; NaN matches NaN (its payload bits may differ)."""
    if a.dtype != b.dtype or a.shape != b.shape:
        return False
    if a.is_floating_point():
        nan = a.isnan()
        if not torch.equal(nan, b.isnan()):
            return False
        return torch.equal(a[~nan].view(-1), b[~nan].view(-1)) and torch.equal(
            a[~nan].view(-1).signbit(), b[~nan].view(-1).signbit()
        )
    return torch.equal(a, b)


@st.composite
def inputs(draw: st.DrawFn, max_numel: int = 3000) -> torch.Tensor:
    ndim = draw(st.integers(1, 3))
    shape = [draw(st.integers(1, 40)) for _ in range(ndim - 1)]
    inner = max(1, max_numel // max(1, math.prod(shape)))
    shape.append(draw(st.integers(1, inner)))
    dtype = draw(st.sampled_from(FLOAT_DTYPES))
    seed = draw(st.integers(0, 2**31 - 1))
    g = torch.Generator().manual_seed(seed)
    scale = draw(st.sampled_from([1.0, 1e-3, 300.0, 1e-30, 1e-42]))  # 1e-42: denormal absmax, 1 / absmax = inf
    x = torch.randn(math.prod(shape), generator=g) * scale
    special = draw(st.sampled_from(["none", "zeros", "zero_block", "nan", "inf", "ties"]))
    n = x.numel()
    if special == "zeros":
        x[torch.randint(0, n, (max(1, n // 5),), generator=g)] = 0.0
    elif special == "zero_block":
        x[: min(n, 300)] = 0.0
    elif special == "nan":
        x[torch.randint(0, n, (1,), generator=g)] = float("nan")
    elif special == "inf":
        x[torch.randint(0, n, (1,), generator=g)] = float("-inf")
    elif special == "ties":  # exact fractions of the block maximum land on midpoints
        x = torch.randint(-12, 13, (n,), generator=g).float() / 2
    return x.to(dtype).reshape(shape)


# --------------------------------------------------------------------------------------
# Equivalence: native == reference
# --------------------------------------------------------------------------------------


@HYP
@given(A=inputs(), blocksize=st.sampled_from(BLOCKSIZES_8BIT), simd=st.sampled_from(SIMD_PATHS))
def test_quantize_blockwise_matches_reference(A: torch.Tensor, blocksize: int, simd: str) -> None:
    code = _dynamic_map()
    codes, absmax = cpu.quantize_blockwise_impl(A, code, blocksize, simd=simd)
    ref_codes, ref_absmax = ref.quantize_blockwise(A, code, blocksize)
    assert same(codes, ref_codes)
    assert same(absmax, ref_absmax)


@HYP
@given(
    A=inputs(),
    blocksize=st.sampled_from(BLOCKSIZES_8BIT),
    out_dtype=st.sampled_from(FLOAT_DTYPES),
    simd=st.sampled_from(SIMD_PATHS),
)
def test_dequantize_blockwise_matches_reference(
    A: torch.Tensor, blocksize: int, out_dtype: torch.dtype, simd: str
) -> None:
    code = _dynamic_map()
    codes, absmax = ref.quantize_blockwise(A, code, blocksize)
    expected = ref.dequantize_blockwise(codes, absmax, code, blocksize, out_dtype)
    assert same(cpu.dequantize_blockwise_impl(codes, absmax, code, blocksize, out_dtype, simd=simd), expected)
    out = torch.full(A.shape, 7.0, dtype=out_dtype)
    cpu.dequantize_blockwise_out_impl(codes, absmax, code, blocksize, out_dtype, out, simd=simd)
    assert same(out, expected)


@HYP
@given(
    A=inputs(),
    blocksize=st.sampled_from(BLOCKSIZES_4BIT),
    quant_type=st.sampled_from(["nf4", "fp4"]),
    simd=st.sampled_from(SIMD_PATHS),
)
def test_quantize_4bit_matches_reference(A: torch.Tensor, blocksize: int, quant_type: str, simd: str) -> None:
    packed, absmax = cpu.quantize_4bit_impl(A, blocksize, quant_type, torch.uint8, simd=simd)
    ref_packed, ref_absmax = ref.quantize_4bit(A, blocksize, quant_type, torch.uint8)
    assert same(packed, ref_packed)
    assert same(absmax, ref_absmax)


@HYP
@given(
    A=inputs(),
    blocksize=st.sampled_from(BLOCKSIZES_4BIT),
    quant_type=st.sampled_from(["nf4", "fp4"]),
    out_dtype=st.sampled_from(FLOAT_DTYPES),
    simd=st.sampled_from(SIMD_PATHS),
)
def test_dequantize_4bit_matches_reference(
    A: torch.Tensor, blocksize: int, quant_type: str, out_dtype: torch.dtype, simd: str
) -> None:
    packed, absmax = ref.quantize_4bit(A, blocksize, quant_type, torch.uint8)
    shape = list(A.shape)
    expected = ref.dequantize_4bit(packed, absmax, blocksize, quant_type, shape, out_dtype)
    got = cpu.dequantize_4bit_impl(packed, absmax, blocksize, quant_type, shape, out_dtype, simd=simd)
    assert same(got, expected)
    out = torch.full(A.shape, 7.0, dtype=out_dtype)
    cpu.dequantize_4bit_out_impl(packed, absmax, blocksize, quant_type, shape, out_dtype, out, simd=simd)
    assert same(out, expected)


@pytest.mark.parametrize("quant_storage", QUANT_STORAGE_DTYPES)
def test_quant_storage_views_the_same_bytes(quant_storage: torch.dtype) -> None:
    A = torch.randn(8, 64, dtype=torch.bfloat16)
    packed, absmax = cpu.quantize_4bit_impl(A, 64, "nf4", quant_storage)
    ref_packed, _ = ref.quantize_4bit(A, 64, "nf4", quant_storage)
    assert packed.dtype == quant_storage and packed.shape == ref_packed.shape
    assert torch.equal(packed.view(torch.uint8), ref_packed.view(torch.uint8))
    out = cpu.dequantize_4bit_impl(packed, absmax, 64, "nf4", [8, 64], torch.bfloat16)
    assert torch.equal(out, ref.dequantize_4bit(packed, absmax, 64, "nf4", [8, 64], torch.bfloat16))


def test_paths_agree_at_size() -> None:
    """One larger tensor (many blocks, the threaded path) gives the same bytes on every path."""
    g = torch.Generator().manual_seed(3)
    A = (torch.randn(257, 511, generator=g) * 3).to(torch.bfloat16)
    code = _dynamic_map()
    results = []
    for simd in SIMD_PATHS:
        q8 = cpu.quantize_blockwise_impl(A, code, 256, simd=simd)
        q4 = cpu.quantize_4bit_impl(A, 64, "fp4", torch.uint8, simd=simd)
        d4 = cpu.dequantize_4bit_impl(*q4, 64, "fp4", [257, 511], torch.float16, simd=simd)
        results.append((q8, q4, d4))
    for q8, q4, d4 in results[1:]:
        assert torch.equal(q8[0], results[0][0][0]) and torch.equal(q8[1], results[0][0][1])
        assert torch.equal(q4[0], results[0][1][0]) and torch.equal(q4[1], results[0][1][1])
        assert torch.equal(d4, results[0][2])
    assert torch.equal(results[0][0][0], ref.quantize_blockwise(A, code, 256)[0])


def test_odd_codebooks_and_blocksizes_fall_back_to_the_reference() -> None:
    A = torch.randn(100)
    short_code = torch.linspace(-1, 1, 17)
    assert torch.equal(cpu.quantize_blockwise_impl(A, short_code, 64)[0], ref.quantize_blockwise(A, short_code, 64)[0])
    assert torch.equal(
        cpu.quantize_4bit_impl(A, 24, "nf4", torch.uint8)[0], ref.quantize_4bit(A, 24, "nf4", torch.uint8)[0]
    )


@pytest.mark.parametrize("simd", SIMD_PATHS)
def test_env_var_caps_the_path(monkeypatch: pytest.MonkeyPatch, simd: str) -> None:
    monkeypatch.setenv(cpu.SIMD_ENV, simd)
    level = cpu.simd_level()
    assert SIMD_PATHS.index(level) <= SIMD_PATHS.index(simd)
    monkeypatch.setenv(cpu.SIMD_ENV, "sse9")
    with pytest.raises(ValueError, match="SIMD path"):
        cpu.simd_level()


def test_registered_as_the_cpu_backend() -> None:
    for op in ("quantize_blockwise", "dequantize_blockwise", "quantize_4bit", "dequantize_4bit.out"):
        assert selected_backend(op, "cpu") == "cpu"
    A = torch.randn(3, 70)
    packed, _absmax = torch.ops.bitsandbytes.quantize_4bit(A, 64, "nf4", torch.uint8)
    assert torch.equal(packed, ref.quantize_4bit(A, 64, "nf4", torch.uint8)[0])


# --------------------------------------------------------------------------------------
# Bad arguments: Python raises before C; C itself returns an error code
# --------------------------------------------------------------------------------------


def test_bad_arguments_raise() -> None:
    A = torch.randn(128)
    code = _dynamic_map()
    with pytest.raises(TypeError, match="float32, float16 or bfloat16"):
        cpu.quantize_blockwise_impl(A.double(), code, 64)
    with pytest.raises(ValueError, match="blocksize"):
        cpu.quantize_blockwise_impl(A, code, 0)
    with pytest.raises(ValueError, match="code"):
        cpu.quantize_blockwise_impl(A, torch.zeros(300), 64)
    with pytest.raises(ValueError, match="quant_type"):
        cpu.quantize_4bit_impl(A, 64, "nf5", torch.uint8)
    with pytest.raises(TypeError, match="quant_storage"):
        cpu.quantize_4bit_impl(A, 64, "nf4", torch.int32)
    with pytest.raises(ValueError, match="whole number"):
        cpu.quantize_4bit_impl(torch.randn(6), 64, "nf4", torch.float32)
    codes, absmax = cpu.quantize_blockwise_impl(A, code, 64)
    with pytest.raises(TypeError, match="uint8"):
        cpu.dequantize_blockwise_impl(codes.float(), absmax, code, 64, torch.float32)
    with pytest.raises(ValueError, match="at least 2"):
        cpu.dequantize_blockwise_impl(codes, absmax[:1], code, 64, torch.float32)
    with pytest.raises(TypeError, match="dtype"):
        cpu.dequantize_blockwise_impl(codes, absmax, code, 64, torch.int32)
    with pytest.raises(ValueError, match="shape"):
        cpu.dequantize_blockwise_out_impl(codes, absmax, code, 64, torch.float32, torch.empty(127))
    packed, absmax4 = cpu.quantize_4bit_impl(A, 64, "nf4", torch.uint8)
    with pytest.raises(ValueError, match="needs 65"):
        cpu.dequantize_4bit_impl(packed, absmax4, 64, "nf4", [130], torch.float32)
    with pytest.raises(ValueError, match="at least 4"):
        cpu.dequantize_4bit_impl(packed, absmax4, 32, "nf4", [128], torch.float32)
    with pytest.raises(TypeError, match="out must have dtype"):
        cpu.dequantize_4bit_out_impl(
            packed, absmax4, 64, "nf4", [128], torch.float32, torch.empty(128, dtype=torch.half)
        )


def test_empty_input() -> None:
    code = _dynamic_map()
    codes, absmax = cpu.quantize_blockwise_impl(torch.empty(0), code, 64)
    assert codes.shape == (0,) and absmax.shape == (0,)
    packed, absmax = cpu.quantize_4bit_impl(torch.empty(0, 5), 64, "nf4", torch.uint8)
    assert packed.shape == (0, 1) and absmax.shape == (0,)
    assert cpu.dequantize_4bit_impl(packed, absmax, 64, "nf4", [0, 5], torch.float32).shape == (0, 5)


def test_c_side_rejects_bad_arguments() -> None:
    lib = _native.lib()
    fn = lib.bnb_quantize_4bit
    P, I32, I64 = ctypes.c_void_p, ctypes.c_int32, ctypes.c_int64
    fn.argtypes = [P, I32, I64, I64, P, P, P, P, I32, I32]
    fn.restype = I32
    A = torch.randn(64)
    mids = torch.zeros(15)
    order = torch.arange(16, dtype=torch.int32)
    absmax = torch.empty(1)
    out = torch.empty(32, dtype=torch.uint8)
    args = [A.data_ptr(), 0, 64, 64, mids.data_ptr(), order.data_ptr(), absmax.data_ptr(), out.data_ptr(), 1, 0]
    assert fn(*args) == 0
    bad_blocksize = list(args)
    bad_blocksize[3] = 24
    assert fn(*bad_blocksize) == -3
    bad_dtype = list(args)
    bad_dtype[1] = 7
    assert fn(*bad_dtype) == -2
    null_out = list(args)
    null_out[7] = None
    assert fn(*null_out) == -1
    bad_order = torch.arange(16, dtype=torch.int32) * 2
    assert fn(*([*args[:5], bad_order.data_ptr(), *args[6:]])) == -1
    negative = list(args)
    negative[2] = -1
    assert fn(*negative) == -1


# --------------------------------------------------------------------------------------
# Op schemas: fake kernels agree with the real ones
# --------------------------------------------------------------------------------------


def test_opcheck_schemas_and_fakes() -> None:
    ops = torch.ops.bitsandbytes
    A = torch.randn(3, 70, dtype=torch.bfloat16)
    code = _dynamic_map()
    codes, absmax = ops.quantize_blockwise(A, code, 64)
    packed, absmax4 = ops.quantize_4bit(A, 64, "nf4", torch.uint8)
    out = torch.empty(3, 70, dtype=torch.bfloat16)
    cases = [
        (ops.quantize_blockwise.default, (A, code, 64), {}),
        (ops.dequantize_blockwise.out, (codes, absmax, code, 64, torch.bfloat16), {"out": out}),
        (ops.quantize_4bit.default, (A[:2], 64, "fp4", torch.bfloat16), {}),
        (ops.dequantize_4bit.default, (packed, absmax4, 64, "nf4", [3, 70], torch.float16), {}),
    ]
    for op, args, kwargs in cases:
        torch.library.opcheck(op, args, kwargs, test_utils=("test_schema", "test_faketensor"))


def test_grid_lut_matches_thresholds() -> None:
    """The native 8-bit kernels look codes up by grid index; the table must agree with the
    reference thresholds at every grid boundary, probed from both sides."""
    table = codebook_table(_dynamic_map())
    grid = torch.arange(65536, dtype=torch.float64)
    # A value just above the lower edge of each grid cell (G - 0.5) / 32767.5 - 1.
    lower = ((grid - 0.5) / 32767.5 - 1).float()
    lower = torch.where(lower.double() < (grid - 0.5) / 32767.5 - 1, torch.nextafter(lower, torch.tensor(2.0)), lower)
    lower[0] = -1.0
    lower[32768] = 0.0
    via_thresholds = ref.search_codebook(lower, _dynamic_map())
    assert torch.equal(table.grid_lut[:65536], via_thresholds)
    assert table.grid_lut[65536] == table.order[0]
    assert table.grid_lut.shape == (65540,) and table.grid_lut.dtype == torch.uint8


@pytest.mark.parametrize("dtype", FLOAT_DTYPES)
def test_large_inputs_take_the_search_table_path(dtype: torch.dtype) -> None:
    """From 65536 values on, the AVX-512 8-bit kernel searches a 16-bit table built from the
    grid table (sorted codebooks) instead of looking codes up; unsorted ones keep the lookups."""
    g = torch.Generator().manual_seed(5)
    x = torch.randn(70001, generator=g) * 3
    x[5] = float("nan")
    x[300:700] = 0.0
    x[-3:] = float("inf")
    x[1000:1010] = 1e-42  # a block whose absmax is denormal in float32
    x = x.to(dtype)
    shuffled = _dynamic_map()[torch.randperm(256, generator=g)]
    for code in (_dynamic_map(), _linear_map(), _e4m3_map(), shuffled):
        ref_codes, ref_absmax = ref.quantize_blockwise(x, code, 256)
        for simd in ("avx512",) if code is not shuffled else SIMD_PATHS:
            codes, absmax = cpu.quantize_blockwise_impl(x, code, 256, simd=simd)
            assert torch.equal(codes, ref_codes)
            assert same(absmax, ref_absmax)


def test_out_variants_accept_non_contiguous_out() -> None:
    A = torch.randn(64, 96)
    code = _dynamic_map()
    codes, absmax = cpu.quantize_blockwise_impl(A, code, 64)
    out = torch.empty(96, 64).t()
    cpu.dequantize_blockwise_out_impl(codes, absmax, code, 64, torch.float32, out)
    assert torch.equal(out, ref.dequantize_blockwise(codes, absmax, code, 64, torch.float32))
    packed, absmax4 = cpu.quantize_4bit_impl(A, 64, "nf4", torch.uint8)
    out4 = torch.empty(96, 64, dtype=torch.bfloat16).t()
    cpu.dequantize_4bit_out_impl(packed, absmax4, 64, "nf4", [64, 96], torch.bfloat16, out4)
    assert torch.equal(out4, ref.dequantize_4bit(packed, absmax4, 64, "nf4", [64, 96], torch.bfloat16))
    # Non-contiguous input is read in logical order.
    At = torch.randn(96, 64).t()
    assert torch.equal(
        cpu.quantize_4bit_impl(At, 64, "fp4", torch.uint8)[0], ref.quantize_4bit(At, 64, "fp4", torch.uint8)[0]
    )
