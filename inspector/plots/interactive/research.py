"""Dialogue-research figures with plotly: a paired run comparison per metric, and difficulty bins against a label."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inspector.plots.interactive._draw import LAYOUT, plotly_go, title_layout
from inspector.plots.labels import html_label
from inspector.plots.options import METRIC_LABELS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go

    from inspector.research.compare_runs import RunComparison


def comparison_figure(comparison: RunComparison, column: str, *, width: int | None = None,
                      height: int | None = None) -> go.Figure:
    """Mean paired difference ``B - A`` of ``column`` per group, with its bootstrap interval as error bars.

    One bar per group of ``comparison.groups`` (``"(all)"`` first); hover gives ``n`` and both means.
    """
    go = plotly_go()
    if column not in comparison.columns:
        raise ValueError(f"{column!r} was not compared; choose one of {list(comparison.columns)}")
    rows = comparison.groups[comparison.groups["column"] == column]
    groups = [str(g) for g in rows["group"]]
    diff = rows["mean_diff"].to_numpy(dtype=float)
    fig = go.Figure(go.Bar(
        x=[html_label(g) for g in groups],
        y=diff,
        error_y={"type": "data", "symmetric": False, "array": rows["ci_high"].to_numpy(dtype=float) - diff,
                 "arrayminus": diff - rows["ci_low"].to_numpy(dtype=float)},
        customdata=rows[["n", "mean_a", "mean_b", "ci_low", "ci_high"]].to_numpy(),
        hovertemplate=("%{x}: B - A = %{y:.4g} [%{customdata[3]:.4g}, %{customdata[4]:.4g}]<br>"
                       "n = %{customdata[0]}, mean A = %{customdata[1]:.4g}, mean B = %{customdata[2]:.4g}"
                       "<extra></extra>"),
        marker_color=["#444444" if g == "(all)" else "#1b9e77" for g in groups],
    ))
    fig.add_hline(y=0, line={"color": "#999999", "width": 1})
    label = METRIC_LABELS.get(column, column)
    by = f" by {comparison.by.replace('_', ' ')}" if comparison.by else ""
    conf = f"{comparison.confidence:.0%}"
    title = f"{label}: run B - run A per turn{by}\nmean difference with {conf} bootstrap interval"
    fig.update_layout(**LAYOUT, title=title_layout(title), width=width or max(500, 60 * len(groups) + 200),
                      height=height or 380, yaxis_title=f"B - A ({label})",
                      meta={"kind": "comparison", "column": column, "groups": groups})
    return fig


def difficulty_bins_figure(order: pd.DataFrame, label: str, *, width: int | None = None,
                           height: int | None = None) -> go.Figure:
    """How the turns of each difficulty bin split by ``label``: stacked counts per bin (0 = easiest).

    ``order`` is an :func:`inspector.research.curriculum.order_turns` table; turns without a bin
    (no value) are left out.
    """
    go = plotly_go()
    if label not in order.columns or "bin" not in order.columns:
        raise ValueError(f"the order table has no {label!r} or 'bin' column; build it with order_turns")
    ranked = order[order["bin"].notna()]
    if ranked.empty:
        raise ValueError("no turn has a difficulty value to bin")
    keys = ranked[label].astype(object).where(ranked[label].notna(), "(none)").astype(str)
    counts = ranked.assign(_k=keys).groupby(["_k", "bin"]).size().unstack(fill_value=0)
    bins = sorted(int(b) for b in ranked["bin"].unique())
    fig = go.Figure()
    for name, row in counts.iterrows():
        fig.add_trace(go.Bar(x=[str(b) for b in bins], y=[int(row.get(b, 0)) for b in bins], name=html_label(str(name)),
                             hovertemplate=f"{html_label(str(name))}: %{{y}} turns in bin %{{x}}<extra></extra>"))
    by = order.columns[order.columns.get_loc("bin") - 1]
    title = f"Turns per difficulty bin by {label.replace('_', ' ')} (bins of {by}, 0 = easiest)"
    fig.update_layout(**LAYOUT, barmode="stack", title=title_layout(title), width=width or 700,
                      height=height or 380, xaxis_title="bin", yaxis_title="turns",
                      legend={"title": {"text": label.replace("_", " ")}},
                      meta={"kind": "difficulty_bins", "label": label, "bins": bins})
    return fig
