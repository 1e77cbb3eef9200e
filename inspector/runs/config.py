"""What a corpus run does: :class:`RunConfig` (data, selection, prompts, batching, attention kept, generation)."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from inspector._capture.settings import GenerationSettings
from inspector.data.prompts import DEFAULT_CONTEXT_TURNS, DEFAULT_TEMPLATE, check_template


class RunError(ValueError):
    """A run cannot start, resume or be read; the message says why."""


class RunMismatchError(RunError):
    """The run folder was started with a different command."""


#: What a kept capture holds: ``"full"`` (``[layer, head, seq, seq]`` float16; 3.1 MB for a
#: 64+40-token GPT-2 small turn), ``"summary"`` (the default: the mean over heads, stored as
#: ``[layer, 1, seq, seq]`` with ``meta.extra["attention"] == "summary"``; 0.26 MB for such a
#: turn) or ``"none"`` (no attention weights, and NaN attention columns). The summary's
#: attention columns are always computed from the full weights before reduction.
ATTENTION_MODES: tuple[str, ...] = ("full", "summary", "none")
#: What a run states before each reply (``--condition``): the reference reply's emotion or act
#: (``response_emotion`` / ``response_act``), or nothing.
CONDITIONS: dict[str, str | None] = {"none": None, "emotion": "response_emotion", "act": "response_act"}


@dataclass(frozen=True)
class RunConfig:
    """What a corpus run does (everything but the model).

    Attributes:
        split: DailyDialog split.
        data: DailyDialog source for :func:`~inspector.data.dailydialog.load_dailydialog`
            (folder, table file, ``"hub"``; ``None``: ``INSPECTOR_DAILYDIALOG_DIR`` or the Hub).
        filters: keyword arguments of :func:`~inspector.data.dailydialog.filter_turns`.
        limit: keep the first ``limit`` selected turns (in ``(dial_id, turn)`` order).
        batch_size: prompts generated together.
        context_turns: ``k``, dialogue turns shown in each prompt.
        template: prompt style: ``"auto"`` (default: the tokenizer's chat template where it has one,
            else ``"notebook"``), ``"chat"``, a line template name or a line format (see
            :mod:`inspector.data.prompts`); the resolved style is part of the command identity.
        max_prompt_tokens: prompt token budget (default: context length minus ``max_new_tokens``).
        attention: ``"full"``, ``"summary"`` or ``"none"`` (see :data:`ATTENTION_MODES`).
        keep_captures: write one capture file per turn.
        settings: generation settings; with sampling and no seed, seed 0 is used, and batch
            ``b`` is generated with seed ``seed + b`` (reproducible, so resumable).
        score_reference: also score each turn's reference reply by teacher forcing (the
            ``ref_*`` difficulty columns; one extra forward pass per batch). Off by default.
        condition: ``"none"`` (default), ``"emotion"`` or ``"act"`` (see :data:`CONDITIONS`):
            state the reference reply's label in the cue of the generation prompt, and add the
            condition columns. Implies ``score_reference``.
        condition_style: how the label is written: ``"paren"`` (``Agent (happiness):``) or
            ``"bracket"`` (``Agent [inform]:``).
    """

    split: str = "validation"
    data: str | None = None
    filters: Mapping[str, Any] = field(default_factory=dict)
    limit: int | None = None
    batch_size: int = 16
    context_turns: int = DEFAULT_CONTEXT_TURNS
    template: str = DEFAULT_TEMPLATE
    max_prompt_tokens: int | None = None
    attention: str = "summary"
    keep_captures: bool = True
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    score_reference: bool = False
    condition: str = "none"
    condition_style: str = "paren"

    def __post_init__(self) -> None:
        from inspector.research.condition import CONDITION_STYLES

        if self.condition not in CONDITIONS:
            raise ValueError(f"condition must be one of {list(CONDITIONS)}, got {self.condition!r}")
        if self.condition_style not in CONDITION_STYLES:
            raise ValueError(f"condition_style must be one of {sorted(CONDITION_STYLES)}, got {self.condition_style!r}")
        if self.condition != "none" and not self.score_reference:
            object.__setattr__(self, "score_reference", True)  # the condition columns come from the forced passes
        if self.attention not in ATTENTION_MODES:
            raise ValueError(f"attention must be one of {list(ATTENTION_MODES)}, got {self.attention!r}")
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValueError(f"batch_size must be an integer >= 1, got {self.batch_size!r}")
        if self.limit is not None and (not isinstance(self.limit, int) or self.limit < 1):
            raise ValueError(f"limit must be a positive integer, got {self.limit!r}")
        if not isinstance(self.context_turns, int) or self.context_turns < 1:
            raise ValueError(f"context_turns must be an integer >= 1, got {self.context_turns!r}")
        if self.max_prompt_tokens is not None and self.max_prompt_tokens < 1:
            raise ValueError(f"max_prompt_tokens must be >= 1, got {self.max_prompt_tokens}")
        if self.settings.num_return_sequences != 1:
            raise ValueError("corpus runs keep one sequence per turn; use num_return_sequences=1")
        check_template(self.template)
        if self.settings.patch:
            raise ValueError("corpus runs do not patch: patching takes one source prompt's states into prompts of "
                             "the same length; use generate(..., patch=, patch_from=) or inspector capture --patch")
        if self.settings.ablate and self.score_reference:
            raise ValueError("the reference scoring of a corpus run does not ablate; drop score_reference (and "
                             "condition) or ablate")
        s = self.settings
        wanted: dict[str, Any] = {"keep_attention": self.attention != "none", "truncate_prompt": False}
        if s.do_sample and s.seed is None:
            wanted["seed"] = 0
        if any(getattr(s, k) != v for k, v in wanted.items()):
            object.__setattr__(self, "settings", dataclasses.replace(s, **wanted))

    def to_dict(self) -> dict[str, Any]:
        """The config as JSON values (what a background run's child is started from); :meth:`from_dict`
        reads it back."""
        out = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in ("filters", "settings")}
        out["filters"] = {k: (sorted(v) if isinstance(v, (set, frozenset)) else list(v) if isinstance(v, tuple) else v)
                          for k, v in self.filters.items()}
        out["settings"] = self.settings.to_dict()
        return out

    @classmethod
    def from_dict(cls, doc: Mapping[str, Any]) -> RunConfig:
        """The config :meth:`to_dict` wrote.

        Raises:
            ValueError: an unknown entry or a value out of bounds (the message names it).
        """
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(doc) - names)
        if unknown:
            raise ValueError(f"unknown run setting(s) {unknown}; known: {sorted(names)}")
        kw = dict(doc)
        kw["filters"] = dict(kw.get("filters") or {})
        kw["settings"] = GenerationSettings.from_dict(dict(kw.get("settings") or {}))
        return cls(**kw)

    @property
    def research(self) -> dict[str, Any] | None:
        """The research options for the command identity, or ``None`` when off (older run folders have none)."""
        if not self.score_reference:
            return None
        return {"score_reference": True, "condition": self.condition,
                "condition_style": self.condition_style if self.condition != "none" else None}

    def batch_settings(self, batch: int) -> GenerationSettings:
        """Settings of batch ``batch`` (sampling seeds differ per batch, reproducibly)."""
        if self.settings.do_sample:
            return dataclasses.replace(self.settings, seed=int(self.settings.seed or 0) + batch)
        return self.settings
