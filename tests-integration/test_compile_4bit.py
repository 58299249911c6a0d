"""torch.compile of a 4-bit model's forward: our ops trace through their fake kernels, no graph
breaks, and the compiled model matches eager."""

from __future__ import annotations

import pytest
import torch

transformers = pytest.importorskip("transformers")
bnb = pytest.importorskip("bitsandbytes")
from transformers import AutoModelForCausalLM, BitsAndBytesConfig  # noqa: E402


@pytest.fixture(scope="module")
def model_4bit(tiny_model_dirs):
    config = BitsAndBytesConfig(
        load_in_4bit=True,
        bnb_4bit_quant_type="nf4",
        bnb_4bit_use_double_quant=True,
        bnb_4bit_compute_dtype=torch.bfloat16,
    )
    model = AutoModelForCausalLM.from_pretrained(
        tiny_model_dirs["llama"], quantization_config=config, dtype=torch.bfloat16
    )
    return model.eval()


def test_4bit_model_forward_has_no_graph_breaks(model_4bit, input_ids):
    torch._dynamo.reset()
    with torch.no_grad():
        explanation = torch._dynamo.explain(model_4bit)(input_ids)
    reasons = [str(r.reason) for r in explanation.break_reasons]
    ours = [r for r in reasons if "bitsandbytes" in r or "bnb" in r]
    assert not ours, ours
    assert explanation.graph_break_count == 0, reasons
    # our ops are in the captured graph, not run eagerly beside it
    code = "\n".join(g.code for g in explanation.graphs)
    assert "bitsandbytes" in code


@pytest.mark.parametrize("tokens", [1, 7])  # the one-token path and the many-token path
def test_compiled_4bit_forward_matches_eager(model_4bit, input_ids, tokens):
    ids = input_ids[:, :tokens]
    torch._dynamo.reset()
    compiled = torch.compile(model_4bit, fullgraph=True, backend="aot_eager", dynamic=False)
    with torch.no_grad():
        eager = model_4bit(ids).logits
        got = compiled(ids).logits
    torch.testing.assert_close(got, eager, rtol=1e-2, atol=1e-2)


def test_compiled_4bit_layer_backward_matches_eager():
    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(64, 48, compute_dtype=torch.float32, quant_type="nf4").to("cpu")
    x = torch.randn(5, 64, requires_grad=True)
    eager = layer(x)
    (gx_eager,) = torch.autograd.grad(eager.sum(), x)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x2 = x.detach().clone().requires_grad_(True)
    got = compiled(x2)
    (gx,) = torch.autograd.grad(got.sum(), x2)
    torch.testing.assert_close(got, eager)
    torch.testing.assert_close(gx, gx_eager)
