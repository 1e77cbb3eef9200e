"""Interactive figures (plotly) of captures and run summaries: hover, zoom, pan.

Every builder returns a :class:`plotly.graph_objects.Figure` holding the same
numbers as its :mod:`inspector.plots.static` counterpart (both take them from
:mod:`inspector.plots._common`). Token axes are category axes with one unique
``"position token"`` label per token: plotly thins the labels to fit and shows
more of them as you zoom in; hovering a cell names both tokens and the value.
Save with :func:`inspector.plots.export.export_figure` (``.html`` embeds plotly.js).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from inspector.plots import _common as C

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go

    from inspector.records import Capture

BOUNDARY = "#e41a1c"
HEATMAP_SCALE = "Viridis"
#: Margins (pixels) of the top-k figure: the two-line title and the "entropy per step" heading fit in ``t``.
TOPK_MARGIN = {"t": 76, "b": 60, "l": 80, "r": 40}
#: Tallest the top-k figure's colour bar grows (pixels); shorter plots get a bar as tall as the heatmap.
TOPK_COLORBAR_PX = 320
_LAYOUT = {"template": "plotly_white", "font": {"size": 12}}


def _go():
    import plotly.graph_objects as go

    return go


def _masked(matrix: np.ndarray, masked: np.ndarray) -> np.ndarray:
    out = matrix.astype(np.float32, copy=True)
    out[masked] = np.nan
    return out


def _boundary_shapes(prompt_len: int, n: int, axes: str = "xy") -> list[dict]:
    """Dashed lines where generation starts, in category-index coordinates.

    On a square map they stop at the diagonal (framing the prompt block); with
    ``axes="x"`` one full-height line.
    """
    if not 0 < prompt_len < n:
        return []
    pos = prompt_len - 0.5
    line = {"color": BOUNDARY, "width": 1.2, "dash": "dash"}
    if axes == "x":
        return [{"type": "line", "yref": "y domain", "x0": pos, "x1": pos, "y0": 0, "y1": 1, "line": line}]
    return [
        {"type": "line", "x0": pos, "x1": pos, "y0": pos, "y1": n - 0.5, "line": line},
        {"type": "line", "x0": -0.5, "x1": pos, "y0": pos, "y1": pos, "line": line},
    ]


def _title(text: str) -> dict:
    lines = [C.html_label(line) for line in text.split("\n")]
    body = lines[0] + "".join(f"<br><span style='font-size:12px'>{line}</span>" for line in lines[1:])
    return {"text": body, "x": 0.01, "xanchor": "left", "font": {"size": 14}}


def _label_margin(labels: Sequence[str], font_px: int = 12, pad: int = 16) -> int:
    """A left margin (pixels) wide enough for the longest of ``labels`` at ``font_px``, at least 60."""
    longest = max((C.char_width(t) for t in labels), default=0)
    return max(60, int(longest * 0.62 * font_px) + pad)


def colorscale_gamma(name: str, gamma: float, stops: int = 21) -> list[list]:
    """A named plotly colour scale bent so a value's colour follows ``(value / max) ** gamma``.

    The data keep their true values (hover and colour bar show weights); only where
    the colours fall changes, as matplotlib's ``PowerNorm`` does.
    """
    from plotly.colors import sample_colorscale

    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    ts = [i / (stops - 1) for i in range(stops)]
    colours = sample_colorscale(name, ts)
    return [[t ** (1.0 / gamma), c] for t, c in zip(ts, colours)]


def _colorbar(gamma: float) -> dict:
    text = "attention" if gamma == 1 else f"attention<br>(colour ~ w^{gamma:g})"
    return {"title": {"text": text}}


# --------------------------------------------------------------------------- 1. heatmap
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
    go = _go()
    d = C.heatmap_data(capture, layer, head, agg)
    n = d.matrix.shape[0]
    labels = C.position_labels(d.tokens)
    side = int(min(max(520, 14 * n + 220), 1000))
    top = vmax if vmax is not None else (float(d.matrix.max()) or 1.0)
    fig = go.Figure(
        go.Heatmap(
            z=_masked(d.matrix, d.masked),
            x=labels,
            y=labels,
            zmin=0.0,
            zmax=top,
            colorscale=colorscale_gamma(colorscale, gamma),
            hoverongaps=False,
            colorbar=_colorbar(gamma),
            hovertemplate="query %{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>",
            name=d.description,
        )
    )
    axis = {"type": "category", "nticks": max_labels, "tickfont": {"size": 10}, "showgrid": False}
    fig.update_layout(
        **_LAYOUT,
        title=_title(d.title),
        width=width or side + 120,
        height=height or side + 60,
        xaxis={**axis, "title": {"text": "key: the token attended to"}, "tickangle": -90},
        yaxis={**axis, "title": {"text": "query: the token attending"}, "autorange": "reversed"},
        shapes=_boundary_shapes(d.prompt_len, n),
        meta={"kind": "heatmap", "prompt_len": d.prompt_len},
    )
    return fig


# --------------------------------------------------------------------------- 2. head grid
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
    go = _go()
    d = C.head_grid_data(capture, max_cells)
    m = C.head_mosaic(d)
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
            colorbar=_colorbar(gamma),
            hovertemplate="%{y}<br>%{x}<br>weight %{z:.4f}<extra></extra>",
            name="heads",
        )
    )
    shapes: list[dict] = []
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
        **_LAYOUT,
        title=_title(d.title),
        width=width or n_head * panel + 260,
        height=height or n_layer * panel + 160,
        # Room for the longest row label ("layer 11") set on the figure itself: Streamlit's theme
        # (the dashboard) brings margin l=0 and cut the labels off; automargin widens it for larger fonts.
        margin={"l": _label_margin(row_names), "r": 20, "t": 100, "b": 20},
        xaxis={"type": "category", "tickmode": "array", "tickvals": [m.col_labels[i] for i in m.centres(n_head)],
               "ticktext": [f"head {h}" for h in range(n_head)], "side": "top", "showgrid": False,
               "automargin": True},
        yaxis={"type": "category", "tickmode": "array", "tickvals": [m.row_labels[i] for i in m.centres(n_layer)],
               "ticktext": row_names, "autorange": "reversed", "showgrid": False, "automargin": True},
        shapes=shapes,
        meta={"kind": "heads", "factor": d.factor, "cells": m.cells, "gap": m.gap, "prompt_len": d.prompt_len},
    )
    return fig


# --------------------------------------------------------------------------- 3. top-k
def topk_steps(
    capture: Capture,
    k: int | None = None,
    scores: str = "raw",
    max_labels: int = 80,
    *,
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """Per generated step (rows): top-k candidates and probabilities, chosen framed; entropy beside.

    Trace 0 is the probability heatmap ``[step, k]`` (candidate words in ``text``),
    trace 1 marks the chosen cells, trace 2 is the entropy per step.
    """
    go = _go()
    from plotly.subplots import make_subplots

    d = C.topk_data(capture, k, scores)
    steps, k = d.num_steps, d.k
    show_text = steps <= C.TOPK_TEXT_LIMIT
    rows = [C.html_label(r) for r in d.row_labels]
    words = [[C.html_label(w) for w in row] for row in d.labels]
    cell_text = [[f"{w}<br>{C.format_prob(float(p))}" for w, p in zip(row, prow)] for row, prow in zip(words, d.probs)]
    fig = make_subplots(rows=1, cols=2, shared_yaxes=True, column_widths=[0.8, 0.2], horizontal_spacing=0.02,
                        subplot_titles=("", "entropy per step"))
    fig.update_annotations(font_size=12)  # the subplot title, in the top margin above the bars
    row_h = 44 if show_text else 14
    height = height or max(360, row_h * steps + TOPK_MARGIN["t"] + TOPK_MARGIN["b"])
    plot_h = max(height - TOPK_MARGIN["t"] - TOPK_MARGIN["b"], 1)
    # The colour bar starts level with the heatmap's first row, at most TOPK_COLORBAR_PX tall:
    # centred on a tall figure it would sit far below the first screenful.
    colorbar = {"title": {"text": "probability", "side": "top"}, "y": 1.0, "yref": "paper", "yanchor": "top",
                "len": min(1.0, TOPK_COLORBAR_PX / plot_h), "lenmode": "fraction", "thickness": 16}
    fig.add_trace(
        go.Heatmap(
            z=d.probs.astype(np.float32),
            x=list(range(1, k + 1)),
            y=list(range(steps)),
            text=cell_text,
            customdata=d.logprobs.astype(np.float32),
            texttemplate="%{text}" if show_text else None,
            textfont={"size": 10},
            zmin=0.0,
            zmax=1.0,
            colorscale="Blues",
            colorbar=colorbar,
            hovertemplate="step %{y}, rank %{x}: %{text}<br>p=%{z:.4g} (log p %{customdata:.3f})<extra></extra>",
            name="candidates",
        ),
        row=1,
        col=1,
    )
    hit = d.chosen_col >= 0
    fig.add_trace(
        go.Scatter(
            x=(d.chosen_col[hit] + 1).tolist(),
            y=np.flatnonzero(hit).tolist(),
            mode="markers",
            marker={"symbol": "square-open", "size": 34 if show_text else 8, "color": BOUNDARY, "line": {"width": 2}},
            name="chosen",
            hoverinfo="skip",
            showlegend=False,
        ),
        row=1,
        col=1,
    )
    fig.add_trace(
        go.Bar(
            x=d.entropy.astype(np.float32),
            y=list(range(steps)),
            orientation="h",
            marker_color="#6a51a3",
            name="entropy",
            customdata=np.asarray([C.html_label(t) for t in d.chosen_tokens], dtype=object),
            hovertemplate="step %{y}: %{customdata}<br>entropy %{x:.3f} nats<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    idx = C.thin_indices(steps, max_labels)
    # Fixed ranges: autorange would pad for the 34-pixel frames, leaving empty bands above and below.
    fig.update_yaxes(tickmode="array", tickvals=idx, ticktext=[rows[i] for i in idx], range=[steps - 0.5, -0.5],
                     autorange=False, title_text="generated step: chosen token", automargin=True, row=1, col=1)
    fig.update_xaxes(tickmode="array", tickvals=list(range(1, k + 1)), title_text="rank (red frame: chosen)",
                     range=[0.5, k + 0.5], autorange=False, row=1, col=1)
    fig.update_xaxes(title_text="nats", row=1, col=2)
    title = _title(d.title)
    # Pinned to the top of the figure, so the heatmap starts right under it.
    title.update({"y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 12}})
    fig.update_layout(
        **_LAYOUT,
        title=title,
        margin=dict(TOPK_MARGIN),
        width=width or max(760, 92 * k + 420),
        height=height,
        bargap=0.25,
        meta={"kind": "topk", "scores": d.scores},
    )
    return fig


# --------------------------------------------------------------------------- 4. text
def text_html(capture: Capture, color_by: str = "prob", alternatives: int = 5) -> str:
    """The text as a self-contained HTML page; hover a generated token for its top alternatives.

    ``color_by`` is ``"prob"`` (chosen-token probability) or ``"entropy"``. No scripts:
    the tooltips are CSS, so the page works offline and inside a sandboxed frame.
    """
    return C.text_document(C.text_data(capture, color_by, alternatives=alternatives), tooltips=True)


# --------------------------------------------------------------------------- 5. token strip
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
    go = _go()
    d = C.token_attention_data(capture, position, head)
    n_layer, n_keys = d.matrix.shape
    labels = C.position_labels(d.tokens)
    fig = go.Figure(
        go.Heatmap(
            z=d.matrix.astype(np.float32),
            x=labels,
            y=[f"layer {i}" for i in range(n_layer)],
            zmin=0.0,
            zmax=float(d.matrix.max()) or 1.0,
            colorscale=colorscale_gamma(colorscale, gamma),
            colorbar=_colorbar(gamma),
            hovertemplate="%{y}<br>key %{x}<br>weight %{z:.4f}<extra></extra>",
            name=d.description,
        )
    )
    fig.update_layout(
        **_LAYOUT,
        title=_title(d.title),
        width=width or int(min(max(700, 16 * n_keys + 260), 1600)),
        height=height or int(min(max(300, 28 * n_layer + 220), 900)),
        xaxis={"type": "category", "nticks": max_labels, "tickangle": -90, "title": {"text": "key: earlier token"},
               "showgrid": False},
        yaxis={"type": "category", "autorange": "reversed", "showgrid": False},
        shapes=_boundary_shapes(d.prompt_len, n_keys, axes="x"),
        meta={"kind": "token", "position": d.position},
    )
    return fig


# --------------------------------------------------------------------------- 6. corpus
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
    go = _go()
    from plotly.subplots import make_subplots

    d = C.corpus_data(summary, by, metrics)
    n_m = len(d.metrics)
    ncols = min(3, n_m)
    nrows = -(-n_m // ncols)
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[d.metric_label(m) for m in d.metrics],
                        vertical_spacing=0.18 / max(nrows, 1) + 0.06, horizontal_spacing=0.07)
    if points is None:
        points = max(d.counts.values()) <= 300
    palette = ["#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#e6ab02", "#a6761d", "#666666"]
    names = [f"{C.html_label(g)} (n={d.counts[g]})" for g in d.groups]
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
        **_LAYOUT,
        title=_title(d.title),
        width=width or max(700, ncols * 380),
        height=height or nrows * 340 + 120,
        legend={"title": {"text": d.by.replace("_", " ")}},
        meta={"kind": "corpus", "by": d.by, "metrics": d.metrics, "groups": d.groups},
    )
    return fig
