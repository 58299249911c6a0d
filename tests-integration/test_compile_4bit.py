"""torch.compile of a 4-bit model's forward: our ops trace through their fake kernels, no graph
breaks, and the compiled model matches eager."""

from __future__ import annotations

import pytest
import torch
from _flows import DEVICE, DEVICE_MAP, importorskip_transformers

transformers = importorskip_transformers()
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
        tiny_model_dirs["llama"], quantization_config=config, dtype=torch.bfloat16, device_map=DEVICE_MAP
    )
    return model.eval()


def test_compiled_4bit_model_forward_has_no_graph_breaks_and_matches_eager(model_4bit, input_ids):
    """fullgraph=True fails on any graph break; the recording backend runs the captured graph
    (with our ops inside it, traced through their fake kernels) and keeps it for inspection."""
    graphs = []

    def record(gm: torch.fx.GraphModule, example_inputs):
        graphs.append(gm)
        return gm.forward

    ids = input_ids[:, :7]
    torch._dynamo.reset()
    compiled = torch.compile(model_4bit, fullgraph=True, backend=record, dynamic=False)
    with torch.no_grad():
        eager = model_4bit(ids).logits
        got = compiled(ids).logits
    assert len(graphs) == 1
    assert "torch.ops.bitsandbytes" in graphs[0].code, "the 4-bit matmuls are not in the compiled graph"
    torch.testing.assert_close(got, eager, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("tokens", [1, 6])  # the one-token (GEMV) path and the many-token path
def test_compiled_4bit_layer_matches_eager(tokens):
    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(64, 48, compute_dtype=torch.bfloat16, quant_type="nf4").to(DEVICE)
    x = torch.randn(tokens, 64, dtype=torch.bfloat16, device=DEVICE)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    with torch.no_grad():
        torch.testing.assert_close(compiled(x), layer(x))


def test_compiled_4bit_layer_backward_matches_eager():
    torch.manual_seed(0)
    layer = bnb.nn.Linear4bit(64, 48, compute_dtype=torch.float32, quant_type="nf4").to(DEVICE)
    x = torch.randn(5, 64, device=DEVICE, requires_grad=True)
    eager = layer(x)
    (gx_eager,) = torch.autograd.grad(eager.sum(), x)
    torch._dynamo.reset()
    compiled = torch.compile(layer, fullgraph=True, backend="aot_eager")
    x2 = x.detach().clone().requires_grad_(True)
    got = compiled(x2)
    (gx,) = torch.autograd.grad(got.sum(), x2)
    torch.testing.assert_close(got, eager)
    torch.testing.assert_close(gx, gx_eager)
