"""Display strings of token ids, as ``tokenizer.decode([id])`` gives them, for a capture's labels."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

__all__ = ["token_labels", "token_strings"]


def token_strings(tokenizer: Any, ids: Sequence[int]) -> list[str]:
    """Display string of each token id (``tokenizer.decode([id])``, spaces kept as they are)."""
    return [str(tokenizer.decode([i], clean_up_tokenization_spaces=False)) for i in ids]


def token_labels(tokenizer: Any, ids: Iterable[int], known: dict[int, str] | None = None) -> dict[int, str]:
    """``{id: display string}`` for ``ids`` in increasing order; ``known`` (updated) saves decoding an id twice
    (the captures of one batch share it)."""
    known = {} if known is None else known
    wanted = sorted(set(ids))
    missing = [i for i in wanted if i not in known]
    known.update(zip(missing, token_strings(tokenizer, missing), strict=True))
    return {i: known[i] for i in wanted}
