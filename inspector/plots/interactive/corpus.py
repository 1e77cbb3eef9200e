"""The corpus figure with plotly: box plots of a run's per-turn metrics by DailyDialog label, numbers on hover."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from inspector.plots.corpus_data import corpus_data
from inspector.plots.interactive._draw import LAYOUT, plotly_go, title_layout
from inspector.plots.labels import html_label

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go


def corpus_distributions(
    summary: pd.DataFrame,
    by: str = "emotion",
    metrics: Sequence[str] | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
    points: bool | None = None,
) -> go.Figure:
    """Box plots of per-turn metrics by group, one panel per metric; hover shows each box's numbers.

    Trace order: for each metric (panel), one box per group in ``groups`` order.
    """
    go = plotly_go()
    from plotly.subplots import make_subplots

    d = corpus_data(summary, by, metrics)
    n_m = len(d.metrics)
    ncols = min(3, n_m)
    nrows = -(-n_m // ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[d.metric_label(m) for m in d.metrics],
                        vertical_spacing=0.18 / max(nrows, 1) + 0.06, horizontal_spacing=0.07)
    if points is None:
        points = max(d.counts.values()) <= 300
    palette = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
    names = [f"{html_label(g)} (n={d.counts[g]})" for g in d.groups]
    for i, metric in enumerate(d.metrics):
        for gi, g in enumerate(d.groups):
            fig.add_trace(
                go.Box(
                    y=d.values[metric][g],
                    name=names[gi],
                    legendgroup=g,
                    showlegend=i == 0,
                    marker_color=palette[gi % len(palette)],
                    boxpoints="all" if points else "outliers",
                    jitter=0.35,
                    pointpos=0,
                    marker={"size": 4, "opacity": 0.6},
                ),
                row=i // ncols + 1,
                col=i % ncols + 1,
            )
    fig.update_xaxes(showticklabels=len(d.groups) <= 4)
    fig.update_layout(
        **LAYOUT,
        title=title_layout(d.title),
        width=width or max(700, ncols * 380),
        height=height or nrows * 340 + 120,
        legend={"title": {"text": d.by.replace("_", " ")}},
        meta={"kind": "corpus", "by": d.by, "metrics": d.metrics, "groups": d.groups},
    )
    return fig
