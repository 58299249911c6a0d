"""Backend implementations. Registration is explicit: each backend package imports its
family modules, and each module registers its functions with ``bnb_kernels._registry``."""

from . import cpu, reference, triton

__all__ = ["cpu", "reference", "triton"]
