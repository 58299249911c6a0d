"""Bad input at load time: a checkpoint quantized with another quant type / block size than the
model is configured for, or a truncated / corrupted quantized checkpoint, gives a clear error that
names the tensor, never a silently wrong model. (The reference release loads several of these
without a word.)"""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
from _flows import DEVICE_MAP, importorskip_transformers, transformers_log

transformers = importorskip_transformers()
bnb = pytest.importorskip("bitsandbytes")
from safetensors.torch import load_file, save_file  # noqa: E402
from transformers import AutoModelForCausalLM, BitsAndBytesConfig  # noqa: E402

TARGET = "model.layers.0.mlp.up_proj.weight"
TARGET_PATTERN = re.escape(TARGET)


@pytest.fixture(scope="module")
def saved_4bit(tiny_model_dirs, tmp_path_factory):
    config = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=torch.bfloat16)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dirs["llama"], quantization_config=config, dtype=torch.bfloat16, device_map=DEVICE_MAP
    )
    path = tmp_path_factory.mktemp("q4")
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def saved_8bit(tiny_model_dirs, tmp_path_factory):
    config = BitsAndBytesConfig(load_in_8bit=True)
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dirs["llama"], quantization_config=config, dtype=torch.float16, device_map=DEVICE_MAP
    )
    path = tmp_path_factory.mktemp("q8")
    model.save_pretrained(path)
    return path


def tampered_copy(src, dst, edit_tensors=None, edit_config=None):
    shutil.copytree(src, dst)
    if edit_tensors is not None:
        tensors = load_file(src / "model.safetensors")
        edit_tensors(tensors)
        save_file(tensors, dst / "model.safetensors", metadata={"format": "pt"})
    if edit_config is not None:
        config = json.loads((dst / "config.json").read_text())
        edit_config(config["quantization_config"])
        (dst / "config.json").write_text(json.dumps(config))
    return dst


def assert_load_fails_naming(path, *words, tensor=TARGET_PATTERN):
    """Loading raises, and what the user is shown names the tensor and the problem."""
    with transformers_log() as log, pytest.raises((RuntimeError, ValueError)) as exc:
        AutoModelForCausalLM.from_pretrained(path, device_map=DEVICE_MAP)
    shown = str(exc.value) + "\n" + "\n".join(log)
    assert re.search(tensor, shown), shown[-2000:]
    for word in words:
        assert word in shown, (word, shown[-2000:])


def test_truncated_packed_4bit_weight(saved_4bit, tmp_path):
    def cut(t):
        t[TARGET] = t[TARGET][: t[TARGET].shape[0] // 2].clone()

    assert_load_fails_naming(tampered_copy(saved_4bit, tmp_path / "m", cut), "bytes")


def test_truncated_absmax(saved_4bit, tmp_path):
    def cut(t):
        t[TARGET + ".absmax"] = t[TARGET + ".absmax"][:-3].clone()

    assert_load_fails_naming(tampered_copy(saved_4bit, tmp_path / "m", cut), "absmax")


def test_corrupted_packed_quant_state(saved_4bit, tmp_path):
    key = TARGET + ".quant_state.bitsandbytes__nf4"

    def corrupt(t):
        t[key] = t[key][:-5].clone()

    assert_load_fails_naming(tampered_copy(saved_4bit, tmp_path / "m", corrupt), "JSON")


def test_checkpoint_quant_type_differs_from_config(saved_4bit, tmp_path):
    def fp4(qc):
        qc["bnb_4bit_quant_type"] = "fp4"

    # every 4-bit layer is refused; the report names them
    any_layer = r"model\.layers\.\d+\.(self_attn|mlp)\.\w+_proj\.weight"
    assert_load_fails_naming(tampered_copy(saved_4bit, tmp_path / "m", edit_config=fp4), "nf4", "fp4", tensor=any_layer)


def test_truncated_int8_scales(saved_8bit, tmp_path):
    def cut(t):
        t[TARGET.replace(".weight", ".SCB")] = t[TARGET.replace(".weight", ".SCB")][:-1].clone()

    with transformers_log() as log, pytest.raises((RuntimeError, ValueError)) as exc:
        AutoModelForCausalLM.from_pretrained(tampered_copy(saved_8bit, tmp_path / "m", cut), device_map=DEVICE_MAP)
    shown = str(exc.value) + "\n" + "\n".join(log)
    assert TARGET.replace(".weight", "") in shown and "SCB" in shown, shown[-2000:]


def nf4_layer_state_dict():
    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32, quant_type="nf4")
    return layer.to("cpu").state_dict()


def test_module_rejects_a_checkpoint_of_another_quant_type():
    target = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32, quant_type="fp4")
    with pytest.raises((RuntimeError, ValueError)) as exc:
        target.load_state_dict(nf4_layer_state_dict())
    message = str(exc.value)
    assert "weight" in message and "nf4" in message and "fp4" in message, message


def test_module_rejects_a_checkpoint_of_another_block_size():
    target = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32, quant_type="nf4")
    target.weight = bnb.nn.Params4bit(target.weight.data, requires_grad=False, blocksize=128, quant_type="nf4")
    with pytest.raises((RuntimeError, ValueError)) as exc:
        target.load_state_dict(nf4_layer_state_dict())
    message = str(exc.value)
    assert "weight" in message and "64" in message and "128" in message, message


def test_module_rejects_a_truncated_checkpoint():
    sd = nf4_layer_state_dict()
    sd["weight"] = sd["weight"][:-10].clone()
    target = bnb.nn.Linear4bit(64, 32, compute_dtype=torch.float32, quant_type="nf4")
    with pytest.raises((RuntimeError, ValueError)) as exc:
        target.load_state_dict(sd)
    assert "weight" in str(exc.value), str(exc.value)
