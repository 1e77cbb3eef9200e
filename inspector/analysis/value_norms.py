"""Value-vector norms of a whole model by one forward pass (Kobayashi et al. 2020, "Attention is not only a
weight").

The math (a layer's value and output weights, the norms of its transformed values, norm-weighted
attention) is in :mod:`inspector._value_math`, below both the capture (which computes the norms while
generating) and the analysis; its names are importable from here as well.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from inspector._value_math import (
    ValueWeights,
    layer_value_norms,
    norm_weighted_attention,
    transformed_values,
    value_norms_from_weights,
    value_weights,
)

__all__ = ["ValueWeights", "attention_modules", "layer_value_norms", "model_value_norms",
           "norm_weighted_attention", "transformed_values", "value_norms_from_weights", "value_weights"]


def attention_modules(model: nn.Module) -> list[nn.Module]:
    """The self-attention module of every layer, in layer order (named ``attn``, ``self_attn``, ``attention``
    or ``self_attention``, as in Falcon and BLOOM)."""
    names = ("attn", "self_attn", "attention", "self_attention")
    found = [m for name, m in model.named_modules()
             if name.rsplit(".", 1)[-1] in names and type(m).__name__.endswith("Attention")]
    expected = getattr(getattr(model, "config", None), "num_hidden_layers", None)
    if not found or (isinstance(expected, int) and len(found) != expected):
        raise ValueError(f"could not find the {expected} attention modules of {type(model).__name__} "
                         f"(found {len(found)})")
    return found


def model_value_norms(model: Any, input_ids: torch.Tensor) -> torch.Tensor:
    """``[layer, head, key]`` value norms of every layer for one sequence ``[seq]``, by one forward pass.

    Each attention module's input is taken by a forward pre-hook (removed afterwards),
    so ``x`` is exactly what the layer saw, after its pre-attention norm.
    ``model``: a Hugging Face causal LM or an ``InspectorModel`` (``.model``).
    """
    from inspector._compat import attention_input  # imports transformers (loaded with any model)

    module = model if isinstance(model, nn.Module) else model.model
    if input_ids.dim() != 1 or input_ids.numel() == 0:
        raise ValueError(f"input_ids must be a non-empty [seq], got {tuple(input_ids.shape)}")
    mods = attention_modules(module)
    weights = [value_weights(m) for m in mods]
    inputs: dict[int, torch.Tensor] = {}

    def grab(i: int) -> Callable[..., None]:
        def hook(_mod: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            inputs[i] = attention_input(args, kwargs).detach()[0]
        return hook

    handles = [m.register_forward_pre_hook(grab(i), with_kwargs=True) for i, m in enumerate(mods)]
    try:
        with torch.no_grad():
            module(input_ids.unsqueeze(0).to(next(module.parameters()).device))
    finally:
        for h in handles:
            h.remove()
    return torch.stack([value_norms_from_weights(inputs[i], w).cpu() for i, w in enumerate(weights)])
