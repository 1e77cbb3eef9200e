"""Every place the package relies on transformers' internals, each behind one small named function or class.

What transformers does not promise (private attributes, module-level caches, the layout of its KV
cache, the output layer's call) is touched here and nowhere else; ``tests/test_compat.py`` checks each
assumption with its own test, so an upgrade that changes one fails there, by name, rather than as a
wrong number somewhere in a capture.

This module imports transformers when it is imported: modules that must stay light (``handle``,
``architectures``, ``model``, ``fallback``) import it inside the functions that need it, where a model
is already loaded.

Touches:
- :class:`ReservedLayer`: a ``DynamicLayer`` subclass relying on its ``keys`` / ``values`` /
  ``is_initialized`` fields and on ``update`` concatenating along the position dimension.
- :func:`supports_default_dynamic_cache`: ``model._supports_default_dynamic_cache()``.
- :func:`dynamic_cache_with_reserved_layers`: ``DynamicCache(config=...)`` building ``.layers`` of plain
  ``DynamicLayer``.
- :func:`croppable_dynamic_cache`: a ``DynamicCache`` of full-attention ``DynamicLayer`` (``is_sliding``).
- :func:`generated_cache`: ``generate``'s cache (``out.cache`` or ``out.past_key_values``, by version).
- :func:`stop_string_criteria`: pruning ``stopping_criteria.STOP_STRING_EMBEDDING_CACHE``.
- :func:`sampling_warpers`: the warper classes of ``transformers.generation.logits_process``.
- :func:`output_layer_input`: a forward pre-hook on ``get_output_embeddings()`` whose first
  positional argument is the hidden states ``[batch, position, d_model]``.
- :func:`attn_implementation` / :func:`mark_eager`: ``config._attn_implementation``.
- :func:`commit_hash` / :func:`name_or_path`: ``config._commit_hash`` / ``config._name_or_path``.
- :func:`declared_attention_output`: ``model._can_record_outputs["attentions"]``.
- :func:`attention_input`: an attention module's input, passed as ``hidden_states=`` or first.
- :func:`cache_kwarg`: the name ``forward`` takes the KV cache under (``cache``, ``past_key_values`` before).
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import torch
from transformers.cache_utils import DynamicCache, DynamicLayer

__all__ = [
    "DynamicLayer",
    "ReservedLayer",
    "attention_input",
    "attn_implementation",
    "cache_kwarg",
    "commit_hash",
    "croppable_dynamic_cache",
    "declared_attention_output",
    "dynamic_cache_with_reserved_layers",
    "generated_cache",
    "mark_eager",
    "name_or_path",
    "output_layer_input",
    "sampling_warpers",
    "stop_string_criteria",
    "supports_default_dynamic_cache",
]


class ReservedLayer(DynamicLayer):
    """A ``DynamicLayer`` whose ``keys`` and ``values`` ``[batch, kv_head, position, head_dim]`` become views of
    buffers reserved for ``capacity`` positions after the first update (the prefill), filled in place.

    See :mod:`inspector._capture.reserved_cache` for why and for the memory it keeps.
    """

    def __init__(self, capacity: int) -> None:
        # transformers leaves CacheLayerMixin.__init__ unannotated, and mypy names no callee through super()
        # for the untyped_calls_exclude setting to match
        super().__init__()  # type: ignore[no-untyped-call]
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

    def _reserve(self, new: int) -> None:
        """Moves the compact keys and values into buffers with room for ``capacity`` positions (or the filled
        ones and ``new`` more, if that is larger)."""
        keys, values = self.keys, self.values
        assert keys is not None and values is not None
        filled = int(keys.shape[-2])
        size = max(self.capacity, filled + new)
        # ordinary tensors even when generating under inference mode: a prompt cache kept after generation
        # is written in place again by teacher-forced passes, which run outside it
        with torch.inference_mode(False):
            self._key_buf = keys.new_empty((*keys.shape[:-2], size, keys.shape[-1]))
            self._value_buf = values.new_empty((*values.shape[:-2], size, values.shape[-1]))
        self._key_buf.narrow(-2, 0, filled).copy_(keys)
        self._value_buf.narrow(-2, 0, filled).copy_(values)
        self.keys = self._view = self._key_buf.narrow(-2, 0, filled)
        self.values = self._value_buf.narrow(-2, 0, filled)

    def update(self, key_states: torch.Tensor, value_states: torch.Tensor, *args: Any,
               **kwargs: Any) -> tuple[torch.Tensor, torch.Tensor]:
        """The prefill: kept compact. Later: written after the filled positions, views of everything filled."""
        if not self.is_initialized or self.keys is None or self.keys.numel() == 0:
            return super().update(key_states, value_states, *args, **kwargs)
        new = int(key_states.shape[-2])
        if self._key_buf is None:
            self._reserve(new)
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


def supports_default_dynamic_cache(model: Any) -> bool:
    """Whether ``generate`` would build a ``DynamicCache`` for ``model`` itself (its private predicate)."""
    return bool(getattr(model, "_supports_default_dynamic_cache", lambda: False)())


def dynamic_cache_with_reserved_layers(model: Any, capacity: int) -> Any | None:
    """A ``DynamicCache`` for ``model`` whose plain ``DynamicLayer`` layers are :class:`ReservedLayer` of
    ``capacity`` positions; ``None`` where the constructor differs or no layer is a plain ``DynamicLayer``."""
    try:
        cache = DynamicCache(config=model.config.get_text_config(decoder=True))
    except (TypeError, ValueError):  # pragma: no cover - a version whose constructor differs
        return None
    layers = getattr(cache, "layers", None)
    if not layers or not any(type(layer) is DynamicLayer for layer in layers):
        return None
    cache.layers = [ReservedLayer(capacity) if type(layer) is DynamicLayer else layer for layer in layers]
    return cache


def croppable_dynamic_cache(cache: Any) -> bool:
    """Whether ``cache`` is a ``DynamicCache`` of full-attention ``DynamicLayer`` (or :class:`ReservedLayer`):
    those crop by slicing (``crop``) and select rows by indexing (``batch_select_indices``)."""
    layers = getattr(cache, "layers", None)
    if type(cache) is not DynamicCache or not layers:
        return False
    return all(isinstance(layer, DynamicLayer) and not layer.is_sliding for layer in layers)


def generated_cache(out: Any) -> Any:
    """The KV cache a model call or ``generate`` returned (``out.cache`` or ``out.past_key_values``, by version)."""
    cache = getattr(out, "cache", None)
    return cache if cache is not None else getattr(out, "past_key_values", None)


def stop_string_criteria(tokenizer: Any, stop_strings: Sequence[str]) -> Any:
    """transformers' ``StopStringCriteria``, leaving at most this one table in its module-level cache.

    Building the criteria costs a table of about vocabulary x (strings x longest) entries, which
    transformers keeps in a cache of up to 9 entries; with changing stop strings that memory
    would stay long after the call. Keeping only the newest entry bounds it to one table while
    a repeated call with the same strings still finds it.
    """
    from transformers.generation import stopping_criteria as sc

    criteria = sc.StopStringCriteria(tokenizer, list(stop_strings))
    cache = getattr(sc, "STOP_STRING_EMBEDDING_CACHE", None)
    if cache is not None:
        for key in list(cache)[:-1]:  # an OrderedDict, most recently used last
            cache.pop(key, None)
    return criteria


def sampling_warpers(temperature: float, top_k: int | None, top_p: float) -> list[Any]:
    """Hugging Face's sampling warpers for these values, in ``generate``'s order (temperature, top-k, top-p).

    ``top_k`` of ``None`` or 0 and ``top_p`` of 1.0 are off; a temperature of 1.0 needs no warper.
    """
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    out: list[Any] = []
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k:
        out.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return out


@contextlib.contextmanager
def output_layer_input(model: Any, edit: Callable[[torch.Tensor], torch.Tensor]) -> Iterator[None]:
    """While open, the output layer (``model.get_output_embeddings()``) sees ``edit(hidden)`` in place of its
    input ``hidden`` ``[batch, position, d_model]`` (after ``logits_to_keep`` has cut it); nothing where the
    model has no output module."""
    head = model.get_output_embeddings()

    def hook(_module: Any, args: tuple[Any, ...]) -> tuple[Any, ...]:
        return (edit(args[0]), *args[1:])

    handle = head.register_forward_pre_hook(hook) if isinstance(head, torch.nn.Module) else None
    try:
        yield
    finally:
        if handle is not None:
            handle.remove()


def attn_implementation(config: Any, default: str | None = None) -> str | None:
    """The attention implementation a loaded model's ``config`` runs (its private ``_attn_implementation``)."""
    value = getattr(config, "_attn_implementation", default)
    return None if value is None else str(value)


def mark_eager(config: Any) -> None:
    """Asks for eager attention on a config a model is about to be built from (``_attn_implementation``)."""
    config._attn_implementation = "eager"


def commit_hash(config: Any) -> str | None:
    """The Hub commit a model was loaded from (``config._commit_hash``), ``None`` for local or built models."""
    value = getattr(config, "_commit_hash", None)
    return None if value is None else str(value)


def name_or_path(config: Any) -> str:
    """The name or folder ``from_pretrained`` was given (``config._name_or_path``), ``""`` when built in code."""
    return str(getattr(config, "_name_or_path", "") or "")


def declared_attention_output(model: Any) -> tuple[type[torch.nn.Module], int, str | None] | None:
    """``(module class, output index, name suffix)`` of the attention weights a model declares for
    ``output_attentions`` (its private ``_can_record_outputs["attentions"]``), or ``None``."""
    spec = (getattr(model, "_can_record_outputs", None) or {}).get("attentions")
    if spec is None:
        return None
    target = getattr(spec, "target_class", spec)
    if not (isinstance(target, type) and issubclass(target, torch.nn.Module)):
        return None
    layer_name = getattr(spec, "layer_name", None)
    return target, int(getattr(spec, "index", 1)), None if layer_name is None else str(layer_name)


def attention_input(args: tuple[Any, ...], kwargs: dict[str, Any]) -> torch.Tensor:
    """The hidden states ``[row, position, d_model]`` an attention module's ``forward`` was called with (its
    ``hidden_states`` keyword, else its first argument), from a ``with_kwargs`` forward pre-hook."""
    hidden: torch.Tensor = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
    return hidden


def cache_kwarg(model: torch.nn.Module) -> str:
    """The name of the model's ``forward`` argument that takes the KV cache (``cache`` or ``past_key_values``)."""
    params = inspect.signature(model.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


def no_hub_agent_registry_fetch() -> None:
    """Keep huggingface_hub from asking the Hub for its AI-agent registry when it first builds request headers.

    huggingface_hub (2.x) looks up ``/api/agent-harnesses`` on the Hub (a request of several seconds when the
    Hub does not answer) the first time it sends anything, even for a cache lookup with
    ``local_files_only=True``; the registry only names agents in the user-agent string. This sets its
    in-process registry (``huggingface_hub.utils._detect_agent._registry``) to the cached copy, or to the
    library's empty registry, so a model load asks the Hub nothing but its one bounded question. Does nothing
    where the library has no such registry, or has loaded it already.
    """
    try:
        from huggingface_hub import constants
        from huggingface_hub.utils import _detect_agent
    except ImportError:  # pragma: no cover - an older huggingface_hub: no registry to fetch
        return
    if getattr(_detect_agent, "_registry", "") is not None:
        return
    cached = _detect_agent._read_cached_registry(constants.AGENT_HARNESSES_PATH, max_age=None)
    _detect_agent._registry = cached or _detect_agent._EMPTY_REGISTRY


@contextlib.contextmanager
def no_weight_loading_bar() -> Iterator[None]:
    """transformers' "Loading weights" bar off while a model loads (put back as it was afterwards).

    The bar (``tqdm.auto``) flashes ``0/272`` on the command line for a load of a fraction of a second, and
    in a notebook without ipywidgets opens the cell with ``TqdmWarning: IProgress not found``.
    """
    from transformers.utils import logging as hf_logging

    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()
