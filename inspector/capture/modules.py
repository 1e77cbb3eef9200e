"""Where a model's attention weights come from: its self-attention modules, and its cache argument name."""

from __future__ import annotations

import inspect

from torch import nn


def find_attention_modules(model: nn.Module) -> list[tuple[nn.Module, int]]:
    """``[(module, output_index)]`` for every self-attention module, in layer order.

    Uses the model's own ``_can_record_outputs["attentions"]`` declaration (what
    ``output_attentions`` uses in transformers 5), else modules named ``attn`` or
    ``self_attn`` whose class name ends with ``Attention``.
    """
    spec = (getattr(model, "_can_record_outputs", None) or {}).get("attentions")
    found: list[tuple[nn.Module, int]] = []
    if spec is not None:
        target = getattr(spec, "target_class", spec)
        index = int(getattr(spec, "index", 1))
        layer_name = getattr(spec, "layer_name", None)
        if isinstance(target, type):
            module: nn.Module
            for name, module in model.named_modules():
                if isinstance(module, target) and (layer_name is None or name.endswith(layer_name)):
                    found.append((module, index))
    if not found:
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in ("attn", "self_attn") and type(module).__name__.endswith("Attention"):
                found.append((module, 1))
    expected = getattr(model.config, "num_hidden_layers", None)
    if not found or (expected is not None and len(found) != expected):
        raise ValueError(
            f"could not find the {expected} self-attention modules of {type(model).__name__} "
            f"(found {len(found)}); this model type is not supported for attention capture"
        )
    return found


def cache_kwarg(model: nn.Module) -> str:
    """The name of the model's ``forward`` argument that takes the KV cache (``cache`` or ``past_key_values``)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"
