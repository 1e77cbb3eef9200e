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

import mmap
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

__all__ = ["MAX_PAGE_OVERHEAD", "ReservedLayer", "page_overhead", "reserved_cache", "worth_reserving"]

#: On the CPU, the most a reserved cache may add to a capture's peak memory, as a share of what it keeps.
MAX_PAGE_OVERHEAD = 0.25


class ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys`` and ``values`` ``[batch, kv_head, position, head_dim]`` are views of
    buffers reserved for ``capacity`` positions, filled in place."""

    def __init__(self, capacity: int) -> None:
        super().__init__()
        self.capacity = capacity
        self._key_buf: torch.Tensor | None = None
        self._value_buf: torch.Tensor | None = None
        self._view: torch.Tensor | None = None  # the ``keys`` this layer last handed out

    def _filled(self) -> int | None:
        """How many positions of the buffers ``keys`` holds, or ``None`` when it is no longer a view of them."""
        buf, keys = self._key_buf, self.keys
        if keys is not None and keys is self._view:  # untouched since the last update (every decoding step)
            return int(keys.shape[-2])
        if buf is None or keys is None or keys.data_ptr() != buf.data_ptr() or keys.shape[:-2] != buf.shape[:-2] \
                or keys.stride() != buf.stride():
            return None
        return int(keys.shape[-2])  # cropped in place (a prompt cache kept for teacher-forced passes)

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
            self._view = None
            return super().update(key_states, value_states, *args, **kwargs)
        kbuf, vbuf = self._key_buf, self._value_buf
        assert kbuf is not None and vbuf is not None
        kbuf.narrow(-2, filled, new).copy_(key_states)
        vbuf.narrow(-2, filled, new).copy_(value_states)
        self.keys = self._view = kbuf.narrow(-2, 0, filled + new)
        self.values = vbuf.narrow(-2, 0, filled + new)
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


def page_overhead(model: Any, rows: int) -> int:
    """The most resident memory a reserved cache holds beyond a compact one (CPU, bytes).

    Each ``[position, head_dim]`` block of a row, KV head and layer, for keys and values, is filled a
    position at a time, and its last page is resident once touched: up to one page per block more
    than a cache that is exactly as long as what it holds (at batch 16, GPT-2 small: 18.9 MB).
    """
    cfg = model.config.get_text_config(decoder=True)
    heads = getattr(cfg, "num_key_value_heads", None) or cfg.num_attention_heads
    return rows * int(heads) * int(cfg.num_hidden_layers) * 2 * mmap.PAGESIZE


def worth_reserving(model: Any, device: torch.device, rows: int, kept_bytes: int) -> bool:
    """Whether to generate with a reserved cache: always off the CPU (the device allocates whole blocks
    either way); on the CPU when :func:`page_overhead` is at most :data:`MAX_PAGE_OVERHEAD` of the bytes
    the captures keep (a capture that keeps little, e.g. a few layers' generated rows, grows the cache
    by concatenation rather than hold more memory for it than it keeps)."""
    return device.type != "cpu" or page_overhead(model, rows) <= MAX_PAGE_OVERHEAD * kept_bytes
