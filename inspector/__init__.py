"""inspector: see what GPT-2 does inside while it generates.

Public API::

    im = inspector.load_model("gpt2")                  # eager attention, device="auto"
    cap = im.generate("User: hi\\nAgent:", max_new_tokens=20)
    cap.attentions        # [layer, head, query, key]
    cap.step(0).top       # what the model almost chose
    cap.save("hi.safetensors"); inspector.load_capture("hi.safetensors")

Nothing runs at import time; heavy libraries load on first use.
"""

from inspector.aggregate import (
    AGGREGATE_MODES,
    REDUCERS,
    aggregate_attention,
    aggregate_by_mode,
    attention_entropy,
    attention_from,
    stacked_mean,
)
from inspector.fallback import LoadResult, builtin_model, load_with_fallback
from inspector.capture import GenerationSettings, NonFiniteError, find_attention_modules, generate
from inspector.model import (
    InspectorModel,
    ModelLoadError,
    available_devices,
    load_model,
    resolve_device,
)
from inspector.data.dailydialog import load_dailydialog
from inspector.runs import RunConfig, load_run, run_corpus
from inspector.records import Candidate, Capture, CaptureError, CaptureMeta, StepRecord, TokenScores
from inspector.store import CaptureFileError, load_capture, save_capture

__version__ = "0.1.0"

__all__ = [
    "AGGREGATE_MODES",
    "REDUCERS",
    "Candidate",
    "Capture",
    "CaptureError",
    "CaptureFileError",
    "CaptureMeta",
    "GenerationSettings",
    "InspectorModel",
    "RunConfig",
    "LoadResult",
    "ModelLoadError",
    "NonFiniteError",
    "StepRecord",
    "TokenScores",
    "aggregate_attention",
    "aggregate_by_mode",
    "attention_entropy",
    "attention_from",
    "available_devices",
    "builtin_model",
    "find_attention_modules",
    "generate",
    "load_capture",
    "load_dailydialog",
    "load_model",
    "load_run",
    "load_with_fallback",
    "resolve_device",
    "run_corpus",
    "save_capture",
    "stacked_mean",
]
