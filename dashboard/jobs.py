"""Generation in the background: one thread per Generate click, so a page rerun (a tab click, a view's widget)
does not stop it; only :meth:`GenerationJob.cancel` does (Stop, or a change to a setting the generation uses).

Plumbing only: the thread calls :func:`dashboard.state.generate` (the process-wide lock and capture cache)
and cancels through the package's own hook, an exception raised from ``on_step`` (see
:func:`inspector._capture.generate`), after which the model's hooks are removed and nothing is kept.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Cancelled(Exception):  # noqa: N818 - reads as what happened: ``except Cancelled``
    """Raised from the progress callback to cancel a generation; ``str()`` is the reason."""


@dataclass
class GenerationJob:
    """One generation running (or finished) in a background thread.

    ``settings_key`` and ``model_key`` are what the generation uses (to tell when the page's settings
    change under it); ``origin`` names the prompt for the page. ``done`` / ``total`` count tokens.
    ``waiting`` is true until the thread holds the process-wide generation lock.
    """

    origin: str
    settings: Any
    settings_key: str
    model_key: str
    total: int
    done: int = 0
    waiting: bool = True
    result: Any = None
    error: BaseException | None = None
    cancel_reason: str | None = None
    from_cache: bool = False
    finished: threading.Event = field(default_factory=threading.Event)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def cancel(self, reason: str) -> None:
        """Ask the thread to stop at its next step (or before it starts); the first reason given is kept."""
        with self._lock:
            if self.cancel_reason is None and not self.finished.is_set():
                self.cancel_reason = reason

    @property
    def outcome(self) -> str:
        """``running``, ``done`` (``result`` is the capture), ``cancelled`` (see ``cancel_reason``) or ``failed``
        (see ``error``)."""
        if not self.finished.is_set():
            return "running"
        if isinstance(self.error, Cancelled):
            return "cancelled"
        return "failed" if self.error is not None else "done"

    # ------------------------------------------------------------------------- the thread's side
    def on_start(self) -> None:
        """Called once the generation lock is held: cancels here when asked to while waiting for it."""
        self.waiting = False
        self._check()

    def on_step(self, done: int, total: int) -> None:
        """The package's progress callback: counts, and cancels by raising :class:`Cancelled`."""
        self.done, self.total = done, total
        self._check()

    def _check(self) -> None:
        with self._lock:
            reason = self.cancel_reason
        if reason is not None:
            raise Cancelled(reason)


def start(job: GenerationJob, work: Callable[[GenerationJob], Any]) -> threading.Thread:
    """Run ``work(job)`` in a daemon thread; its return value becomes ``job.result``, its exception
    ``job.error``; ``job.finished`` is set either way."""

    def target() -> None:
        try:
            job.result = work(job)
        except BaseException as exc:  # noqa: BLE001 - handed to the page, which says what happened
            job.error = exc
        finally:
            job.finished.set()

    thread = threading.Thread(target=target, name="inspector-dashboard-generate", daemon=True)
    thread.start()
    return thread
