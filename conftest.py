"""Shared pytest set-up for every package's tests and tests-integration."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

FIXTURES = Path(__file__).parent / "fixtures" / "upstream-0.50.2"


@pytest.fixture(scope="session")
def upstream_fixtures() -> Path:
    """Folder of the files written by the reference release (bitsandbytes 0.50.2)."""
    return FIXTURES


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
