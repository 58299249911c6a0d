"""Triton GPU implementations (CUDA). Registered only when Triton imports."""

__all__: list[str] = []
