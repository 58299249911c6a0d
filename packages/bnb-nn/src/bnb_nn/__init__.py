"""bnb-nn: quantized modules (Linear4bit, Linear8bitLt, embeddings) and their autograd."""

from __future__ import annotations

__version__ = "0.1.0"

from bnb_kernels.compat import require

require("bnb-nn", __version__, {"bnb_kernels": ("0.1", "0.2"), "bnb_quant": ("0.1", "0.2")})

from .autograd_4bit import MatMul4Bit, matmul_4bit  # noqa: E402
from .autograd_8bit import MatMul8bitLt, MatmulLtState, matmul  # noqa: E402
from .embedding import Embedding, Embedding4bit, EmbeddingFP4, EmbeddingNF4, StableEmbedding  # noqa: E402
from .int8 import Embedding8bit, Int8Params, Linear8bitLt  # noqa: E402
from .linear4bit import Linear4bit, LinearFP4, LinearNF4  # noqa: E402
from .parametrize import replace_parameter_4bit, replace_parameter_4bit_prequantized  # noqa: E402
from .params4bit import Params4bit  # noqa: E402
from .utils import replace_linear  # noqa: E402

__all__ = [
    "Embedding",
    "Embedding4bit",
    "Embedding8bit",
    "EmbeddingFP4",
    "EmbeddingNF4",
    "Int8Params",
    "Linear4bit",
    "Linear8bitLt",
    "LinearFP4",
    "LinearNF4",
    "MatMul4Bit",
    "MatMul8bitLt",
    "MatmulLtState",
    "Params4bit",
    "StableEmbedding",
    "__version__",
    "matmul",
    "matmul_4bit",
    "replace_linear",
    "replace_parameter_4bit",
    "replace_parameter_4bit_prequantized",
]
