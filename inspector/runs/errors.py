"""The errors of corpus runs: a run that cannot start, resume or be read, and a mismatched command."""

from __future__ import annotations


class RunError(ValueError):
    """A run cannot start, resume or be read; the message says why."""


class RunMismatchError(RunError):
    """The run folder was started with a different command."""
