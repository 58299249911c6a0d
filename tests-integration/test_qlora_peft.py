"""QLoRA: PEFT LoRA adapters on a 4-bit model, trained with PagedAdamW8bit; adapters save and reload."""

from __future__ import annotations

import pytest
import torch
from _flows import DEVICE, DEVICE_MAP, importorskip_transformers

transformers = importorskip_transformers()
peft = pytest.importorskip("peft")
bnb = pytest.importorskip("bitsandbytes")
from transformers import AutoModelForCausalLM, BitsAndBytesConfig  # noqa: E402

TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]


def load_qlora_base(path):
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        path, quantization_config=config, dtype=torch.bfloat16, device_map=DEVICE_MAP
    )
    return peft.prepare_model_for_kbit_training(model, use_gradient_checkpointing=False)


def test_qlora_trains_with_paged_adamw8bit_and_adapters_reload(tiny_model_dirs, tmp_path):
    base = load_qlora_base(tiny_model_dirs["llama"])
    frozen = {n: p.detach().clone() for n, p in base.named_parameters() if p.dtype == torch.uint8}
    lora = peft.LoraConfig(r=8, lora_alpha=16, target_modules=TARGETS, lora_dropout=0.0, task_type="CAUSAL_LM")
    model = peft.get_peft_model(base, lora)

    wrapped = [m for m in model.modules() if isinstance(getattr(m, "base_layer", None), bnb.nn.Linear4bit)]
    assert len(wrapped) == 2 * len(TARGETS), "LoRA must sit on every 4-bit layer"
    trainable = [p for p in model.parameters() if p.requires_grad]
    assert trainable and all(p.dtype == torch.float32 for p in trainable)

    # min_8bit_size small enough that the LoRA matrices (8 x 64, 128 x 8, ...) get 8-bit state.
    optimizer = bnb.optim.PagedAdamW8bit(trainable, lr=1e-2, min_8bit_size=256)
    data = torch.randint(1, 128, (4, 16), generator=torch.Generator().manual_seed(3)).to(DEVICE)
    losses = []
    model.train()
    for _ in range(10):
        loss = model(input_ids=data, labels=data).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        losses.append(loss.item())
    assert all(torch.isfinite(torch.tensor(losses)))
    assert losses[-1] < losses[0] and sum(losses[-3:]) < 0.95 * sum(losses[:3]), losses

    big = [p for p in trainable if p.numel() >= 256]
    assert big
    for p in big:
        state = optimizer.state[p]
        assert state["state1"].dtype == torch.uint8 and state["state2"].dtype == torch.uint8
    # The 4-bit base weights never move.
    for name, p in model.named_parameters():
        key = name.replace("base_model.model.", "").replace(".base_layer", "")
        if key in frozen:
            assert torch.equal(p.detach(), frozen[key]), name

    model.eval()
    with torch.no_grad():
        trained = model(data).logits
    model.save_pretrained(tmp_path / "adapter")
    assert (tmp_path / "adapter" / "adapter_model.safetensors").is_file()

    fresh = load_qlora_base(tiny_model_dirs["llama"])
    with torch.no_grad():
        untrained = fresh(data).logits
    reloaded = peft.PeftModel.from_pretrained(fresh, tmp_path / "adapter")
    reloaded.eval()
    saved = peft.get_peft_model_state_dict(model)
    again = peft.get_peft_model_state_dict(reloaded)
    assert saved.keys() == again.keys()
    for key in saved:
        assert torch.equal(saved[key], again[key]), key
    with torch.no_grad():
        # bf16 compute: allow for a different summation order, nothing more
        torch.testing.assert_close(reloaded(data).logits, trained, rtol=1e-2, atol=1e-2)
    assert not torch.allclose(untrained, trained), "the adapters changed nothing"
