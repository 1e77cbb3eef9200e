"""Display strings of token ids, as ``tokenizer.decode([id])`` gives them, for a capture's labels."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

__all__ = ["token_labels"]


def token_labels(tokenizer: Any, ids: Iterable[int], known: dict[int, str] | None = None) -> dict[int, str]:
    """``{id: tokenizer.decode([id])}`` (spaces kept as they are) for ``ids`` in increasing order; ``known``
    (updated) saves decoding an id twice (the captures of one batch share it)."""
    known = {} if known is None else known
    wanted = sorted(set(ids))
    for i in wanted:
        if i not in known:
            known[i] = str(tokenizer.decode([i], clean_up_tokenization_spaces=False))
    return {i: known[i] for i in wanted}
