"""What a capture's attention holds: which layers and heads, per head or their mean, every row or generated rows.

A full capture keeps ``[layer, head, query, key]`` for every layer, head and position. A
selective capture (``GenerationSettings(layers=..., heads=..., attention_rows=..., head_reduce=...)``)
keeps less, and its :class:`AttentionLayout` says what each axis means:

* ``layers``: the model's layer ids along the layer axis (``None``: every layer, in order);
* ``heads``: the model's head ids along the head axis, or averaged into it (``None``: every head);
* ``head_reduce``: ``"none"`` (one entry per kept head) or ``"mean"`` (the head axis has size 1 and
  holds the mean over the kept heads, as ``inspector run --attention summary`` stores);
* ``rows``: ``"all"`` (``Capture.attentions``, query = every position) or ``"generated"``
  (``Capture.step_attentions`` ``[layer, head, step, key]``: only the rows of generated tokens,
  without the prompt's ``P x P`` block).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

#: Which attention rows a capture keeps.
ATTENTION_ROWS = ("all", "generated")
#: How the kept heads are stored.
HEAD_REDUCE = ("none", "mean")


def _ids(value: Any, what: str) -> tuple[int, ...] | None:
    if value is None:
        return None
    if not isinstance(value, (list, tuple)) or not value:
        raise ValueError(f"attention layout {what} must be a non-empty list of ids or None, got {value!r}")
    if any(isinstance(i, bool) or not isinstance(i, int) or i < 0 for i in value):
        raise ValueError(f"attention layout {what} must be non-negative integers, got {list(value)!r}")
    ids = tuple(value)
    if list(ids) != sorted(set(ids)):
        raise ValueError(f"attention layout {what} must be sorted and distinct, got {list(ids)!r}")
    return ids


@dataclass(frozen=True)
class AttentionLayout:
    """What the attention tensor of a capture holds (see the module docstring); the default is a full capture."""

    layers: tuple[int, ...] | None = None
    heads: tuple[int, ...] | None = None
    rows: str = "all"
    head_reduce: str = "none"

    def __post_init__(self) -> None:
        object.__setattr__(self, "layers", _ids(self.layers, "layers"))
        object.__setattr__(self, "heads", _ids(self.heads, "heads"))
        if self.rows not in ATTENTION_ROWS:
            raise ValueError(f"attention rows must be one of {ATTENTION_ROWS}, got {self.rows!r}")
        if self.head_reduce not in HEAD_REDUCE:
            raise ValueError(f"head_reduce must be one of {HEAD_REDUCE}, got {self.head_reduce!r}")

    @property
    def is_full(self) -> bool:
        """Every layer, every head kept separately, every row: today's ``[layer, head, query, key]``."""
        return self.layers is None and self.heads is None and self.rows == "all" and self.head_reduce == "none"

    @property
    def all_layers_and_heads(self) -> bool:
        return self.layers is None and self.heads is None

    @property
    def whole_grid(self) -> bool:
        """Every layer and every row, each head kept or all of them averaged: what the attention views draw."""
        return self.all_layers_and_heads and self.rows == "all"

    def head_axis(self, num_heads: int) -> int:
        """Size of the head axis for ``num_heads`` heads in the model."""
        if self.head_reduce == "mean":
            return 1
        return num_heads if self.heads is None else len(self.heads)

    def describe(self) -> str:
        """One line for errors and reports, e.g. ``"layers 0, 3; heads 0-3 averaged; generated rows only"``."""
        parts = [f"layers {format_ids(self.layers)}" if self.layers is not None else "all layers",
                 f"heads {format_ids(self.heads)}" if self.heads is not None else "all heads"]
        if self.head_reduce == "mean":
            parts[-1] += " averaged"
        parts.append("generated rows only" if self.rows == "generated" else "every row")
        return "; ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {"layers": None if self.layers is None else list(self.layers),
                "heads": None if self.heads is None else list(self.heads),
                "rows": self.rows, "head_reduce": self.head_reduce}

    @classmethod
    def from_dict(cls, data: Any) -> AttentionLayout:
        """The layout of a stored document (``ValueError`` when it is not one)."""
        if not isinstance(data, dict) or set(data) - {"layers", "heads", "rows", "head_reduce"}:
            raise ValueError(f"'attention_layout' must be an object with layers, heads, rows, head_reduce; "
                             f"got {data!r}")
        return cls(**data)


def format_ids(ids: tuple[int, ...] | list[int]) -> str:
    """``(0, 1, 2, 5)`` -> ``"0-2,5"`` (the ``--layers``/``--heads`` syntax)."""
    out: list[str] = []
    i = 0
    ids = list(ids)
    while i < len(ids):
        j = i
        while j + 1 < len(ids) and ids[j + 1] == ids[j] + 1:
            j += 1
        out.append(str(ids[i]) if j == i else f"{ids[i]}-{ids[j]}")
        i = j + 1
    return ",".join(out)
