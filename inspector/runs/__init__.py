"""Corpus runs: batched captures over many DailyDialog turns, resumable, with one summary table.

The modules, in the order a run uses them:

* :mod:`~inspector.runs.config`: :class:`RunConfig`, what a run does; :data:`ATTENTION_MODES`;
* :mod:`~inspector.runs.plan`: :func:`plan_run`, the turns, their prompts and the fixed batches;
* :mod:`~inspector.runs.folder`: the folder layout, run.json and the command identity, the lock;
* :mod:`~inspector.runs.execute`: :func:`run_corpus`, generation, captures and summary parts;
* :mod:`~inspector.runs.summary`: the summary's columns and dtypes, reading and checking tables;
* :mod:`~inspector.runs.load`: :func:`load_run` and :class:`Run`; :mod:`~inspector.runs.stats`: :func:`stats`.

Errors are :class:`RunError` (and :class:`RunMismatchError`), both ``ValueError``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

# The function `stats` shares its name with the submodule `inspector.runs.stats`, which would take the
# name here once imported: bound now (the module is light), as the eager package did.
from inspector.runs.stats import STATS_BY, STATS_COLUMNS, stats

# The rest is loaded from its module on first use (PEP 562), so that `inspector run --help` and the
# run's configuration do not import torch.
_EXPORTS: dict[str, str] = {
    "SHARE_COLUMNS": "inspector.metrics",
    "attention_columns": "inspector.metrics",
    "ATTENTION_MODES": "inspector.runs.config",
    "RunConfig": "inspector.runs.config",
    "RunError": "inspector.runs.errors",
    "RunMismatchError": "inspector.runs.errors",
    "run_corpus": "inspector.runs.execute",
    "RUN_FORMAT": "inspector.runs.folder",
    "RUN_SCHEMA_VERSION": "inspector.runs.folder",
    "capture_relpath": "inspector.runs.folder",
    "check_resumable": "inspector.runs.folder",
    "command_identity": "inspector.runs.folder",
    "Run": "inspector.runs.load",
    "load_run": "inspector.runs.load",
    "RunPlan": "inspector.runs.plan",
    "WorkItem": "inspector.runs.plan",
    "plan_run": "inspector.runs.plan",
}

__all__ = [
    "ATTENTION_MODES",
    "RUN_FORMAT",
    "RUN_SCHEMA_VERSION",
    "SHARE_COLUMNS",
    "STATS_BY",
    "STATS_COLUMNS",
    "Run",
    "RunConfig",
    "RunError",
    "RunMismatchError",
    "RunPlan",
    "WorkItem",
    "attention_columns",
    "capture_relpath",
    "check_resumable",
    "command_identity",
    "load_run",
    "plan_run",
    "run_corpus",
    "stats",
]


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'inspector.runs' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS})


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from inspector.metrics import SHARE_COLUMNS, attention_columns
    from inspector.runs.config import ATTENTION_MODES, RunConfig
    from inspector.runs.errors import RunError, RunMismatchError
    from inspector.runs.execute import run_corpus
    from inspector.runs.folder import RUN_FORMAT, RUN_SCHEMA_VERSION, capture_relpath, check_resumable, command_identity
    from inspector.runs.load import Run, load_run
    from inspector.runs.plan import RunPlan, WorkItem, plan_run
