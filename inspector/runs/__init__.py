"""Corpus runs: batched captures over many DailyDialog turns, resumable, with one summary table.

The modules, in the order a run uses them:

* :mod:`~inspector.runs.config`: :class:`RunConfig`, what a run does; :data:`ATTENTION_MODES`;
* :mod:`~inspector.runs.plan`: :func:`plan_run`, the turns, their prompts and the fixed batches;
* :mod:`~inspector.runs.folder`: the folder layout, run.json and the command identity, the lock;
* :mod:`~inspector.runs.execute`: :func:`run_corpus`, generation, captures and summary parts;
* :mod:`~inspector.runs.summary`: the summary's columns and dtypes, reading and checking tables;
* :mod:`~inspector.runs.load`: :func:`load_run` and :class:`Run`; :mod:`~inspector.runs.stats`: :func:`stats`;
* :mod:`~inspector.runs.background`: :func:`start_run`, :func:`stop_run`, :func:`resume_run`, ``inspector run``
  as a child process that outlives its page; :mod:`~inspector.runs.status`: :func:`run_status`, its state read
  from the folder.

Errors are :class:`RunError` (and :class:`RunMismatchError`), both ``ValueError``.

Research columns (``RunConfig(score_reference=True)`` / ``inspector run --score-reference``, or a
``--condition``; computed per batch by :func:`inspector.research.turns.research_columns`; NaN where a
turn cannot have them, e.g. a dialogue's last turn, which has no reference reply):

* ``ref_nll``, ``ref_nll_mean``, ``ref_ppl``, ``ref_tokens``: the reference reply (``" " + response``)
  teacher-forced after the plain prompt: its negative log-likelihood in nats (sum, per-token mean),
  perplexity ``exp(ref_nll_mean)`` and token count;
* with ``condition="emotion"`` or ``"act"`` the generation prompt states the reference reply's
  ``response_emotion`` / ``response_act`` in its cue (``Agent (happiness):``; its tokens are a
  ``"condition"`` segment of the prompt), and: ``cond_delta_loglik`` (``log p(reply | conditioned) -
  log p(reply | plain)``, nats), ``cond_delta_loglik_mean`` (per reply token), ``cond_kl_mean`` and
  ``cond_kl_max`` (``KL(P_cond || P_plain)`` of the next-token distributions before each reply token,
  nats), and ``attn_condition``: the generation's attention on the condition tokens (per layer and
  head, summed over those keys and averaged over the generated rows; kept ``[layer, head]`` in the
  capture's ``meta.extra["condition_attention"]``), averaged over layers and heads (NaN with
  ``attention="none"``).

:data:`CONDITIONS` names the conditions; the research options are part of the command identity.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inspector._lazy import lazy_namespace

# The function `stats` shares its name with the submodule `inspector.runs.stats`, which would take the
# name here once imported: bound now (the module is light), as the eager package did.
from inspector.runs.stats import STATS_BY, STATS_COLUMNS, stats

# The rest is loaded from its module on first use (PEP 562), so that `inspector run --help` and the
# run's configuration do not import torch.
_EXPORTS: dict[str, str] = {
    "SHARE_COLUMNS": "inspector._metrics",
    "attention_columns": "inspector._metrics",
    "ATTENTION_MODES": "inspector.runs.config",
    "CONDITIONS": "inspector.runs.config",
    "RunConfig": "inspector.runs.config",
    "RunError": "inspector.runs.config",
    "RunMismatchError": "inspector.runs.config",
    "RunModel": "inspector.runs.background",
    "resume_run": "inspector.runs.background",
    # the command line a terminal types for a run: a CLI matter, kept here under its old name (resolved
    # on first use only; nothing in the package imports the CLI)
    "run_command": "inspector.cli.run_args",
    "start_run": "inspector.runs.background",
    "stop_run": "inspector.runs.background",
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
    "RunAlreadyRunning": "inspector.runs.status",
    "RunStatus": "inspector.runs.status",
    "run_status": "inspector.runs.status",
}

__all__ = [
    "ATTENTION_MODES",
    "CONDITIONS",
    "RUN_FORMAT",
    "RUN_SCHEMA_VERSION",
    "SHARE_COLUMNS",
    "STATS_BY",
    "STATS_COLUMNS",
    "Run",
    "RunAlreadyRunning",
    "RunConfig",
    "RunError",
    "RunMismatchError",
    "RunModel",
    "RunPlan",
    "RunStatus",
    "WorkItem",
    "attention_columns",
    "capture_relpath",
    "check_resumable",
    "command_identity",
    "load_run",
    "plan_run",
    "resume_run",
    "run_command",
    "run_corpus",
    "run_status",
    "start_run",
    "stats",
    "stop_run",
]


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs only
    from inspector._metrics import (
        SHARE_COLUMNS as SHARE_COLUMNS,
        attention_columns as attention_columns,
    )
    from inspector.runs.background import (
        RunModel as RunModel,
        resume_run as resume_run,
        start_run as start_run,
        stop_run as stop_run,
    )
    from inspector.runs.config import (
        ATTENTION_MODES as ATTENTION_MODES,
        CONDITIONS as CONDITIONS,
        RunConfig as RunConfig,
        RunError as RunError,
        RunMismatchError as RunMismatchError,
    )
    from inspector.runs.execute import (
        run_corpus as run_corpus,
    )
    from inspector.runs.folder import (
        RUN_FORMAT as RUN_FORMAT,
        RUN_SCHEMA_VERSION as RUN_SCHEMA_VERSION,
        capture_relpath as capture_relpath,
        check_resumable as check_resumable,
        command_identity as command_identity,
    )
    from inspector.runs.load import (
        Run as Run,
        load_run as load_run,
    )
    from inspector.runs.plan import (
        RunPlan as RunPlan,
        WorkItem as WorkItem,
        plan_run as plan_run,
    )
    from inspector.runs.status import (
        RunAlreadyRunning as RunAlreadyRunning,
        RunStatus as RunStatus,
        run_status as run_status,
    )
