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
    "norm_weighted_attention": "inspector.analysis.value_norms",
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
        AGGREGATE_MODES,
        REDUCERS,
        aggregate_attention,
        aggregate_by_mode,
        attention_entropy,
        attention_from,
        stacked_mean,
    )
    from inspector.analysis.compare import CaptureComparison, CompareError, compare_beams, compare_captures
    from inspector.analysis.head_stats import HeadStats, aggregate_head_stats, attention_head_stats
    from inspector.analysis.lens import LensResult, capture_lens, logit_lens, stored_lens
    from inspector.analysis.rollout import attention_rollout
    from inspector.analysis.value_norms import model_value_norms, norm_weighted_attention
    from inspector.architectures import UnsupportedModelError, check_supported
    from inspector.attention_layout import AttentionLayout
    from inspector.capture import GenerationSettings, NonFiniteError, find_attention_modules, generate
    from inspector.capture.budget import MemoryBudgetError, estimate_capture
    from inspector.capture.forced import is_forced, score, score_tokens
    from inspector.data.dailydialog import load_dailydialog
    from inspector.fallback import LoadResult, builtin_model, load_with_fallback
    from inspector.model import InspectorModel, ModelLoadError, available_devices, load_model, resolve_device
    from inspector.records import Candidate, Capture, CaptureError, CaptureMeta, StepRecord, TokenScores
    from inspector.research.compare_runs import compare_runs
    from inspector.research.curriculum import order_turns
    from inspector.runs import RunConfig, load_run, run_corpus
    from inspector.runs.background import start_run
    from inspector.runs.status import run_status
    from inspector.store import CaptureFileError, load_capture, save_capture
