"""transformers + BitsAndBytesConfig(load_in_4bit=True) on tiny models built from a config."""

from __future__ import annotations

import pytest
import torch
from _flows import DEVICE_MAP, importorskip_transformers, named_modules_of, rel_err

transformers = importorskip_transformers()
pytest.importorskip("accelerate")
bnb = pytest.importorskip("bitsandbytes")
from transformers import AutoModelForCausalLM, BitsAndBytesConfig  # noqa: E402

LINEARS_PER_MODEL = {"llama": 2 * 7, "opt": 2 * 6}  # every Linear but lm_head

# nf4/fp4 x double quant on/off x bf16/fp16 compute, pairwise on the Llama-style model (every
# value of each option, every pair of quant type and double quant), two corners on the OPT-style.
CASES = [
    ("llama", "nf4", False, torch.bfloat16),
    ("llama", "nf4", True, torch.float16),
    ("llama", "fp4", False, torch.float16),
    ("llama", "fp4", True, torch.bfloat16),
    ("opt", "nf4", True, torch.bfloat16),
    ("opt", "fp4", False, torch.float16),
]


def load_4bit(path, quant_type: str, double_quant: bool, dtype: torch.dtype):
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type=quant_type,
        bnb_4bit_use_double_quant=double_quant,
        bnb_4bit_compute_dtype=dtype,
    )
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=config, dtype=dtype, device_map=DEVICE_MAP)


@pytest.mark.parametrize(("kind", "quant_type", "double_quant", "dtype"), CASES, ids=str)
def test_load_4bit_matches_dense_and_generates(tiny_model_dirs, input_ids, kind, quant_type, double_quant, dtype):
    path = tiny_model_dirs[kind]
    model = load_4bit(path, quant_type, double_quant, dtype)
    dense = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, device_map=DEVICE_MAP)

    layers = named_modules_of(model, bnb.nn.Linear4bit)
    assert len(layers) == LINEARS_PER_MODEL[kind]
    assert not isinstance(model.lm_head, bnb.nn.Linear4bit)
    for layer in layers.values():
        assert isinstance(layer.weight, bnb.nn.Params4bit)
        assert layer.weight.dtype == torch.uint8
        state = layer.weight.quant_state
        assert state.quant_type == quant_type
        assert state.nested is double_quant
        assert layer.compute_dtype == dtype
    assert model.get_memory_footprint() < 0.75 * dense.get_memory_footprint()

    with torch.no_grad():
        want = dense(input_ids).logits
        # The same model with every weight replaced by its dequantized 4-bit version: what the
        # quantized model must compute, up to rounding in the compute dtype. (Dequantized before
        # the first forward: the reference release repacks CPU weights in place on first use.)
        for name, layer in layers.items():
            w = bnb.functional.dequantize_4bit(layer.weight.data, layer.weight.quant_state)
            dense.get_submodule(name).weight.copy_(w.to(dtype))
        exact = dense(input_ids).logits
        logits = model(input_ids).logits
    assert logits.dtype == dtype and logits.shape == (*input_ids.shape, 128)
    assert torch.isfinite(logits).all()
    assert rel_err(logits, exact) < 0.03, "4-bit model differs from its dequantized dense twin"
    assert rel_err(logits, want) < 0.45, "4-bit model strays too far from the unquantized model"
    cos = torch.nn.functional.cosine_similarity(logits.float().flatten(), want.float().flatten(), dim=0)
    assert cos > 0.9

    out = model.generate(input_ids, max_new_tokens=4, do_sample=False)
    assert out.shape == (input_ids.shape[0], input_ids.shape[1] + 4)
    assert torch.equal(out[:, : input_ids.shape[1]], input_ids)
    assert torch.equal(out[:, input_ids.shape[1]], logits[:, -1].argmax(-1))


@pytest.mark.parametrize(
    ("kind", "quant_type", "double_quant"),
    [("llama", "nf4", True), ("opt", "fp4", False)],
    ids=str,
)
def test_4bit_save_pretrained_round_trip(tiny_model_dirs, input_ids, tmp_path, kind, quant_type, double_quant):
    from safetensors import safe_open

    model = load_4bit(tiny_model_dirs[kind], quant_type, double_quant, torch.bfloat16)
    model.save_pretrained(tmp_path)
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        keys = set(f.keys())
    name = next(iter(named_modules_of(model, bnb.nn.Linear4bit)))
    expected = {f"{name}.weight", f"{name}.weight.absmax", f"{name}.weight.quant_map"}
    expected.add(f"{name}.weight.quant_state.bitsandbytes__{quant_type}")
    if double_quant:
        expected |= {f"{name}.weight.nested_absmax", f"{name}.weight.nested_quant_map"}
    assert expected <= keys, expected - keys

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, device_map=DEVICE_MAP)
    assert reloaded.is_loaded_in_4bit
    with torch.no_grad():
        assert torch.equal(model(input_ids).logits, reloaded(input_ids).logits)
