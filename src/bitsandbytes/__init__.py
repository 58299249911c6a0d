"""Drop-in ``bitsandbytes`` namespace: thin re-exports of the bnb-* packages, no logic.

``import bitsandbytes as bnb`` gives the reference release's API (``bnb.nn.Linear4bit``,
``bnb.optim.AdamW8bit``, ``bnb.functional.quantize_4bit``, ``bnb.matmul_4bit``, ...) backed by
bnb-kernels, bnb-quant, bnb-nn and bnb-optim. ``python -m bitsandbytes`` runs bnb-diagnostics.
"""

from __future__ import annotations

from . import autograd, functional, nn, optim, utils
from .autograd._functions import MatmulLtState, matmul, matmul_4bit
from .nn import modules

# The distribution version of the meta-package (root pyproject.toml); transformers, PEFT and
# accelerate compare it with their minimum bitsandbytes versions. A test keeps the two equal.
__version__ = "0.51.0"

# Integrations (transformers, accelerate) read these: "multi_backend" says ops dispatch per
# device through torch.library; the devices are those with a tested backend (CPU: native C++
# or the reference; CUDA, incl. ROCm builds of torch: Triton).
features = {"multi_backend"}
supported_torch_devices = {"cpu", "cuda"}

__all__ = [
    "MatmulLtState",
    "__version__",
    "autograd",
    "features",
    "functional",
    "matmul",
    "matmul_4bit",
    "modules",
    "nn",
    "optim",
    "supported_torch_devices",
    "utils",
]
