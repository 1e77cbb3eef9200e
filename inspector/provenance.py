"""Provenance recorded with every capture and run: library versions and the creation time."""

from __future__ import annotations

import contextlib
import datetime as _dt
import importlib.metadata
import platform


def library_versions() -> dict[str, str]:
    """Versions recorded in every capture: python, torch, transformers and inspector (where installed)."""
    import torch

    out = {"python": platform.python_version(), "torch": torch.__version__}
    for name in ("transformers", "inspector"):
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            out[name] = importlib.metadata.version(name)
    return out


def utc_now() -> str:
    """The current UTC time as an ISO 8601 string, to the second (``created`` of captures)."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
