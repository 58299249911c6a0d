"""Embeddings: 4-bit (Embedding4bit, EmbeddingNF4, EmbeddingFP4) and the two float
embeddings whose weights ask the optimizer for 32-bit state (Embedding, StableEmbedding).

The float embeddings tag their weight with ``bnb_optim_overrides = {"optim_bits": 32}``;
bnb-optim reads that attribute. Neither package imports the other.
"""

from __future__ import annotations

import warnings

import torch
import torch.nn.functional as F

from bnb_quant import QuantState, dequantize_4bit, dequantize_blockwise

from .params4bit import Params4bit, fix_4bit_weight_quant_state_from_module

__all__ = ["OPTIM_OVERRIDES_ATTR", "Embedding", "Embedding4bit", "EmbeddingFP4", "EmbeddingNF4", "StableEmbedding"]

# The attribute bnb-optim reads for per-parameter optimizer settings.
OPTIM_OVERRIDES_ATTR = "bnb_optim_overrides"


def _tag_32bit_state(param: torch.nn.Parameter) -> None:
    setattr(param, OPTIM_OVERRIDES_ATTR, {"optim_bits": 32})


class StableEmbedding(torch.nn.Embedding):
    """Embedding with Xavier init and a LayerNorm, trained with 32-bit optimizer state."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: torch.Tensor | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype | None = None,
    ) -> None:
        super().__init__(
            num_embeddings, embedding_dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _weight,
            device=device, dtype=dtype,
        )  # fmt: skip
        self.norm = torch.nn.LayerNorm(embedding_dim, device=device)
        _tag_32bit_state(self.weight)

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.weight)
        self._fill_padding_idx_with_zero()

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        emb = F.embedding(
            input, self.weight, self.padding_idx, self.max_norm, self.norm_type, self.scale_grad_by_freq, self.sparse
        )
        # The layer norm always runs in full precision.
        emb = emb.to(torch.get_default_dtype())
        return self.norm(emb).to(self.weight.dtype)


class Embedding(torch.nn.Embedding):
    """torch.nn.Embedding with Xavier init, trained with 32-bit optimizer state."""

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        padding_idx: int | None = None,
        max_norm: float | None = None,
        norm_type: float = 2.0,
        scale_grad_by_freq: bool = False,
        sparse: bool = False,
        _weight: torch.Tensor | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            num_embeddings, embedding_dim, padding_idx, max_norm, norm_type, scale_grad_by_freq, sparse, _weight,
            device=device,
        )  # fmt: skip
        _tag_32bit_state(self.weight)

    def reset_parameters(self) -> None:
        torch.nn.init.xavier_uniform_(self.weight)
        self._fill_padding_idx_with_zero()


class Embedding4bit(torch.nn.Embedding):
    """An embedding table stored in 4 bit (quantized on the first move to a device).

    Looking up rows dequantizes only those rows when ``embedding_dim`` is a multiple of the
    block size; otherwise the table is dequantized and indexed.
    """

    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        dtype: torch.dtype | None = None,
        quant_type: str = "fp4",
        quant_storage: torch.dtype = torch.uint8,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(num_embeddings, embedding_dim, device=device, dtype=dtype)
        self.dtype = self.weight.data.dtype
        self.weight = Params4bit(
            self.weight.data,
            requires_grad=False,
            compress_statistics=None,
            quant_type=quant_type,
            quant_storage=quant_storage,
            module=self,
        )
        self.quant_state: QuantState | None = None
        self.quant_storage = quant_storage
        blocksize = self.weight.blocksize
        if embedding_dim % blocksize != 0:
            warnings.warn(
                f"Embedding size {embedding_dim} is not divisible by block size {blocksize}. "
                "This will lead to slow inference.",
                stacklevel=2,
            )

    def _save_to_state_dict(self, destination, prefix, keep_vars) -> None:
        raise NotImplementedError("Saving Embedding4bit module is not implemented")

    def _flat_absmax(self, qs: QuantState) -> torch.Tensor:
        if not qs.nested:
            return qs.absmax.float()
        return dequantize_blockwise(qs.absmax, qs.state2).float() + qs.offset

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        fix_4bit_weight_quant_state_from_module(self)
        qs = self.weight.quant_state
        if input.dtype not in (torch.int32, torch.int64):
            raise TypeError(f"Embedding4bit indices must be int32 or int64, got {input.dtype}")
        with torch._C.DisableTorchFunctionSubclass():
            packed = self.weight.view(torch.uint8).reshape(-1)
        if input.device != packed.device:
            raise ValueError(f"Embedding4bit: indices on {input.device}, the table is on {packed.device}")
        D = self.embedding_dim
        if D % qs.blocksize == 0:
            rows = F.embedding(input.reshape(-1), packed.view(self.num_embeddings, D // 2))
            per_row = D // qs.blocksize
            absmax = F.embedding(input.reshape(-1), self._flat_absmax(qs).view(self.num_embeddings, per_row))
            state = QuantState(
                absmax=absmax.reshape(-1),
                shape=torch.Size((*input.shape, D)),
                code=qs.code,
                blocksize=qs.blocksize,
                quant_type=qs.quant_type,
                dtype=qs.dtype,
            )
            out = dequantize_4bit(rows.reshape(-1, 1), state)
            return out.reshape(*input.shape, D).to(self.dtype)
        table = dequantize_4bit(packed.reshape(-1, 1), qs)
        return F.embedding(input, table.reshape(self.num_embeddings, D)).to(self.dtype)


class EmbeddingFP4(Embedding4bit):
    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        dtype: torch.dtype | None = None,
        quant_storage: torch.dtype = torch.uint8,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            num_embeddings, embedding_dim, dtype=dtype, quant_type="fp4", quant_storage=quant_storage, device=device
        )


class EmbeddingNF4(Embedding4bit):
    def __init__(
        self,
        num_embeddings: int,
        embedding_dim: int,
        dtype: torch.dtype | None = None,
        quant_storage: torch.dtype = torch.uint8,
        device: torch.device | str | None = None,
    ) -> None:
        super().__init__(
            num_embeddings, embedding_dim, dtype=dtype, quant_type="nf4", quant_storage=quant_storage, device=device
        )
