"""Provenance recorded with every capture and run: library versions and the creation time."""

from __future__ import annotations

import contextlib
import datetime as _dt
import functools
import importlib.metadata
import platform


def library_versions() -> dict[str, str]:
    """Versions recorded in every capture: python, torch, transformers and inspector (where installed)."""
    import torch

    return {"python": platform.python_version(), "torch": torch.__version__, **_installed_versions()}


@functools.cache
def _installed_versions() -> dict[str, str]:
    """transformers' and inspector's installed versions, read once per process (each lookup scans
    ``sys.path``: 3 ms, as long as a short capture's assembly). Callers get copies."""
    out = {}
    for name in ("transformers", "inspector"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string, to the second (``created`` of captures)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
