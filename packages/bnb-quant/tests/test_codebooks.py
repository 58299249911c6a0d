"""Codebook constructors: the dynamic map equals the release's, and every map has the size,
order, range and known values the release gives it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import bnb_quant as F
from bnb_kernels.codebooks import FP4_VALUES, NF4_VALUES

FIXTURE_DIR = Path(__file__).resolve().parents[3] / "fixtures" / "upstream-0.50.2"


def _sorted(t: torch.Tensor) -> bool:
    return bool((t.diff() >= 0).all())


def test_dynamic_map_equals_the_release() -> None:
    code = load_file(FIXTURE_DIR / "blockwise8_float32_bs64.safetensors")["code"]
    assert torch.equal(F.create_dynamic_map(), code)
    assert torch.equal(F.create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8), code)


def test_dynamic_map_variants() -> None:
    code = F.create_dynamic_map()
    assert code.shape == (256,) and code.dtype == torch.float32 and _sorted(code)
    assert code.max() == 1.0 and code[0] == pytest.approx(-0.99297, abs=1e-5) and (code == 0).sum() == 1
    unsigned = F.create_dynamic_map(signed=False)
    assert unsigned.shape == (256,) and _sorted(unsigned) and unsigned.min() == 0 and unsigned.max() == 1.0
    small = F.create_dynamic_map(max_exponent_bits=4, total_bits=6)
    assert small.shape == (256,) and _sorted(small) and small.max() == 1.0
    with pytest.raises(ValueError, match="max_exponent_bits"):
        F.create_dynamic_map(max_exponent_bits=8)


def test_normal_map() -> None:
    code = F.create_normal_map()
    assert code.shape == (256,) and _sorted(code) and code.max() == 1.0 and code.min() == -1.0
    assert torch.equal(code.unique(), torch.tensor(NF4_VALUES))  # the 15 NF4 values and zero
    no_extra = F.create_normal_map(use_extra_value=False).unique()
    assert no_extra.numel() == 15 and no_extra.min() == -1.0 and no_extra.max() == 1.0


def test_fp8_map() -> None:
    for exponent_bits, precision_bits in ((5, 2), (4, 3), (3, 4)):
        code = F.create_fp8_map(True, exponent_bits, precision_bits, 8)
        assert code.shape == (256,) and _sorted(code) and code.max() == 1.0 and code.min() == -1.0
        assert torch.equal(code, -code.flip(0))  # symmetric
    e4m3 = F.create_fp8_map(True, 4, 3, 8)
    # Powers of two below the maximum are exact: 1/2, 1/4 of the largest value are present.
    assert bool((e4m3 == 0.5).any()) and bool((e4m3 == 0.25).any())
    unsigned = F.create_fp8_map(False, 4, 4, 8)
    assert unsigned.shape == (256,) and unsigned.min() == 0
    with pytest.raises(ValueError, match="exponent_bits"):
        F.create_fp8_map(True, 4, 4, 8)


def test_linear_map() -> None:
    code = F.create_linear_map()
    assert code.shape == (256,) and _sorted(code) and code[0] == -1.0 and code[-1] == 1.0
    assert (code == 0).sum() >= 1
    steps = code[code != 0].diff()
    assert torch.allclose(steps[steps > 1e-6], torch.full_like(steps[steps > 1e-6], 2 / 254), atol=1e-6)
    unsigned = F.create_linear_map(signed=False)
    assert unsigned.shape == (256,) and unsigned.min() == 0 and unsigned.max() == 1.0
    four = F.create_linear_map(signed=True, total_bits=4)
    assert four.shape == (256,) and (four[7:-8] == 0).all()
    assert torch.equal(torch.cat((four[:7], four[-8:])), torch.linspace(-1.0, 1.0, 15))


def test_get_4bit_type() -> None:
    assert F.get_4bit_type("nf4").tolist() == list(NF4_VALUES)
    assert F.get_4bit_type("fp4").tolist() == pytest.approx(FP4_VALUES)
    fp4 = F.get_4bit_type("fp4")
    assert fp4[3] == 1.0 and fp4[11] == -1.0 and fp4[0] == 0 and fp4[8] == 0 and not fp4[8].signbit()
    assert F.get_4bit_type("int4").unique().numel() == 15
    assert F.get_4bit_type("nf4", device="meta").device.type == "meta"
    with pytest.raises(ValueError, match="typename"):
        F.get_4bit_type("nf5")


def test_quant_map_matches_linear4bit_fixture() -> None:
    for quant_type in ("nf4", "fp4"):
        d = load_file(FIXTURE_DIR / f"linear4bit_{quant_type}_plain_float32_bs64.safetensors")
        assert torch.equal(F.get_4bit_type(quant_type), d["module.weight.quant_map"])
