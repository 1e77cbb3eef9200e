"""inspector: see what GPT-2 does inside while it generates.

Public API::

    im = inspector.load_model("gpt2")                  # eager attention, device="auto"
    cap = im.generate("User: hi\\nAgent:", max_new_tokens=20)
    cap.attentions        # [layer, head, query, key]
    cap.step(0).top       # what the model almost chose
    cap.save("hi.safetensors"); inspector.load_capture("hi.safetensors")

Nothing runs at import time: ``import inspector`` loads no heavy library; each public
name is imported from the module that defines it on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inspector._lazy import lazy_namespace

__version__ = "0.1.0"

#: Public name -> the module that defines it. The one list of the public surface.
_EXPORTS: dict[str, str] = {
    "AGGREGATE_MODES": "inspector.aggregate",
    "REDUCERS": "inspector.aggregate",
    "aggregate_attention": "inspector.aggregate",
    "aggregate_by_mode": "inspector.aggregate",
    "attention_entropy": "inspector.aggregate",
    "attention_from": "inspector.aggregate",
    "stacked_mean": "inspector.aggregate",
    "LoadResult": "inspector.fallback",
    "builtin_model": "inspector.fallback",
    "load_with_fallback": "inspector.fallback",
    "GenerationSettings": "inspector.capture",
    "NonFiniteError": "inspector.capture",
    "find_attention_modules": "inspector.capture",
    "generate": "inspector.capture",
    "AttentionLayout": "inspector.attention_layout",
    "MemoryBudgetError": "inspector.capture.budget",
    "estimate_capture": "inspector.capture.budget",
    "InspectorModel": "inspector.model",
    "ModelLoadError": "inspector.model",
    "available_devices": "inspector.model",
    "load_model": "inspector.model",
    "resolve_device": "inspector.model",
    "load_dailydialog": "inspector.data.dailydialog",
    "RunConfig": "inspector.runs",
    "load_run": "inspector.runs",
    "run_corpus": "inspector.runs",
    "start_run": "inspector.runs.background",
    "run_status": "inspector.runs.status",
    "Candidate": "inspector.records",
    "Capture": "inspector.records",
    "CaptureError": "inspector.records",
    "CaptureMeta": "inspector.records",
    "StepRecord": "inspector.records",
    "TokenScores": "inspector.records",
    "score": "inspector.capture.forced",
    "score_tokens": "inspector.capture.forced",
    "is_forced": "inspector.capture.forced",
    "UnsupportedModelError": "inspector.architectures",
    "check_supported": "inspector.architectures",
    "logit_lens": "inspector.analysis.lens",
    "capture_lens": "inspector.analysis.lens",
    "stored_lens": "inspector.analysis.lens",
    "LensResult": "inspector.analysis.lens",
    "model_value_norms": "inspector.analysis.value_norms",
    "norm_weighted_attention": "inspector.value_math",
    "attention_rollout": "inspector.analysis.rollout",
    "HeadStats": "inspector.analysis.head_stats",
    "attention_head_stats": "inspector.analysis.head_stats",
    "aggregate_head_stats": "inspector.analysis.head_stats",
    "CaptureComparison": "inspector.analysis.compare",
    "CompareError": "inspector.analysis.compare",
    "compare_captures": "inspector.analysis.compare",
    "compare_beams": "inspector.analysis.compare",
    "order_turns": "inspector.research.curriculum",
    "compare_runs": "inspector.research.compare_runs",
    "CaptureFileError": "inspector.store",
    "load_capture": "inspector.store",
    "save_capture": "inspector.store",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from inspector.aggregate import (
        AGGREGATE_MODES as AGGREGATE_MODES,
        REDUCERS as REDUCERS,
        aggregate_attention as aggregate_attention,
        aggregate_by_mode as aggregate_by_mode,
        attention_entropy as attention_entropy,
        attention_from as attention_from,
        stacked_mean as stacked_mean,
    )
    from inspector.analysis.compare import (
        CaptureComparison as CaptureComparison,
        CompareError as CompareError,
        compare_beams as compare_beams,
        compare_captures as compare_captures,
    )
    from inspector.analysis.head_stats import (
        HeadStats as HeadStats,
        aggregate_head_stats as aggregate_head_stats,
        attention_head_stats as attention_head_stats,
    )
    from inspector.analysis.lens import (
        LensResult as LensResult,
        capture_lens as capture_lens,
        logit_lens as logit_lens,
        stored_lens as stored_lens,
    )
    from inspector.analysis.rollout import (
        attention_rollout as attention_rollout,
    )
    from inspector.analysis.value_norms import (
        model_value_norms as model_value_norms,
    )
    from inspector.architectures import (
        UnsupportedModelError as UnsupportedModelError,
        check_supported as check_supported,
    )
    from inspector.attention_layout import (
        AttentionLayout as AttentionLayout,
    )
    from inspector.capture import (
        GenerationSettings as GenerationSettings,
        NonFiniteError as NonFiniteError,
        find_attention_modules as find_attention_modules,
        generate as generate,
    )
    from inspector.capture.budget import (
        MemoryBudgetError as MemoryBudgetError,
        estimate_capture as estimate_capture,
    )
    from inspector.capture.forced import (
        is_forced as is_forced,
        score as score,
        score_tokens as score_tokens,
    )
    from inspector.data.dailydialog import (
        load_dailydialog as load_dailydialog,
    )
    from inspector.fallback import (
        LoadResult as LoadResult,
        builtin_model as builtin_model,
        load_with_fallback as load_with_fallback,
    )
    from inspector.model import (
        InspectorModel as InspectorModel,
        ModelLoadError as ModelLoadError,
        available_devices as available_devices,
        load_model as load_model,
        resolve_device as resolve_device,
    )
    from inspector.records import (
        Candidate as Candidate,
        Capture as Capture,
        CaptureError as CaptureError,
        CaptureMeta as CaptureMeta,
        StepRecord as StepRecord,
        TokenScores as TokenScores,
    )
    from inspector.research.compare_runs import (
        compare_runs as compare_runs,
    )
    from inspector.research.curriculum import (
        order_turns as order_turns,
    )
    from inspector.runs import (
        RunConfig as RunConfig,
        load_run as load_run,
        run_corpus as run_corpus,
    )
    from inspector.runs.background import (
        start_run as start_run,
    )
    from inspector.runs.status import (
        run_status as run_status,
    )
    from inspector.store import (
        CaptureFileError as CaptureFileError,
        load_capture as load_capture,
        save_capture as save_capture,
    )
    from inspector.value_math import (
        norm_weighted_attention as norm_weighted_attention,
    )
