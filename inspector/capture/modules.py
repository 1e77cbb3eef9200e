"""Where a model's attention weights come from: its self-attention modules, and its cache argument name.

The modules are found by :func:`inspector.architectures.find_attention_modules` (which also
refuses architectures without attention in every layer); it is importable from here as before.
"""

from __future__ import annotations

from torch import nn

from inspector.architectures import find_attention_modules

__all__ = ["cache_kwarg", "find_attention_modules"]


def cache_kwarg(model: nn.Module) -> str:
    """The name of the model's ``forward`` argument that takes the KV cache (``cache`` or ``past_key_values``)."""
    from inspector._compat import cache_kwarg as named  # imports transformers (loaded with any model)

    return named(model)
