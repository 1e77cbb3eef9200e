"""inspector: see what GPT-2 does inside while it generates.

Public API::

    model = inspector.load_model("gpt2")               # eager attention, device="auto"
    cap = model.generate("User: hi\\nAgent:", max_new_tokens=20)
    cap.attentions        # [layer, head, query, key]
    cap.step(0).top       # what the model almost chose
    cap.save("hi.safetensors"); inspector.load_capture("hi.safetensors")

The root holds loading, the capture and its records, settings, files, text reports, DailyDialog, corpus
runs and the errors; the analysis, figures, runs and research are reached as ``inspector.analysis``,
``inspector.plots``, ``inspector.runs`` and ``inspector.research``.

Nothing runs at import time: ``import inspector`` loads no heavy library; each public
name is imported from the module that defines it on first use (PEP 562).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inspector._lazy import lazy_namespace

__version__ = "0.1.0"

#: Public name -> the module that defines it. The one list of the public surface.
_EXPORTS: dict[str, str] = {
    "InspectorModel": "inspector._model",
    "ModelLoadError": "inspector._model",
    "load_model": "inspector._model",
    "load_with_fallback": "inspector._fallback",
    "UnsupportedModelError": "inspector._architectures",
    "GenerationSettings": "inspector._capture.settings",
    "NonFiniteError": "inspector._capture.checks",
    "MemoryBudgetError": "inspector._capture.budget",
    "Candidate": "inspector._records.capture",
    "Capture": "inspector._records.capture",
    "CaptureError": "inspector._records.capture",
    "CaptureMeta": "inspector._records.capture",
    "StepRecord": "inspector._records.capture",
    "TokenScores": "inspector._records.capture",
    "CaptureFileError": "inspector._store",
    "capture_bytes": "inspector._store",
    "capture_report": "inspector._report",
    "step_table": "inspector._report",
    "load_capture": "inspector._store",
    "save_capture": "inspector._store",
    "load_dailydialog": "inspector.data.dailydialog",
    "RunConfig": "inspector.runs.config",
    "run_corpus": "inspector.runs.execute",
    "load_run": "inspector.runs.load",
    "start_run": "inspector.runs.background",
    "run_status": "inspector.runs.status",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())


def _register_notebook_display() -> None:
    """Inside IPython or Jupyter, show captures as HTML (:mod:`inspector._notebook_html`); elsewhere nothing."""
    import sys

    ipython = sys.modules.get("IPython")
    shell = ipython.get_ipython() if ipython is not None else None
    if shell is not None:
        from inspector._notebook_html import register

        register(shell)


_register_notebook_display()


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from inspector._architectures import (
        UnsupportedModelError as UnsupportedModelError,
    )
    from inspector._capture.budget import (
        MemoryBudgetError as MemoryBudgetError,
    )
    from inspector._capture.checks import (
        NonFiniteError as NonFiniteError,
    )
    from inspector._capture.settings import (
        GenerationSettings as GenerationSettings,
    )
    from inspector._fallback import (
        load_with_fallback as load_with_fallback,
    )
    from inspector._model import (
        InspectorModel as InspectorModel,
        ModelLoadError as ModelLoadError,
        load_model as load_model,
    )
    from inspector._records.capture import (
        Candidate as Candidate,
        Capture as Capture,
        CaptureError as CaptureError,
        CaptureMeta as CaptureMeta,
        StepRecord as StepRecord,
        TokenScores as TokenScores,
    )
    from inspector._report import (
        capture_report as capture_report,
        step_table as step_table,
    )
    from inspector._store import (
        CaptureFileError as CaptureFileError,
        capture_bytes as capture_bytes,
        load_capture as load_capture,
        save_capture as save_capture,
    )
    from inspector.data.dailydialog import (
        load_dailydialog as load_dailydialog,
    )
    from inspector.runs.background import (
        start_run as start_run,
    )
    from inspector.runs.config import (
        RunConfig as RunConfig,
    )
    from inspector.runs.execute import (
        run_corpus as run_corpus,
    )
    from inspector.runs.load import (
        load_run as load_run,
    )
    from inspector.runs.status import (
        run_status as run_status,
    )
