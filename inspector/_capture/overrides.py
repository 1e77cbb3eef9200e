"""The typed keyword arguments of ``generate``: one per :class:`~inspector._capture.settings.GenerationSettings`
field, each optional, with the input types the settings accept (they are normalised and validated there).

``model.generate(prompt, max_new_tokens=20, layers="0-3")`` is checked by a type checker against this
list; ``tests/test_typed_api.py`` keeps its keys equal to the settings' fields.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping, Sequence
from dataclasses import fields, replace
from typing import TYPE_CHECKING, Any, TypedDict

from inspector._capture.settings import GenerationSettings

if TYPE_CHECKING:  # pragma: no cover
    import os

    import torch

    from inspector._records.capture import Capture


class SettingsOverrides(TypedDict, total=False):
    """Settings given as keyword arguments; each replaces the same field of ``settings=`` (or the default)."""

    max_new_tokens: int
    do_sample: bool
    temperature: float
    top_k: int | None
    top_p: float
    num_beams: int
    num_return_sequences: int
    repetition_penalty: float
    stop_strings: str | Sequence[str] | None
    seed: int | None
    top_k_logits: int
    keep_logits: bool
    keep_attention: bool
    attention_dtype: str | torch.dtype
    truncate_prompt: bool
    keep_hidden_states: bool
    hidden_dtype: str | torch.dtype
    keep_value_norms: bool
    lens_k: int
    layers: Sequence[int] | slice | str | None
    heads: Sequence[int] | slice | str | None
    attention_rows: str
    head_reduce: str
    memory_budget: int | str | None
    ablate: str | Sequence[str] | None
    ablate_mode: str
    patch: str | Sequence[str] | Sequence[tuple[int, int]] | None
    patch_from: Capture | str | os.PathLike[str] | None


def with_overrides(settings: GenerationSettings | None, overrides: Mapping[str, Any]) -> GenerationSettings:
    """``settings`` (default: :class:`GenerationSettings`'s defaults) with ``overrides`` replacing fields, validated.

    Raises:
        TypeError: a keyword that is not a setting (the message suggests the nearest one).
        ValueError: a setting out of its bounds (from :class:`GenerationSettings`).
    """
    base = settings if settings is not None else GenerationSettings()
    names = [f.name for f in fields(GenerationSettings)]
    for key in overrides:
        if key not in names:
            near = difflib.get_close_matches(key, names, n=1)
            hint = f"; did you mean {near[0]!r}?" if near else f"; the settings are: {', '.join(names)}"
            raise TypeError(f"generate() got an unknown setting {key!r}{hint}")
    return replace(base, **overrides) if overrides else base
