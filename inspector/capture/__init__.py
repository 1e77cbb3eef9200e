"""Generation with capture: per-step token scores and per-layer/head attention from one cached ``generate``.

The flow, one module each:

* :mod:`~inspector.capture.settings` - :class:`GenerationSettings`, their bounds, help and CLI flags;
* :mod:`~inspector.capture.selection` - ``layers=``/``heads=`` and ``memory_budget`` parsed and resolved;
* :mod:`~inspector.capture.budget` - a capture's size estimated before generation, and the memory budget;
* :mod:`~inspector.capture.decoding` - settings -> ``GenerationConfig`` and sampling warpers;
* :mod:`~inspector.capture.encode` - prompts checked, tokenized, left-padded; the context budget;
* :mod:`~inspector.capture.modules` - the model's attention modules (:mod:`inspector.architectures`) and cache
  argument;
* :mod:`~inspector.capture.recorder` - hooks, processor, stopping criterion, per-step statistics;
* :mod:`~inspector.capture.steps` - the per-step log and its stacked ``[row, step, ...]`` record;
* :mod:`~inspector.capture.beams` - beam search: gathering through ``beam_indices``;
* :mod:`~inspector.capture.checks` - NaN/inf checks and :class:`NonFiniteError`;
* :mod:`~inspector.capture.assemble` - stacked steps -> :class:`~inspector.records.Capture` objects;
* :mod:`~inspector.capture.engine` - :func:`generate`: one ``generate`` call and the extra cached step;
* :mod:`~inspector.capture.forced` - :func:`score`: a given continuation teacher-forced in one pass.

The names below are importable from ``inspector.capture`` as before; each is loaded from its
module on first use (PEP 562), so importing the settings alone does not import torch.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inspector._lazy import lazy_namespace

_EXPORTS: dict[str, str] = {
    "ATTENTION_DTYPES": "inspector.capture.settings",
    "GenerationSettings": "inspector.capture.settings",
    "MAX_STOP_STRINGS": "inspector.capture.settings",
    "MAX_STOP_STRING_CHARS": "inspector.capture.settings",
    "MAX_STOP_STRING_PRODUCT": "inspector.capture.settings",
    "PromptBatch": "inspector.capture.encode",
    "PromptBudget": "inspector.capture.encode",
    "check_prompts": "inspector.capture.encode",
    "encode_prompts": "inspector.capture.encode",
    "prompt_budget": "inspector.capture.encode",
    "find_attention_modules": "inspector.architectures",
    "NonFiniteError": "inspector.capture.checks",
    "AttentionLayout": "inspector.attention_layout",
    "CaptureEstimate": "inspector.capture.budget",
    "MemoryBudgetError": "inspector.capture.budget",
    "ModelSizes": "inspector.capture.budget",
    "estimate_capture": "inspector.capture.budget",
    "StackedSteps": "inspector.capture.steps",
    "generate": "inspector.capture.engine",
    "is_forced": "inspector.capture.forced",
    "score": "inspector.capture.forced",
    "score_tokens": "inspector.capture.forced",
}

__all__ = [
    "ATTENTION_DTYPES",
    "AttentionLayout",
    "CaptureEstimate",
    "MemoryBudgetError",
    "ModelSizes",
    "estimate_capture",
    "MAX_STOP_STRINGS",
    "MAX_STOP_STRING_CHARS",
    "MAX_STOP_STRING_PRODUCT",
    "GenerationSettings",
    "NonFiniteError",
    "PromptBatch",
    "PromptBudget",
    "StackedSteps",
    "check_prompts",
    "encode_prompts",
    "find_attention_modules",
    "generate",
    "is_forced",
    "prompt_budget",
    "score",
    "score_tokens",
]


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from inspector.architectures import (
        find_attention_modules as find_attention_modules,
    )
    from inspector.attention_layout import (
        AttentionLayout as AttentionLayout,
    )
    from inspector.capture.budget import (
        CaptureEstimate as CaptureEstimate,
        MemoryBudgetError as MemoryBudgetError,
        ModelSizes as ModelSizes,
        estimate_capture as estimate_capture,
    )
    from inspector.capture.checks import (
        NonFiniteError as NonFiniteError,
    )
    from inspector.capture.encode import (
        PromptBatch as PromptBatch,
        PromptBudget as PromptBudget,
        check_prompts as check_prompts,
        encode_prompts as encode_prompts,
        prompt_budget as prompt_budget,
    )
    from inspector.capture.engine import (
        generate as generate,
    )
    from inspector.capture.forced import (
        is_forced as is_forced,
        score as score,
        score_tokens as score_tokens,
    )
    from inspector.capture.settings import (
        ATTENTION_DTYPES as ATTENTION_DTYPES,
        MAX_STOP_STRING_CHARS as MAX_STOP_STRING_CHARS,
        MAX_STOP_STRING_PRODUCT as MAX_STOP_STRING_PRODUCT,
        MAX_STOP_STRINGS as MAX_STOP_STRINGS,
        GenerationSettings as GenerationSettings,
    )
    from inspector.capture.steps import (
        StackedSteps as StackedSteps,
    )
