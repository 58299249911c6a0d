"""Helpers shared by the transformers/PEFT flow tests."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
import torch

# The flows run on the GPU when there is one (as transformers would pick), else on the CPU.
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
DEVICE_MAP = {"": DEVICE}


def importorskip_transformers():
    """transformers, or a skip when it is missing or has disabled its torch models (transformers 5
    needs torch >= 2.6: on older torch it imports but its models are placeholders)."""
    transformers = pytest.importorskip("transformers")
    if not transformers.utils.is_torch_available():
        pytest.skip(
            f"transformers {transformers.__version__} disabled its torch support (torch {torch.__version__})",
            allow_module_level=True,
        )
    return transformers


def rel_err(got: torch.Tensor, want: torch.Tensor) -> float:
    got, want = got.float(), want.float()
    return float((got - want).norm() / want.norm())


def named_modules_of(model: torch.nn.Module, cls: type) -> dict[str, torch.nn.Module]:
    return {name: m for name, m in model.named_modules() if isinstance(m, cls)}


@contextmanager
def transformers_log() -> Iterator[list[str]]:
    """Collect what transformers logs (its logger does not propagate to the root logger)."""
    records: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record.getMessage())

    handler = Collect(level=logging.DEBUG)
    logger = logging.getLogger("transformers")
    logger.addHandler(handler)
    try:
        yield records
    finally:
        logger.removeHandler(handler)
