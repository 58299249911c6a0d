"""``replace_linear``: swap the ``torch.nn.Linear`` layers of a model for another class
(bitsandbytes.utils.replace_linear semantics)."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch

__all__ = ["replace_linear"]


def replace_linear(
    model: torch.nn.Module,
    linear_replacement: Callable[..., torch.nn.Module],
    skip_modules: Sequence[str] = ("lm_head",),
    copy_weights: bool = False,
    post_processing_function: str | None = None,
) -> torch.nn.Module:
    """Replace every ``torch.nn.Linear`` in ``model`` (recursively, in place) by
    ``linear_replacement(in_features, out_features, bias)``, except children named in
    ``skip_modules``. ``copy_weights`` moves the old weight and bias over;
    ``post_processing_function`` names a method of the old module to call afterwards."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    if not callable(linear_replacement):
        raise TypeError("linear_replacement must be a class or callable building the new layer")
    for name, module in model.named_children():
        if len(list(module.children())) > 0:
            replace_linear(module, linear_replacement, skip_modules, copy_weights, post_processing_function)
        if isinstance(module, torch.nn.Linear) and name not in skip_modules:
            old_module = model._modules[name]
            new_module = linear_replacement(module.in_features, module.out_features, module.bias is not None)
            model._modules[name] = new_module
            if copy_weights:
                new_module.weight = old_module.weight
                new_module.bias = old_module.bias
            if post_processing_function is not None:
                func = getattr(module, post_processing_function, None)
                if func is not None:
                    func(module)
    return model
