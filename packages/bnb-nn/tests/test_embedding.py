"""4-bit embeddings against the dense table; 32-bit optimizer tags on Embedding/StableEmbedding."""

from __future__ import annotations

import pytest
import torch

import bnb_quant.functional as F
from bnb_nn import Embedding, Embedding4bit, EmbeddingFP4, EmbeddingNF4, StableEmbedding


@pytest.mark.parametrize("cls", [EmbeddingNF4, EmbeddingFP4])
@pytest.mark.parametrize("dim", [128, 96])  # 96: not a multiple of the block size (full dequantize path)
def test_embedding4bit_matches_dequantized_table(cls, dim) -> None:
    dense = torch.nn.Embedding(50, dim)
    if dim % 64:
        with pytest.warns(UserWarning, match="not divisible"):
            emb = cls(50, dim)
    else:
        emb = cls(50, dim)
    emb.load_state_dict(dense.state_dict())
    emb = emb.cpu()
    idx = torch.tensor([[0, 3, 49], [7, 7, 1]])
    out = emb(idx)
    assert out.shape == (2, 3, dim) and out.dtype == torch.float32
    table = F.dequantize_4bit(emb.weight, emb.weight.quant_state).reshape(50, dim)
    assert torch.equal(out, table[idx])
    # accuracy over every row: 6 looked-up rows (576 values) put fp4's ~0.122 over 0.13 now and then
    rows = torch.arange(50)
    rel = ((emb(rows) - dense(rows)).norm() / dense(rows).norm()).item()
    assert rel < 0.13


def test_embedding4bit_errors() -> None:
    emb = Embedding4bit(10, 64, quant_type="nf4")
    with pytest.raises(RuntimeError, match="never quantized"):
        emb(torch.tensor([1]))
    emb = emb.cpu()
    with pytest.raises(TypeError, match="indices"):
        emb(torch.tensor([1.0]))
    with pytest.raises(NotImplementedError):
        emb.state_dict()


@pytest.mark.parametrize("cls", [Embedding, StableEmbedding])
def test_float_embeddings_ask_for_32bit_optimizer_state(cls) -> None:
    emb = cls(20, 16, padding_idx=0)
    assert emb.weight.bnb_optim_overrides == {"optim_bits": 32}
    assert torch.all(emb.weight[0] == 0)
    out = emb(torch.tensor([[0, 5, 19]]))
    assert out.shape == (1, 3, 16)
    if cls is StableEmbedding:
        assert torch.allclose(out.mean(-1), torch.zeros(1, 3), atol=1e-5)  # layer norm applied
    out.sum().backward()
    assert emb.weight.grad is not None
