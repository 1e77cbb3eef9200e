"""The logit-attribution figure with plotly: parts x steps heatmap, or one step's largest parts as bars."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.plots.interactive._draw import LAYOUT, plotly_go, title_layout
from inspector.plots.labels import html_label
from inspector.plots.logit_attribution_data import LOWERS, RAISES, TOP_PARTS, logit_attribution_data

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from inspector._records.capture import Capture
    from inspector.analysis.direct_logit import LogitAttribution


def logit_attribution_view(
    capture: Capture,
    model: Any = None,
    attribution: LogitAttribution | None = None,
    target: str | None = None,
    step: int | None = None,
    top: int = TOP_PARTS,
    max_labels: int = 60,
    *,
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """Direct logit attribution in logits. Without ``step``: trace 0 is a heatmap, ``z`` ``[part, step]`` (``y``
    the parts in model order, ``x`` ``"i token"`` per generated step), colour centred on 0. With ``step``:
    trace 0 is a horizontal bar per part, ``x`` its contribution, largest absolute first (drawn at the top).
    ``layout.meta`` holds the kind, target and step."""
    go = plotly_go()
    d = logit_attribution_data(capture, model, attribution, target, step, top)
    meta = {"kind": "logit-attribution", "target": d.target, "step": d.step, "names": d.names}
    if d.step is not None:
        fig = go.Figure(go.Bar(
            x=d.values.astype(np.float64), y=d.names, orientation="h",
            marker={"color": [RAISES if v >= 0 else LOWERS for v in d.values]},
            hovertemplate="%{y}: %{x:.4f} logits<extra></extra>", name="logit attribution",
        ))
        fig.update_layout(**LAYOUT, title=title_layout(d.title), width=width or 760,
                          height=height or int(max(320, 28 * len(d.names) + 200)),
                          xaxis={"title": {"text": d.value_label}, "zeroline": True},
                          yaxis={"type": "category", "autorange": "reversed"}, meta=meta)
        return fig
    rows, cols = d.values.shape
    reach = float(np.abs(d.values).max()) or 1.0
    x = [html_label(label) for label in d.step_labels]
    fig = go.Figure(go.Heatmap(
        z=d.values.astype(np.float32), x=x, y=d.names, zmin=-reach, zmax=reach, zmid=0.0, colorscale="RdBu",
        reversescale=True, colorbar={"title": {"text": "logits"}},
        hovertemplate="%{y} at step %{x}: %{z:.4f} logits<extra></extra>", name="logit attribution",
    ))
    fig.update_layout(
        **LAYOUT, title=title_layout(d.title),
        width=width or int(min(max(700, 16 * cols + 300), 2400)),
        height=height or int(min(max(420, 12 * rows + 220), 3000)),
        xaxis={"type": "category", "nticks": max_labels, "tickangle": -90, "showgrid": False,
               "title": {"text": "generated step and its token"}},
        yaxis={"type": "category", "autorange": "reversed", "nticks": max_labels, "showgrid": False,
               "title": {"text": f"part of the model ({d.value_label})"}},
        meta=meta,
    )
    return fig
