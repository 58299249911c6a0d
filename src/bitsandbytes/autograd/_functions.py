"""``bitsandbytes.autograd._functions``: where the reference release defines ``matmul``,
``matmul_4bit`` and their autograd functions; re-exports bnb-nn."""

from __future__ import annotations

from bnb_nn import MatMul4Bit, MatMul8bitLt, MatmulLtState, matmul, matmul_4bit

__all__ = ["MatMul4Bit", "MatMul8bitLt", "MatmulLtState", "matmul", "matmul_4bit"]
