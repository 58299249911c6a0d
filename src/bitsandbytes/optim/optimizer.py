"""``bitsandbytes.optim.optimizer``: the optimizer base classes and GlobalOptimManager (bnb-optim)."""

from __future__ import annotations

from bnb_optim import GlobalOptimManager, Optimizer1State, Optimizer2State, Optimizer8bit

__all__ = ["GlobalOptimManager", "Optimizer1State", "Optimizer2State", "Optimizer8bit"]
