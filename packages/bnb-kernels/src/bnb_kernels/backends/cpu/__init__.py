"""Native C++ CPU implementations (loaded through bnb_kernels._native)."""

__all__: list[str] = []
