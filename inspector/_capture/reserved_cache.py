"""A KV cache whose full-attention layers reserve room for the whole generation and write each step in place.

transformers' ``DynamicLayer`` grows by ``torch.cat``: every decoding step copies the whole cache
of every layer once more. At batch 16 with GPT-2 small on a CPU that copying was about 14% of
``generate``'s time. The capture knows the final length before it starts (prompt + new tokens + the
extra step for the last token's attention row), so :class:`ReservedLayer` allocates its keys and
values once and hands the model views of the filled part: the same numbers, bit for bit, without the
copies. Anything that replaces the tensors (selecting or reordering rows) simply continues as a
``DynamicLayer`` would, by concatenation.

Memory: each ``[position, head_dim]`` block of a row, KV head and layer is filled a position at a
time, and on the CPU its last, partly filled page is resident: up to one page per block more than a
compact cache (18.9 MB at batch 16 for GPT-2 small). Reserving the room during the prefill put that
on top of the prefill's own large temporaries, the peak of a small capture (a selective capture at
batch 16 peaked 6.5 MB higher, 0.7x what it keeps). So the prefill's keys and values are kept as they
come, compact, and each layer moves them into its reserved room at its next update, one layer at a
time; from then on the partly filled pages never add up to more than the full cache at the end.
"""

from __future__ import annotations

from typing import Any

from inspector._compat import ReservedLayer, dynamic_cache_with_reserved_layers, supports_default_dynamic_cache

__all__ = ["ReservedLayer", "reserved_cache"]


def reserved_cache(model: Any, capacity: int, generation_config: Any = None) -> Any | None:
    """A ``DynamicCache`` for ``model`` whose full-attention layers are :class:`ReservedLayer` of ``capacity``.

    ``None`` where ``generate`` would not build a ``DynamicCache`` itself (models with their own
    cache, a ``cache_implementation`` in the model's generation config, or another than ``"dynamic"``
    in ``generation_config``) or no layer can be reserved (sliding windows only). A
    ``generation_config`` passed with the cache must leave ``cache_implementation`` unset:
    ``generate`` refuses both.
    """
    if not supports_default_dynamic_cache(model):
        return None
    # generate refuses a cache together with a cache_implementation, and fills an unset one from the model's
    if getattr(getattr(model, "generation_config", None), "cache_implementation", None) is not None:
        return None
    if getattr(generation_config, "cache_implementation", None) not in (None, "dynamic"):
        return None
    return dynamic_cache_with_reserved_layers(model, capacity)
