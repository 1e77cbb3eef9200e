"""Selecting turns of a turn table: :func:`filter_turns` and the ``--filter KEY=VALUE`` parser."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from inspector.data.schema import LABEL_NAMES, DailyDialogError, label_id

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Keys accepted by :func:`parse_filters` (``--filter KEY=VALUE``).
FILTER_KEYS: tuple[str, ...] = (*LABEL_NAMES, "dial_id", "turn", "text", "response_text", "has_response", "split")


def _label_set(values: str | int | Iterable[str | int], names: Mapping[int, str], key: str) -> set[str]:
    items = [values] if isinstance(values, (str, int)) else list(values)
    out = set()
    for v in items:
        if isinstance(v, str) and "," in v:
            out |= _label_set([x for x in v.split(",") if x.strip()], names, key)
            continue
        try:
            out.add(names[label_id(v, names, key, f"filter {key}")])
        except DailyDialogError:
            raise DailyDialogError(
                f"unknown {key} {v!r} in filter; choose from {list(names.values())} (or their numbers)"
            ) from None
    return out


def parse_int_set(spec: str | int | Iterable[int | str], what: str = "dial_id") -> set[int]:
    """``"1,4,10-12"`` -> ``{1, 4, 10, 11, 12}``."""
    if isinstance(spec, int):
        return {spec}
    parts: list[str] = spec.split(",") if isinstance(spec, str) else [str(x) for x in spec]
    out: set[int] = set()
    for part in (p.strip() for p in parts):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise DailyDialogError(f"{what} range {part!r} is empty")
            out.update(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            out.add(int(part))
        else:
            raise DailyDialogError(f"{what} {part!r} is not a number or a range like 10-12")
    return out


def filter_turns(
    df: pd.DataFrame,
    *,
    split: str | Iterable[str] | None = None,
    act: Any = None,
    emotion: Any = None,
    response_act: Any = None,
    response_emotion: Any = None,
    dial_id: Any = None,
    turn: Any = None,
    text: str | None = None,
    response_text: str | None = None,
    has_response: bool | None = None,
) -> pd.DataFrame:
    """Rows of a turn table that match every given condition (``None`` = no condition).

    Label conditions take names (``"question"``), numbers, or lists of them (any may
    match); ``dial_id`` and ``turn`` take ints, lists, or ``"1,4,10-12"``; ``text`` and
    ``response_text`` are case-insensitive substrings of the utterance / the response.
    Returns a new frame with a fresh index, rows in their original order.
    """
    mask = df["dial_id"].notna()
    if split is not None:
        mask &= df["split"].isin([split] if isinstance(split, str) else list(split))
    for key, value in (("act", act), ("emotion", emotion), ("response_act", response_act),
                       ("response_emotion", response_emotion)):
        if value is not None:
            mask &= df[key].isin(_label_set(value, LABEL_NAMES[key], key))
    if dial_id is not None:
        mask &= df["dial_id"].isin(parse_int_set(dial_id, "dial_id"))
    if turn is not None:
        mask &= df["turn"].isin(parse_int_set(turn, "turn"))
    if text:
        mask &= df["utterance"].str.contains(text, case=False, regex=False)
    if response_text:
        mask &= df["response"].fillna("").str.contains(response_text, case=False, regex=False)
    if has_response is not None:
        mask &= df["response"].notna() == bool(has_response)
    return df[mask].reset_index(drop=True)


def parse_filters(specs: Iterable[str]) -> dict[str, Any]:
    """``["act=question", "emotion=anger,sadness", "dial_id=1-5"]`` -> keyword arguments of :func:`filter_turns`.

    Repeating a key is an error. ``has_response`` takes yes/no/true/false/1/0.
    """
    out: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise DailyDialogError(f"filter {spec!r} must look like KEY=VALUE, e.g. act=question")
        if key not in FILTER_KEYS:
            raise DailyDialogError(f"unknown filter key {key!r}; choose from {list(FILTER_KEYS)}")
        if key in out:
            raise DailyDialogError(f"filter key {key!r} given twice; list several values with commas instead")
        value = value.strip()
        if key == "has_response":
            low = value.lower()
            if low not in ("yes", "no", "true", "false", "1", "0"):
                raise DailyDialogError(f"has_response must be yes or no, got {value!r}")
            out[key] = low in ("yes", "true", "1")
        elif key in LABEL_NAMES:
            _label_set(value, LABEL_NAMES[key], key)  # validate now, with the key in the message
            out[key] = value
        elif key in ("dial_id", "turn"):
            out[key] = sorted(parse_int_set(value, key))
        else:
            out[key] = value
    return out
