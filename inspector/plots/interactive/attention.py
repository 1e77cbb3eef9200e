"""Attention figures with plotly: a zoomable ``[query, key]`` heatmap, every layer's and head's map, one token's row."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.plots.attention_data import head_grid_data, head_mosaic, heatmap_data, token_attention_data
from inspector.plots.interactive._draw import (
    BOUNDARY,
    HEATMAP_SCALE,
    LAYOUT,
    boundary_shapes,
    colorbar_spec,
    colorscale_gamma,
    label_margin,
    masked_nan,
    plotly_go,
    title_layout,
)
from inspector.plots.labels import position_labels

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from inspector._records.capture import Capture


def attention_heatmap(
    capture: Capture,
    layer: int | None = None,
    head: int | None = None,
    agg: str = "mean",
    max_labels: int = 60,
    *,
    width: int | None = None,
    height: int | None = None,
    colorscale: str = HEATMAP_SCALE,
    vmax: float | None = None,
    gamma: float = 0.5,
) -> go.Figure:
    """Attention of one layer and head, or of an aggregate, as a zoomable ``[query, key]`` heatmap.

    ``z`` holds the matrix (float32; cells above the diagonal, zero by causality, are
    gaps). At most about ``max_labels`` token labels show per axis; zooming shows more.
    Colour follows ``weight ** gamma`` (see :func:`colorscale_gamma`); 1 is linear.
    """
    go = plotly_go()
    d = heatmap_data(capture, layer, head, agg)
    n = d.matrix.shape[0]
    labels = position_labels(d.tokens)
    side = int(min(max(520, 14 * n + 220), 1000))
    top = vmax if vmax is not None else (float(d.matrix.max()) or 1.0)
    fig = go.Figure(
        go.Heatmap(
            z=masked_nan(d.matrix, d.masked),
            x=labels,
            y=labels,
            zmin=0.0,
            zmax=top,
            colorscale=colorscale_gamma(colorscale, gamma),
            hoverongaps=False,
            colorbar=colorbar_spec(gamma),
            hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>",
            name=d.description,
        )
    )
    axis = {"type": "category", "nticks": max_labels, "tickfont": {"size": 10}, "showgrid": False}
    fig.update_layout(
        **LAYOUT,
        title=title_layout(d.title),
        width=width or side + 120,
        height=height or side + 60,
        xaxis={**axis, "title": {"text": "key: the token attended to"}, "tickangle": -90},
        yaxis={**axis, "title": {"text": "query: the token attending"}, "autorange": "reversed"},
        shapes=boundary_shapes(d.prompt_len, n),
        meta={"kind": "heatmap", "prompt_len": d.prompt_len},
    )
    return fig


def head_grid(
    capture: Capture,
    max_cells: int | None = 64,
    *,
    width: int | None = None,
    height: int | None = None,
    colorscale: str = HEATMAP_SCALE,
    vmax: float | None = None,
    gamma: float = 0.5,
) -> go.Figure:
    """Every layer (rows) and head (columns) as small heatmaps on one colour scale.

    The panels are tiled into one heatmap trace (fast to draw, even 12 x 12); ``layout.meta``
    gives ``cells`` and ``gap``, so panel ``(l, h)`` is ``z[l*(cells+gap):][:cells, h*(cells+gap):][:, :cells]``.
    Sequences longer than ``max_cells`` are mean-pooled into blocks; hover names the
    layer, head and the positions a cell covers. Zoom in to read one head.
    """
    go = plotly_go()
    d = head_grid_data(capture, max_cells)
    m = head_mosaic(d)
    n_layer, n_head = d.num_layers, d.num_heads
    top = vmax if vmax is not None else (d.vmax or 1.0)
    fig = go.Figure(
        go.Heatmap(
            z=m.image,
            x=m.col_labels,
            y=m.row_labels,
            zmin=0.0,
            zmax=top,
            colorscale=colorscale_gamma(colorscale, gamma),
            hoverongaps=False,
            colorbar=colorbar_spec(gamma),
            hovertemplate="%{y}<br>%{x}<br>weight %{z:.4f}<extra></extra>",
            name="heads",
        )
    )
    shapes: list[dict[str, Any]] = []
    if 0 < d.prompt_len < len(d.tokens):
        # One path for every panel's prompt/generated boundary: 2 x 144 separate shapes took
        # plotly.py ~0.3 s to validate and the browser ~0.15 s more to draw.
        b, segments = m.boundary, []
        for li in range(n_layer):
            for hi in range(n_head):
                r, c = m.origin(li, hi)
                segments.append(f"M{c + b},{r + b}L{c + b},{r + m.cells - 0.5}M{c - 0.5},{r + b}L{c + b},{r + b}")
        shapes.append({"type": "path", "path": "".join(segments), "xref": "x", "yref": "y",
                       "line": {"color": BOUNDARY, "width": 0.8}})
    panel = 120 if max(n_layer, n_head) <= 6 else 80
    row_names = [f"layer {i}" for i in range(n_layer)]
    fig.update_layout(
        **LAYOUT,
        title=title_layout(d.title),
        width=width or n_head * panel + 260,
        height=height or n_layer * panel + 160,
        # Room for the longest row label ("layer 11") set on the figure itself: Streamlit's theme
        # (the dashboard) brings margin l=0 and cut the labels off; automargin widens it for larger fonts.
        margin={"l": label_margin(row_names), "r": 20, "t": 100, "b": 20},
        xaxis={"type": "category", "tickmode": "array", "tickvals": [m.col_labels[i] for i in m.centres(n_head)],
               "ticktext": [f"head {h}" for h in range(n_head)], "side": "top", "showgrid": False,
               "automargin": True},
        yaxis={"type": "category", "tickmode": "array", "tickvals": [m.row_labels[i] for i in m.centres(n_layer)],
               "ticktext": row_names, "autorange": "reversed", "showgrid": False, "automargin": True},
        shapes=shapes,
        meta={"kind": "heads", "factor": d.factor, "cells": m.cells, "gap": m.gap, "prompt_len": d.prompt_len},
    )
    return fig


def token_attention(
    capture: Capture,
    position: int | None = None,
    head: int | None = None,
    max_labels: int = 80,
    *,
    width: int | None = None,
    height: int | None = None,
    colorscale: str = HEATMAP_SCALE,
    gamma: float = 0.5,
) -> go.Figure:
    """Where the token at ``position`` looks: ``z`` is ``[layer, key]`` for keys ``0..position``.

    Heads are averaged unless ``head`` picks one; ``position=None`` is the first generated token;
    ``gamma`` as in :func:`attention_heatmap`.
    """
    go = plotly_go()
    d = token_attention_data(capture, position, head)
    n_layer, n_keys = d.matrix.shape
    labels = position_labels(d.tokens)
    fig = go.Figure(
        go.Heatmap(
            z=d.matrix.astype(np.float32),
            x=labels,
            y=[f"layer {i}" for i in range(n_layer)],
            zmin=0.0,
            zmax=float(d.matrix.max()) or 1.0,
            colorscale=colorscale_gamma(colorscale, gamma),
            colorbar=colorbar_spec(gamma),
            hovertemplate="%{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>",
            name=d.description,
        )
    )
    fig.update_layout(
        **LAYOUT,
        title=title_layout(d.title),
        width=width or int(min(max(700, 16 * n_keys + 260), 1600)),
        height=height or int(min(max(300, 28 * n_layer + 220), 900)),
        xaxis={"type": "category", "nticks": max_labels, "tickangle": -90, "title": {"text": "key: earlier token"},
               "showgrid": False},
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
        shapes=boundary_shapes(d.prompt_len, n_keys, axes="x"),
        meta={"kind": "token", "position": d.position},
    )
    return fig
