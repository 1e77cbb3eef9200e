"""The numbers of the corpus figure: a run summary's per-turn metrics, grouped by a DailyDialog label.

:func:`corpus_data` checks the summary's columns and returns each group's values in
DailyDialog's label order (the rows of ``inspector stats``), for both renderers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inspector.data.dailydialog import ACT_NAMES, EMOTION_NAMES
from inspector.data.schema import NO_LABEL as NO_LABEL  # also importable from here, its old home
from inspector.plots.options import GROUP_COLUMNS, METRIC_LABELS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Metrics shown by :func:`corpus_data` when none are named. The first two are required;
#: the attention shares are shown when the run kept attention (columns present, not all empty).
DEFAULT_METRICS: tuple[str, ...] = (
    "entropy_mean",
    "chosen_prob_mean",
    "attn_prompt_share",
    "attn_first_share",
    "attn_last_user_turn",
    "attn_earlier_turns",
)
_REQUIRED_DEFAULT_METRICS = ("entropy_mean", "chosen_prob_mean")


@dataclass(frozen=True)
class CorpusData:
    """``values[metric][group]``: the non-missing values of ``metric`` in each group."""

    by: str
    metrics: list[str]
    groups: list[str]
    counts: dict[str, int]
    values: dict[str, dict[str, np.ndarray]]
    title: str

    def metric_label(self, metric: str) -> str:
        """The readable name of ``metric`` (:data:`~inspector.plots.options.METRIC_LABELS`), else the column name."""
        return METRIC_LABELS.get(metric, metric)


def _group_keys(col: pd.Series) -> pd.Series:
    """Label of every row as a string; rows without one (the last turn has no response) are ``(none)``."""
    return col.astype(object).where(col.notna(), NO_LABEL).astype(str)


def _group_order(by: str, keys: pd.Series) -> list[str]:
    """DailyDialog's label order (inform, question, ...; no emotion, anger, ...), then others sorted,
    ``(none)`` last: the rows of ``inspector stats``."""
    present = set(keys)
    names = list((ACT_NAMES if by.endswith("act") else EMOTION_NAMES).values())
    known = [n for n in names if n in present]
    rest = sorted(present - set(names) - {NO_LABEL})
    return known + rest + ([NO_LABEL] if NO_LABEL in present else [])


def corpus_data(summary: pd.DataFrame, by: str = "emotion", metrics: Sequence[str] | None = None) -> CorpusData:
    """Group a run summary's per-turn metrics by ``by``; missing columns raise ``ValueError``.

    The title flags random weights when ``summary.attrs["random_weights"]`` (set by
    :func:`inspector.plots.load_source`) or a ``random_weights`` column says so.
    """
    import pandas as pd

    if not isinstance(summary, pd.DataFrame):
        raise ValueError(f"a corpus figure needs a run summary DataFrame, got {type(summary).__name__}")
    if by not in GROUP_COLUMNS:
        raise ValueError(f"cannot group by {by!r}; choose one of {list(GROUP_COLUMNS)}")
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if metrics is None:
        required = [by, *_REQUIRED_DEFAULT_METRICS]
        chosen = list(_REQUIRED_DEFAULT_METRICS) + [
            m
            for m in DEFAULT_METRICS
            if m not in _REQUIRED_DEFAULT_METRICS and m in summary.columns and summary[m].notna().any()
        ]
    else:
        if not metrics:
            raise ValueError("name at least one metric")
        chosen = list(dict.fromkeys(metrics))
        required = [by, *chosen]
    missing = [c for c in required if c not in summary.columns]
    if missing:
        raise ValueError(
            f"the run summary lacks column(s) {missing} needed for this figure; "
            f"it has {list(summary.columns)}"
        )
    for m in chosen:
        if not pd.api.types.is_numeric_dtype(summary[m]) or pd.api.types.is_bool_dtype(summary[m]):
            raise ValueError(f"metric column {m!r} is not numeric ({summary[m].dtype})")
    if len(summary) == 0:
        raise ValueError("the run summary has no rows")
    keys = _group_keys(summary[by])
    groups = _group_order(by, keys)
    rows = {g: (keys == g).to_numpy() for g in groups}
    counts = {g: int(rows[g].sum()) for g in groups}
    values = {
        m: {g: pd.to_numeric(summary.loc[rows[g], m]).dropna().to_numpy(dtype=np.float64) for g in groups}
        for m in chosen
    }
    what = f"Per-turn metrics by {by.replace('_', ' ')} ({len(summary)} turns)"
    random = bool(summary.attrs.get("random_weights", False))
    if "random_weights" in summary.columns:
        random = random or bool(summary["random_weights"].fillna(False).astype(bool).any())
    model = str(summary.attrs.get("model") or "")
    if random:
        what += f"\n{model + ': ' if model else ''}RANDOM WEIGHTS (not real GPT-2)"
    elif model:
        what += f"\n{model}"
    return CorpusData(by=by, metrics=chosen, groups=groups, counts=counts, values=values, title=what)

