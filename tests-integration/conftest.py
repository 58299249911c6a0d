"""Tiny transformers models built from a config (random weights, no network) for the flows."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
import torch

# pytest runs with --import-mode=importlib: make the shared helper module (_flows.py) importable.
sys.path.insert(0, str(Path(__file__).parent))

from _flows import DEVICE

transformers = pytest.importorskip("transformers")

VOCAB = 128
OUTLIER_DIM = 5


def llama_config():
    return transformers.LlamaConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=64,
        tie_word_embeddings=False,
    )


def opt_config():
    return transformers.OPTConfig(
        vocab_size=VOCAB,
        hidden_size=64,
        ffn_dim=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        max_position_embeddings=64,
        word_embed_proj_dim=64,
    )


CONFIGS = {"llama": llama_config, "opt": opt_config}


def build_and_save(kind: str, path: Path, seed: int = 0) -> Path:
    """A randomly initialized model of ``kind``, saved in float32 with save_pretrained."""
    torch.manual_seed(seed)
    config = CONFIGS[kind]()
    model = transformers.AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    # Random init is near-flat (std 0.02); a larger spread makes the logits and the greedy choice
    # meaningful while keeping activations far from fp16 overflow.
    with torch.no_grad():
        for p in model.parameters():
            if p.dim() == 2:
                p.normal_(0.0, 0.08)
        # One large embedding feature: after the first norm it exceeds 6, so LLM.int8() with
        # threshold 6 has outlier columns to hold back in 16 bits.
        model.get_input_embeddings().weight[:, OUTLIER_DIM] = 3.0
    model.generation_config.pad_token_id = 0
    model.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def tiny_model_dirs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("tiny-models")
    return {kind: build_and_save(kind, root / kind) for kind in CONFIGS}


@pytest.fixture(scope="session")
def input_ids() -> torch.Tensor:
    return torch.randint(1, VOCAB, (2, 12), generator=torch.Generator().manual_seed(1)).to(DEVICE)
