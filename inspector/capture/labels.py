"""Display strings of token ids, as ``tokenizer.decode([id])`` gives them, for a capture's labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["token_labels", "token_strings"]


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Display string of each token id (``tokenizer.decode([id])``, spaces kept as they are).

    A tokenizer backed by the ``tokenizers`` library whose ``_decode`` is the stock one decodes the ids in
    one call of the backend (what ``decode`` does per id, without a Python round per token: 3x faster);
    any other tokenizer is asked id by id.
    """
    backend: Any = getattr(tokenizer, "_tokenizer", None)
    if ids and _stock_decode(tokenizer) and hasattr(backend, "decode_batch"):
        return list(backend.decode_batch([[int(i)] for i in ids], skip_special_tokens=False))
    return [str(tokenizer.decode([i], clean_up_tokenization_spaces=False)) for i in ids]


def _stock_decode(tokenizer: Any) -> bool:
    """Whether ``tokenizer.decode`` is transformers' ``TokenizersBackend`` one, which hands ids to its backend."""
    try:
        from transformers.tokenization_utils_base import PreTrainedTokenizerBase
        from transformers.tokenization_utils_tokenizers import TokenizersBackend
    except ImportError:  # pragma: no cover - another transformers layout
        return False
    cls = type(tokenizer)
    return (isinstance(tokenizer, TokenizersBackend) and cls._decode is TokenizersBackend._decode
            and cls.decode is PreTrainedTokenizerBase.decode)


def token_labels(tokenizer: Any, ids: Iterable[int], known: dict[int, str] | None = None) -> dict[int, str]:
    """``{id: display string}`` for ``ids`` in increasing order; ``known`` (updated) saves decoding an id twice."""
    known = {} if known is None else known
    wanted = sorted(set(ids))
    missing = [i for i in wanted if i not in known]
    known.update(zip(missing, token_strings(tokenizer, missing), strict=True))
    return {i: known[i] for i in wanted}
