"""Curriculum ordering: a run's turns from easy to hard with equal-count difficulty bins, and ``order.csv``.

:func:`order_turns` sorts a run summary (one row per turn, see :mod:`inspector.runs`) by a
difficulty column, by default ``ref_ppl`` (the reference reply's teacher-forced perplexity, see
:mod:`inspector.research.difficulty`), lowest first. :func:`write_order_csv` writes the result
atomically; it is the file a curriculum trainer reads.

Rules, chosen so the order is deterministic and every bin is the same size:

* **ties** are ordered by ``(split, dial_id, turn)``; bins are cut by position, so tied values
  can fall on both sides of a bin boundary;
* **bins** are equal-count, as ``numpy.array_split`` cuts: with ``n`` ranked turns and ``b`` bins
  (0 = easiest), the first ``n % b`` bins hold ``n // b + 1`` turns and the others ``n // b``;
* **NaN** (no value, e.g. a dialogue's last turn, which has no reference reply) is not ranked
  among the others: with ``nan="last"`` such turns follow every ranked turn, in key order, with
  an empty bin; with ``nan="drop"`` they are left out. ``inf`` is a value and sorts last.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from inspector._atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Label columns carried into the order when the summary has them (difficulty against act and emotion).
CARRIED_COLUMNS: tuple[str, ...] = ("act", "emotion", "response_act", "response_emotion")
NAN_POLICIES: tuple[str, ...] = ("last", "drop")


def _keys(summary: pd.DataFrame) -> list[str]:
    return (["split"] if "split" in summary.columns else []) + ["dial_id", "turn"]


def order_turns(
    summary: pd.DataFrame,
    by: str = "ref_ppl",
    bins: int = 5,
    *,
    descending: bool = False,
    nan: str = "last",
    carry: Sequence[str] = CARRIED_COLUMNS,
) -> pd.DataFrame:
    """The turns of ``summary`` from easy to hard, with their rank and bin (see the module docstring).

    Args:
        summary: one row per turn with ``dial_id``, ``turn`` (and ``split``) and the column ``by``.
        by: numeric column; lower is easier unless ``descending``.
        bins: number of equal-count bins (>= 1, at most the number of turns with a value).
        descending: higher values are easier (e.g. ``chosen_prob_mean``).
        nan: ``"last"`` or ``"drop"``: what happens to turns whose ``by`` is NaN.
        carry: further columns copied when present.

    Returns:
        Columns ``rank`` (1-based, easy first), the keys, ``by``, ``bin`` (nullable integer, empty
        for NaN turns) and the carried columns; one row per turn (per ranked turn with ``"drop"``).
    """
    import pandas as pd

    if not isinstance(summary, pd.DataFrame):
        raise ValueError(f"summary must be a pandas DataFrame, got {type(summary).__name__}")
    keys = _keys(summary)
    missing = [c for c in ("dial_id", "turn", by) if c not in summary.columns]
    if missing:
        raise ValueError(f"summary has no column {missing}; numeric columns: {_numeric(summary)}")
    if by in keys or not pd.api.types.is_numeric_dtype(summary[by]) or pd.api.types.is_bool_dtype(summary[by]):
        raise ValueError(f"cannot order by {by!r}: choose a numeric column, e.g. one of {_numeric(summary)}")
    if isinstance(bins, bool) or not isinstance(bins, int) or bins < 1:
        raise ValueError(f"bins must be an integer >= 1, got {bins!r}")
    if nan not in NAN_POLICIES:
        raise ValueError(f"nan must be one of {NAN_POLICIES}, got {nan!r}")
    dup = summary.duplicated(keys)
    if bool(dup.any()):
        first = summary.loc[dup, keys].iloc[0].to_dict()
        raise ValueError(f"summary has {int(dup.sum())} duplicated turns (e.g. {first}); give one row per turn")
    cols = keys + [by] + [c for c in carry if c in summary.columns and c not in keys and c != by]
    table = summary[cols].reset_index(drop=True)
    known = table[table[by].notna()]
    unknown = table[table[by].isna()]
    n = len(known)
    if n < bins:
        raise ValueError(f"bins={bins} but only {n} turns have a value of {by!r}; lower bins")
    ranked = known.sort_values([by, *keys], ascending=[not descending] + [True] * len(keys), kind="mergesort")
    size, extra = divmod(n, bins)
    labels = [b for b in range(bins) for _ in range(size + (1 if b < extra else 0))]
    ranked = ranked.assign(bin=pd.array(labels, dtype="Int64"))
    parts = [ranked]
    if nan == "last" and len(unknown):
        parts.append(unknown.sort_values(keys, kind="mergesort").assign(bin=pd.array([pd.NA] * len(unknown),
                                                                                     dtype="Int64")))
    out = pd.concat(parts, ignore_index=True)
    out.insert(0, "rank", range(1, len(out) + 1))
    front = ["rank", *keys, by, "bin"]
    return out[front + [c for c in out.columns if c not in front]]


def _numeric(summary: pd.DataFrame) -> list[str]:
    import pandas as pd

    return [c for c in summary.columns if pd.api.types.is_numeric_dtype(summary[c])
            and not pd.api.types.is_bool_dtype(summary[c]) and c not in ("dial_id", "turn")]


def write_order_csv(order: pd.DataFrame, path: str | os.PathLike[str]) -> Path:
    """Write an :func:`order_turns` table to ``path`` as CSV (UTF-8, no index), atomically."""
    missing = [c for c in ("rank", "dial_id", "turn", "bin") if c not in order.columns]
    if missing:
        raise ValueError(f"not an order table (no column {missing}); build it with order_turns")
    with atomic_path(path) as tmp:
        order.to_csv(tmp, index=False)
    return Path(path)
