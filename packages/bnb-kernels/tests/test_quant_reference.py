"""The reference quantization (the specification): every blockwise8_* and quant4_* fixture of
the reference release reproduced bit for bit, by the reference and by each native path, and
the rounding rules checked against independent float64 computations."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from bnb_kernels import _native
from bnb_kernels.backends.reference import quant as ref
from bnb_kernels.codebooks import FP4_VALUES, NF4_VALUES, codebook_search_table, fourbit_search_table

FIXTURE_DIR = Path(__file__).resolve().parents[3] / "fixtures" / "upstream-0.50.2"
BLOCKWISE = sorted(p.stem for p in FIXTURE_DIR.glob("blockwise8_*.safetensors"))
FOURBIT = sorted(p.stem for p in FIXTURE_DIR.glob("quant4_*.safetensors"))
PATHS = ["reference"] + (["scalar", "avx2", "avx512"] if _native.available() else [])


def _blocksize(name: str) -> int:
    return int(name.rsplit("_bs", 1)[1])


def _dynamic_map() -> torch.Tensor:
    """The release's default 8-bit code (its dynamic map), as stored in its fixtures; built
    here from the fixtures, so these tests need bnb-kernels only (bnb-quant's tests check
    that its create_dynamic_map() equals it)."""
    return load_file(FIXTURE_DIR / f"{BLOCKWISE[0]}.safetensors")["code"]


def _linear_map() -> torch.Tensor:
    """255 evenly spaced values in [-1, 1] with a second zero in the middle: a sorted code
    with a repeated value."""
    values = torch.linspace(-1.0, 1.0, 255)
    return torch.cat((values[:127], torch.zeros(1), values[127:]))


def test_fixture_lists_are_complete() -> None:
    assert len(BLOCKWISE) == 9 and len(FOURBIT) == 12


def _impl(path: str):
    if path == "reference":
        return (ref.quantize_blockwise, ref.dequantize_blockwise, ref.quantize_4bit, ref.dequantize_4bit)
    from bnb_kernels.backends.cpu import quant as cpu

    return (
        lambda *a: cpu.quantize_blockwise_impl(*a, simd=path),
        lambda *a: cpu.dequantize_blockwise_impl(*a, simd=path),
        lambda *a: cpu.quantize_4bit_impl(*a, simd=path),
        lambda *a: cpu.dequantize_4bit_impl(*a, simd=path),
    )


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", BLOCKWISE)
def test_blockwise8_fixture(name: str, path: str) -> None:
    d = load_file(FIXTURE_DIR / f"{name}.safetensors")
    quantize, dequantize, _, _ = _impl(path)
    bs = _blocksize(name)
    codes, absmax = quantize(d["input"], d["code"], bs)
    assert torch.equal(codes, d["codes"])
    assert torch.equal(absmax, d["absmax"])
    out = dequantize(d["codes"], d["absmax"], d["code"], bs, d["dequantized"].dtype)
    assert torch.equal(out, d["dequantized"])


@pytest.mark.parametrize("path", PATHS)
@pytest.mark.parametrize("name", FOURBIT)
def test_quant4_fixture(name: str, path: str) -> None:
    d = load_file(FIXTURE_DIR / f"{name}.safetensors")
    _, _, quantize, dequantize = _impl(path)
    bs = _blocksize(name)
    quant_type = name.split("_")[1]
    packed, absmax = quantize(d["input"], bs, quant_type, torch.uint8)
    assert torch.equal(packed, d["packed"])
    assert torch.equal(absmax, d["absmax"])
    # The release returned [1, n] for this 1-d input; the values are what must match.
    out = dequantize(d["packed"], d["absmax"], bs, quant_type, [d["input"].numel()], d["dequantized"].dtype)
    assert torch.equal(out.reshape(d["dequantized"].shape), d["dequantized"])


def test_every_blockwise_fixture_uses_the_same_dynamic_map() -> None:
    code = _dynamic_map()
    assert code.shape == (256,) and code.dtype == torch.float32
    assert bool((code.diff() >= 0).all()) and code.abs().max() == 1
    for name in BLOCKWISE:
        assert torch.equal(load_file(FIXTURE_DIR / f"{name}.safetensors")["code"], code)


# --------------------------------------------------------------------------------------
# The rules, against independent float64 computations
# --------------------------------------------------------------------------------------


def test_8bit_rule_is_nearest_code_to_the_16bit_grid_point() -> None:
    g = torch.Generator().manual_seed(0)
    s = torch.cat((torch.rand(20000, generator=g) * 2 - 1, torch.randn(20000, generator=g) * 0.01)).clamp(-1, 1)
    s = s[s.abs() > 1e-6]  # away from zero, (s + 1) * 32767.5 is exact in float64
    for code in (_dynamic_map(), _linear_map()):
        grid = torch.floor((s.double() + 1) * 32767.5 + 0.5).clamp(0, 65535) / 32767.5 - 1
        cd = code.double()
        sorted_values, order = cd.sort(stable=True)
        mids = (sorted_values[1:] + sorted_values[:-1]) / 2
        expected = order[torch.searchsorted(mids, grid, right=False)]
        assert torch.equal(ref.search_codebook(s, code).long(), expected)


def test_8bit_rule_near_zero_and_non_finite() -> None:
    code = _dynamic_map()
    s = torch.tensor([0.0, -0.0, 1e-30, -1e-30, 1.5e-5, -1.5e-5, 3.1e-5, -3.1e-5, 1.0, -1.0, 1.0000001, float("nan")])
    got = ref.search_codebook(s, code).tolist()
    assert got == [131, 131, 131, 123, 131, 123, 132, 122, 255, 0, 255, 0]
    thresholds, order = codebook_search_table(code)
    assert thresholds.shape == (255,) and bool((thresholds.diff() >= 0).all())
    assert torch.equal(order, torch.arange(256))


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_4bit_rule_is_nearest_with_ties_to_the_lower_value(quant_type: str) -> None:
    values = torch.tensor(NF4_VALUES if quant_type == "nf4" else FP4_VALUES, dtype=torch.float64)
    g = torch.Generator().manual_seed(1)
    s = torch.rand(50000, generator=g) * 2 - 1
    dist = (s.double().unsqueeze(1) - values).abs()
    nearest_value = values[dist.argmin(1)]
    codes = ref.fourbit_codes(s, quant_type).long()
    # Away from midpoints (where float32 midpoints decide), the code holds the nearest value.
    mids, _ = fourbit_search_table(quant_type)
    clear = (s.unsqueeze(1) - mids).abs().min(1).values > 1e-6
    assert torch.equal(values[codes][clear], nearest_value[clear])
    # Exactly on a midpoint: the lower value.
    on_mid = ref.fourbit_codes(mids, quant_type).long()
    _sorted_values, order = values.sort(stable=True)
    assert torch.equal(on_mid, order[:15])


def test_fp4_zero_bucket_and_nan() -> None:
    s = torch.tensor([0.0, -0.0, 1e-6, -1e-6, 0.0026, -0.0026, float("nan")])
    assert ref.fourbit_codes(s, "fp4").tolist() == [0, 0, 8, 0, 8, 0, 11]
    assert ref.fourbit_codes(s, "nf4").tolist() == [7, 7, 7, 7, 7, 7, 0]


def test_non_finite_blocks() -> None:
    x = torch.randn(4, 64)
    x[1, 5] = float("nan")
    x[2] = 0.0
    x[3, 7] = float("inf")
    codes, absmax = ref.quantize_blockwise(x, _dynamic_map(), 64)
    assert absmax[1].isnan() and absmax[2] == 0 and absmax[3].isinf() and absmax[0].isfinite()
    out = ref.dequantize_blockwise(codes, absmax, _dynamic_map(), 64, torch.float32)
    assert out[1].isnan().all() and (out[2] == 0).all() and not out[3].isfinite().all()
    assert out[0].isfinite().all() and torch.equal(codes[0], ref.quantize_blockwise(x[0], _dynamic_map(), 64)[0])
    packed, absmax4 = ref.quantize_4bit(x, 64, "nf4", torch.uint8)
    out4 = ref.dequantize_4bit(packed, absmax4, 64, "nf4", [4, 64], torch.float32)
    assert out4[1].isnan().all() and (out4[2] == 0).all() and out4[0].isfinite().all()
