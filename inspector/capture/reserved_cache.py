"""A KV cache whose full-attention layers reserve room for the whole generation and write each step in place.

transformers' ``DynamicLayer`` grows by ``torch.cat``: every decoding step copies the whole cache
of every layer once more. At batch 16 with GPT-2 small on a CPU that copying was about 14% of
``generate``'s time. The capture knows the final length before it starts (prompt + new tokens + the
extra step for the last token's attention row), so :class:`ReservedLayer` allocates its keys and
values once and hands the model views of the filled part: the same numbers, bit for bit, without the
copies. Anything that replaces the tensors (selecting or reordering rows) simply continues as a
``DynamicLayer`` would, by concatenation.
"""

from __future__ import annotations

from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

__all__ = ["ReservedLayer", "reserved_cache"]


class ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys`` and ``values`` ``[batch, kv_head, position, head_dim]`` are views of
    buffers reserved for ``capacity`` positions, filled in place."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._key_buf: torch.Tensor | None = None
        self._value_buf: torch.Tensor | None = None

    def _filled(self) -> int | None:
        """How many positions of the buffers ``keys`` holds, or ``None`` when it is no longer a view of them."""
        buf, keys = self._key_buf, self.keys
        if buf is None or keys is None or keys.data_ptr() != buf.data_ptr() or keys.shape[:-2] != buf.shape[:-2] \
                or keys.stride() != buf.stride():
            return None
        return int(keys.shape[-2])

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """Write the new positions after the filled ones and return views of everything filled."""
        if not self.is_initialized:
            self.lazy_initialization(key_states, value_states)
        new = int(key_states.shape[-2])
        if self.keys is None or self.keys.numel() == 0:
            size = max(self.capacity, new)
            self._key_buf = key_states.new_empty((*key_states.shape[:-2], size, key_states.shape[-1]))
            self._value_buf = value_states.new_empty((*value_states.shape[:-2], size, value_states.shape[-1]))
            filled: int | None = 0
        else:
            filled = self._filled()
        if filled is None or filled + new > int(self._key_buf.shape[-2]):  # type: ignore[union-attr]
            return super().update(key_states, value_states, *args, **kwargs)
        assert self._key_buf is not None and self._value_buf is not None
        self._key_buf[..., filled : filled + new, :].copy_(key_states)
        self._value_buf[..., filled : filled + new, :].copy_(value_states)
        self.keys = self._key_buf[..., : filled + new, :]
        self.values = self._value_buf[..., : filled + new, :]
        return self.keys, self.values


def reserved_cache(model: Any, capacity: int, generation_config: Any = None) -> Any | None:
    """A ``DynamicCache`` for ``model`` whose full-attention layers are :class:`ReservedLayer` of ``capacity``.

    ``None`` where ``generate`` would not build a ``DynamicCache`` itself (models with their own
    cache, a ``cache_implementation`` in the model's generation config, or another than ``"dynamic"``
    in ``generation_config``) or no layer can be reserved (sliding windows only). A
    ``generation_config`` passed with the cache must leave ``cache_implementation`` unset:
    ``generate`` refuses both.
    """
    if not getattr(model, "_supports_default_dynamic_cache", lambda: False)():
        return None
    # generate refuses a cache together with a cache_implementation, and fills an unset one from the model's
    if getattr(getattr(model, "generation_config", None), "cache_implementation", None) is not None:
        return None
    if getattr(generation_config, "cache_implementation", None) not in (None, "dynamic"):
        return None
    try:
        cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    except (TypeError, ValueError):  # pragma: no cover - a version whose constructor differs
        return None
    layers = getattr(cache, "layers", None)
    if not layers or not any(type(layer) is DynamicLayer for layer in layers):
        return None
    cache.layers = [ReservedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in layers]
    return cache
