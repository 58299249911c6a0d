"""transformers + BitsAndBytesConfig(load_in_8bit=True) (LLM.int8()) on tiny models."""

from __future__ import annotations

import pytest
import torch
from _flows import DEVICE_MAP, importorskip_transformers, named_modules_of, rel_err

transformers = importorskip_transformers()
pytest.importorskip("accelerate")
bnb = pytest.importorskip("bitsandbytes")
from transformers import AutoModelForCausalLM, BitsAndBytesConfig  # noqa: E402

LINEARS_PER_MODEL = {"llama": 2 * 7, "opt": 2 * 6}


def load_8bit(path, threshold: float, dtype: torch.dtype = torch.float16):
    config = BitsAndBytesConfig(load_in_8bit=True, llm_int8_threshold=threshold)
    return AutoModelForCausalLM.from_pretrained(path, quantization_config=config, dtype=dtype, device_map=DEVICE_MAP)


@pytest.mark.parametrize("kind", ["llama", "opt"])
def test_load_8bit_with_and_without_outlier_threshold(tiny_model_dirs, input_ids, kind):
    path = tiny_model_dirs[kind]
    dense = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float16, device_map=DEVICE_MAP)
    with torch.no_grad():
        want = dense(input_ids).logits
    errors = {}
    for threshold in (0.0, 6.0):
        model = load_8bit(path, threshold)
        layers = named_modules_of(model, bnb.nn.Linear8bitLt)
        assert len(layers) == LINEARS_PER_MODEL[kind]
        for layer in layers.values():
            assert isinstance(layer.weight, bnb.nn.Int8Params)
            assert layer.weight.dtype == torch.int8
            assert layer.state.threshold == threshold
            assert layer.weight.SCB is not None and layer.weight.SCB.shape == (layer.out_features,)
        assert model.get_memory_footprint() < 0.8 * dense.get_memory_footprint()
        with torch.no_grad():
            logits = model(input_ids).logits
        assert torch.isfinite(logits).all()
        errors[threshold] = rel_err(logits, want)
        assert errors[threshold] < 0.05, f"threshold {threshold}: relative error {errors[threshold]:.4f}"

        out = model.generate(input_ids, max_new_tokens=4, do_sample=False)
        assert out.shape == (input_ids.shape[0], input_ids.shape[1] + 4)
        assert torch.equal(out[:, input_ids.shape[1]], logits[:, -1].argmax(-1))
    # The tiny models carry one large embedding feature (conftest.OUTLIER_DIM): holding it back in
    # 16 bits (threshold 6) must be more accurate than quantizing it with everything else.
    assert errors[6.0] < errors[0.0], errors


@pytest.mark.parametrize(("kind", "threshold"), [("llama", 6.0), ("opt", 0.0)], ids=str)
def test_8bit_save_pretrained_round_trip(tiny_model_dirs, input_ids, tmp_path, kind, threshold):
    from safetensors import safe_open

    model = load_8bit(tiny_model_dirs[kind], threshold)
    model.save_pretrained(tmp_path)
    name = next(iter(named_modules_of(model, bnb.nn.Linear8bitLt)))
    with safe_open(str(tmp_path / "model.safetensors"), "pt") as f:
        assert f.get_tensor(f"{name}.weight").dtype == torch.int8
        assert f.get_tensor(f"{name}.SCB").dtype == torch.float32
        assert f"{name}.weight_format" in set(f.keys())

    reloaded = AutoModelForCausalLM.from_pretrained(tmp_path, device_map=DEVICE_MAP)
    assert reloaded.is_loaded_in_8bit
    with torch.no_grad():
        assert torch.equal(model(input_ids).logits, reloaded(input_ids).logits)
