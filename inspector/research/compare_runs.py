"""Paired comparison of two corpus runs over the same turns: per-turn differences, group means, bootstrap CIs.

Run summaries (one row per turn, see :mod:`inspector.runs`) are matched on ``(split, dial_id,
turn)`` (``split`` when both have it). For every numeric column both runs share (keys and the
``batch`` bookkeeping column excepted), the paired difference ``B - A`` is taken per turn. Per
group of a label column (``by``, e.g. ``emotion``) and over all turns (group ``"(all)"``), the mean
difference gets a confidence interval from a **percentile bootstrap**: the group's ``n`` non-NaN
differences are resampled with replacement ``n_resamples`` times, and the interval is the
``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles (numpy's linear interpolation) of
the resampled means. Each (group, column) draws from its own generator seeded with ``seed`` and
the CRC-32 of both names, so an interval does not depend on which other groups or columns are
compared. Turns whose label is missing form the group ``"(missing)"``.

Turns present in one run only are not dropped silently: :attr:`RunComparison.only_a` and
:attr:`RunComparison.only_b` list them and :meth:`RunComparison.describe` names them.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

ALL_GROUP = "(all)"
MISSING_GROUP = "(missing)"
#: Numeric summary columns that are bookkeeping, not measurements.
EXCLUDED_COLUMNS: tuple[str, ...] = ("batch",)
#: Columns of :meth:`RunComparison.to_frame`.
GROUP_COLUMNS: tuple[str, ...] = ("group", "column", "n", "mean_a", "mean_b", "mean_diff", "ci_low", "ci_high")
_CHUNK = 4_000_000  # resampled values held at once


@dataclass(frozen=True)
class RunComparison:
    """Two runs compared turn by turn (see the module docstring for the method).

    Attributes:
        paired: one row per turn in both runs: the keys, the ``by`` label (when given) and, per
            compared column, the difference ``B - A`` (float64; NaN where either run has none).
        groups: one row per (group, column) with :data:`GROUP_COLUMNS`: ``n`` non-NaN pairs, the
            mean of A and of B over those pairs, the mean difference and its CI bounds.
        only_a: keys of the turns only run A has; ``only_b``: only run B.
        columns: the compared numeric columns.
        by: the label column grouped by, or ``None``.
        n_resamples, confidence, seed: the bootstrap's settings.
    """

    paired: pd.DataFrame
    groups: pd.DataFrame
    only_a: pd.DataFrame
    only_b: pd.DataFrame
    columns: tuple[str, ...]
    by: str | None
    n_resamples: int
    confidence: float
    seed: int

    def to_frame(self) -> pd.DataFrame:
        """The per-group table (one row per group and column), a copy."""
        return self.groups.copy()

    def describe(self, max_named: int = 10) -> str:
        """A few lines: paired turns, and the turns found in one run only (the first ``max_named`` named)."""
        lines = [f"{len(self.paired)} turns in both runs; {len(self.columns)} numeric columns compared (B - A)"]
        for name, table in (("A", self.only_a), ("B", self.only_b)):
            if len(table):
                head = table.head(max_named).itertuples(index=False)
                named = ", ".join("/".join(str(v) for v in row) for row in head)
                more = f" and {len(table) - max_named} more" if len(table) > max_named else ""
                lines.append(f"{len(table)} turns only in run {name} (not compared): {named}{more}")
        return "\n".join(lines)


def _numeric(df: pd.DataFrame, keys: Sequence[str]) -> list[str]:
    import pandas as pd

    return [c for c in df.columns if c not in keys and c not in EXCLUDED_COLUMNS
            and pd.api.types.is_numeric_dtype(df[c]) and not pd.api.types.is_bool_dtype(df[c])]


def _check_frame(df: pd.DataFrame, name: str, keys: list[str]) -> None:
    import pandas as pd

    if not isinstance(df, pd.DataFrame):
        raise ValueError(f"run {name} must be a pandas DataFrame (a run summary), got {type(df).__name__}")
    missing = [k for k in keys if k not in df.columns]
    if missing:
        raise ValueError(f"run {name} has no column {missing}; give run summaries (one row per turn)")
    dup = df.duplicated(keys)
    if bool(dup.any()):
        raise ValueError(f"run {name} has {int(dup.sum())} duplicated turns; give one row per turn")


def bootstrap_ci(
    values: np.ndarray, n_resamples: int, confidence: float, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` ``[n]`` (NaN, NaN when ``n == 0``)."""
    n = int(values.shape[0])
    if n == 0:
        return float("nan"), float("nan")
    per = max(1, _CHUNK // n)
    means = []
    for start in range(0, n_resamples, per):
        idx = rng.integers(0, n, size=(min(per, n_resamples - start), n))
        means.append(values[idx].mean(axis=1))
    alpha = (1.0 - confidence) / 2.0
    lo, hi = np.quantile(np.concatenate(means), [alpha, 1.0 - alpha])
    return float(lo), float(hi)


def compare_runs(
    a: pd.DataFrame,
    b: pd.DataFrame,
    *,
    by: str | None = None,
    columns: Sequence[str] | None = None,
    n_resamples: int = 2000,
    confidence: float = 0.95,
    seed: int = 0,
) -> RunComparison:
    """Compare run summaries ``a`` and ``b`` turn by turn; see the module docstring.

    Args:
        a, b: run summaries (``dial_id``, ``turn``, optionally ``split``, numeric columns).
        by: a label column to group by (e.g. ``"emotion"``); taken from A, else from B.
        columns: numeric columns to compare (default: every numeric column both share).
        n_resamples: bootstrap resamples per (group, column).
        confidence: the intervals' coverage, in (0, 1).
        seed: the bootstrap's seed.

    Raises:
        ValueError: not summaries, duplicated turns, no shared numeric column, a bad ``by`` or
            bootstrap setting, or runs that disagree on a turn's ``by`` label.
    """
    import pandas as pd

    keys = ["dial_id", "turn"]
    if isinstance(a, pd.DataFrame) and isinstance(b, pd.DataFrame) and "split" in a.columns and "split" in b.columns:
        keys = ["split", *keys]
    _check_frame(a, "A", keys)
    _check_frame(b, "B", keys)
    if isinstance(n_resamples, bool) or not isinstance(n_resamples, int) or n_resamples < 1:
        raise ValueError(f"n_resamples must be an integer >= 1, got {n_resamples!r}")
    if not 0.0 < float(confidence) < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    shared = [c for c in _numeric(a, keys) if c in set(_numeric(b, keys))]
    if columns is not None:
        bad = [c for c in columns if c not in shared]
        if bad:
            raise ValueError(f"columns {bad} are not numeric columns of both runs; shared: {shared}")
        shared = list(columns)
    if not shared:
        raise ValueError("the runs share no numeric column to compare")
    if by is not None and by not in a.columns and by not in b.columns:
        raise ValueError(f"neither run has the label column {by!r}")
    if by is not None and by in keys:
        raise ValueError(f"{by!r} identifies turns; group by a label column such as 'emotion' or 'act'")
    if by is not None and by in shared:
        raise ValueError(f"{by!r} is numeric; group by a label column such as 'emotion' or 'act'")

    ka, kb = a[keys].drop_duplicates(), b[keys].drop_duplicates()
    both = ka.merge(kb, on=keys, how="outer", indicator=True)
    only_a = both.loc[both["_merge"] == "left_only", keys].sort_values(keys).reset_index(drop=True)
    only_b = both.loc[both["_merge"] == "right_only", keys].sort_values(keys).reset_index(drop=True)

    label_cols = [by] if by is not None else []
    left = a[keys + [c for c in label_cols if c in a.columns] + shared]
    right = b[keys + [c for c in label_cols if c in b.columns] + shared]
    m = left.merge(right, on=keys, how="inner", suffixes=("__a", "__b")).sort_values(keys).reset_index(drop=True)
    paired = m[keys].copy()
    if by is not None:
        paired[by] = _labels(m, by)
    va = {c: m[f"{c}__a"].astype("float64").to_numpy() for c in shared}
    vb = {c: m[f"{c}__b"].astype("float64").to_numpy() for c in shared}
    for c in shared:
        paired[c] = vb[c] - va[c]

    groups: list[tuple[str, np.ndarray]] = [(ALL_GROUP, np.ones(len(m), dtype=bool))]
    if by is not None:
        labels = paired[by].to_numpy()
        groups += [(str(g), labels == g) for g in sorted(set(labels.tolist()))]
    rows = []
    for group, sel in groups:
        for c in shared:
            d = paired[c].to_numpy()[sel]
            ok = ~np.isnan(d)
            rng = np.random.default_rng([seed, zlib.crc32(group.encode()), zlib.crc32(c.encode())])
            lo, hi = bootstrap_ci(d[ok], n_resamples, confidence, rng)
            rows.append((group, c, int(ok.sum()), _mean(va[c][sel][ok]), _mean(vb[c][sel][ok]), _mean(d[ok]), lo, hi))
    table = pd.DataFrame(rows, columns=list(GROUP_COLUMNS))
    return RunComparison(paired, table, only_a, only_b, tuple(shared), by, n_resamples, float(confidence), seed)


def _mean(x: np.ndarray) -> float:
    return float(x.mean()) if x.size else float("nan")


def _labels(m: pd.DataFrame, by: str) -> pd.Series:
    """The ``by`` label per paired turn: A's, else B's; refuses turns where both have different ones."""
    if by in m.columns:  # only one run had the column, so it kept its name
        col = m[by]
    else:
        la, lb = m[f"{by}__a"], m[f"{by}__b"]
        clash = la.notna() & lb.notna() & (la.astype(str) != lb.astype(str))
        if bool(clash.any()):
            raise ValueError(
                f"the runs disagree on {by!r} for {int(clash.sum())} turns; are they over the same data?"
            )
        col = la.where(la.notna(), lb)
    return col.map(lambda v: MISSING_GROUP if v is None or (isinstance(v, float) and np.isnan(v)) else str(v))
