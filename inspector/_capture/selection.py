"""Selective capture: parsing ``layers=``/``heads=`` and a memory budget, and resolving them against the model.

``layers`` and ``heads`` accept a list (or tuple, or range) of ids, a ``slice``, or the command
line's text form ``"0,3,5-7"``. Lists and text become a sorted tuple at once; a slice, and negative
ids, need the model's size, so :func:`resolve_ids` finishes the job before any model work and
raises a ``ValueError`` that names the model's number of layers or heads. Nothing here imports torch.
"""

from __future__ import annotations

import re
from typing import Any

_UNITS = {"": 1, "b": 1, "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12,
          "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40}
_SIZE = re.compile(r"^\s*([0-9]+(?:\.[0-9]*)?)\s*([a-zA-Z]*)\s*$")
_RANGE = re.compile(r"^\s*([0-9]+)\s*(?:-\s*([0-9]+)\s*)?$")

Selection = tuple[int, ...] | slice | None


#: The largest layer or head id a selection may name (far above any model's count; a larger one is a typo).
MAX_ID = 65_535


def parse_ids(value: Any, what: str) -> Selection:
    """``None``, a slice (kept for :func:`resolve_ids`), or a tuple of ints (sorted, distinct when non-negative).

    ``what`` (``"layers"`` or ``"heads"``) names the setting in errors.
    """
    if value is None or isinstance(value, slice):
        if isinstance(value, slice) and not all(v is None or (isinstance(v, int) and not isinstance(v, bool))
                                                for v in (value.start, value.stop, value.step)):
            raise ValueError(f"{what} slice bounds must be integers or None, got {value!r}")
        return value
    if isinstance(value, str):
        ids: list[int] = []
        for part in value.split(","):
            m = _RANGE.match(part)
            if not m:
                raise ValueError(f"{what}={value!r}: write ids and ranges like '0,3,5-7' (got {part.strip()!r})")
            lo, hi = int(m.group(1)), int(m.group(2) if m.group(2) is not None else m.group(1))
            if hi > MAX_ID:  # before expanding the range: '0-999999999999' must not fill the memory
                raise ValueError(f"{what}={value!r}: id {hi} is beyond any model's {what} (ids go up to {MAX_ID})")
            if hi < lo:
                raise ValueError(f"{what}={value!r}: the range {lo}-{hi} is empty; write it as {hi}-{lo}")
            ids.extend(range(lo, hi + 1))
        return tuple(sorted(set(ids)))
    if isinstance(value, (list, tuple, range)):
        if any(isinstance(i, bool) or not isinstance(i, int) for i in value):
            raise ValueError(f"{what} must be integers (or a slice, or text like '0,3,5-7'), got {list(value)!r}")
        if not len(value):
            raise ValueError(f"{what} is empty; give at least one id, or None for all")
        return tuple(value) if any(i < 0 for i in value) else tuple(sorted(set(value)))
    raise ValueError(f"{what} must be a list of ids, a slice, text like '0,3,5-7' or None, got {value!r}")


def resolve_ids(value: Selection, count: int, what: str, model: str = "the model") -> tuple[int, ...] | None:
    """The sorted ids ``value`` selects among ``count``; ``None`` when it selects all of them.

    Raises ``ValueError`` naming ``count`` when an id is out of range or a slice selects nothing.
    """
    if value is None:
        return None
    if isinstance(value, slice):
        ids = list(range(count))[value]
        if not ids:
            raise ValueError(f"{what}={value!r} selects no {what}: {model} has {count} {what} (0..{count - 1})")
    else:
        bad = [i for i in value if not -count <= i < count]
        if bad:
            raise ValueError(f"{what} {bad} out of range: {model} has {count} {what} (ids 0..{count - 1}, or "
                             f"-{count}..-1 from the end)")
        ids = [i % count for i in value]
    out = tuple(sorted(set(ids)))
    return None if out == tuple(range(count)) else out


def ids_text(value: Selection) -> str | list[int] | None:
    """JSON form of a setting: a slice as ``"start:stop:step"`` text, a tuple as a list."""
    if isinstance(value, slice):
        return ":".join("" if v is None else str(v) for v in (value.start, value.stop, value.step))
    return None if value is None else list(value)


def ids_from_text(value: Any) -> Any:
    """The setting :func:`ids_text` wrote: ``"start:stop:step"`` text back to a slice; anything else as it is."""
    if isinstance(value, str) and ":" in value:
        parts = value.split(":")
        if len(parts) != 3 or not all(p.lstrip("-").isdigit() or p == "" for p in parts):
            raise ValueError(f"slice text must be 'start:stop:step' (each part an integer or empty), got {value!r}")
        start, stop, step = (None if p == "" else int(p) for p in parts)
        return slice(start, stop, step)
    return value


def parse_budget(value: Any) -> int | str | None:
    """``None`` (the default budget), ``"off"``, or bytes from an int or text like ``"4GB"``, ``"512MiB"``."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise ValueError(f"memory_budget must be bytes, text like '4GB', 'off' or None, got {value!r}")
    if isinstance(value, (int, float)):
        if not value > 0 or value != value or value == float("inf"):
            raise ValueError(f"memory_budget must be a positive number of bytes, got {value!r}")
        return int(value)
    if isinstance(value, str):
        text = value.strip().lower()
        if text in ("off", "none", "0"):
            return "off" if text != "none" else None
        m = _SIZE.match(text)
        if not m or m.group(2) not in _UNITS:
            raise ValueError(f"memory_budget={value!r}: write bytes or a size like '4GB', '512MB', '2GiB', or 'off'")
        n = int(float(m.group(1)) * _UNITS[m.group(2)])
        if n <= 0:
            raise ValueError(f"memory_budget={value!r} must be positive (or 'off')")
        return n
    raise ValueError(f"memory_budget must be bytes, text like '4GB', 'off' or None, got {value!r}")


def format_bytes(n: float) -> str:
    """``1234567890`` -> ``"1.2 GB"`` (decimal units, as ``--memory-budget`` reads them)."""
    for unit, size in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"
