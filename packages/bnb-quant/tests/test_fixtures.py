"""Files written by the reference release (bitsandbytes 0.50.2) reproduced through the
functional API: codes, absmax and dequantized values bit for bit, and the packed 4-bit quant
state of Linear4bit state_dicts loaded, used and written back byte for byte."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import bnb_quant as F
from bnb_quant import QuantState

FIXTURE_DIR = Path(__file__).resolve().parents[3] / "fixtures" / "upstream-0.50.2"
BLOCKWISE = sorted(p.stem for p in FIXTURE_DIR.glob("blockwise8_*.safetensors"))
FOURBIT = sorted(p.stem for p in FIXTURE_DIR.glob("quant4_*.safetensors"))
LINEAR4BIT = sorted(p.stem for p in FIXTURE_DIR.glob("linear4bit_*.safetensors"))
PREFIX = "module.weight."


def _blocksize(name: str) -> int:
    return int(name.rsplit("_bs", 1)[1])


def test_fixture_sets_are_complete() -> None:
    assert (len(BLOCKWISE), len(FOURBIT), len(LINEAR4BIT)) == (9, 12, 24)


@pytest.mark.parametrize("name", BLOCKWISE)
def test_blockwise8(name: str) -> None:
    d = load_file(FIXTURE_DIR / f"{name}.safetensors")
    codes, state = F.quantize_blockwise(d["input"], blocksize=_blocksize(name))
    assert torch.equal(codes, d["codes"])
    assert torch.equal(state.absmax, d["absmax"])
    assert torch.equal(state.code, d["code"])
    out = F.dequantize_blockwise(codes, state)
    assert out.dtype == d["dequantized"].dtype and out.shape == d["dequantized"].shape
    assert torch.equal(out, d["dequantized"])


@pytest.mark.parametrize("name", FOURBIT)
def test_quant4(name: str) -> None:
    d = load_file(FIXTURE_DIR / f"{name}.safetensors")
    quant_type = name.split("_")[1]
    packed, state = F.quantize_4bit(d["input"], blocksize=_blocksize(name), quant_type=quant_type)
    assert packed.shape == d["packed"].shape and torch.equal(packed, d["packed"])
    assert torch.equal(state.absmax, d["absmax"])
    out = F.dequantize_4bit(packed, state)
    assert out.dtype == d["dequantized"].dtype
    # Same values; the release returned this 1-d tensor as [1, n] (its CPU kernel's view).
    assert out.shape == d["input"].shape
    assert torch.equal(out.reshape(d["dequantized"].shape), d["dequantized"])


def _weight_state(d: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k[len(PREFIX) :]: v for k, v in d.items() if k.startswith(PREFIX)}


@pytest.mark.parametrize("name", LINEAR4BIT)
def test_linear4bit_state_loads_dequantizes_and_saves_identically(name: str) -> None:
    d = load_file(FIXTURE_DIR / f"{name}.safetensors")
    saved = _weight_state(d)
    state = QuantState.from_dict(saved, device="cpu")
    assert state.nested == ("nested" in name)
    assert state.quant_type == name.split("_")[1]
    out = F.dequantize_4bit(d["module.weight"], state)
    assert out.dtype == d["dequantized_weight"].dtype
    assert torch.equal(out, d["dequantized_weight"])

    written = state.as_dict(packed=True)
    assert sorted(written) == sorted(saved)
    for key, value in saved.items():
        assert written[key].dtype == value.dtype and written[key].shape == value.shape, key
        assert torch.equal(written[key], value), key  # the JSON tensor too: identical bytes


@pytest.mark.parametrize("name", [n for n in LINEAR4BIT if "bfloat16_bs64" in n])
def test_linear4bit_requantizing_the_dense_weight_gives_the_saved_bytes(name: str) -> None:
    d = load_file(FIXTURE_DIR / f"{name}.safetensors")
    packed, state = F.quantize_4bit(
        d["dense_weight"],
        blocksize=_blocksize(name),
        compress_statistics="nested" in name,
        quant_type=name.split("_")[1],
    )
    assert torch.equal(packed, d["module.weight"])
    written = state.as_dict(packed=True)
    for key, value in _weight_state(d).items():
        assert torch.equal(written[key], value), key
