"""Analysis figures with plotly: logit-lens grid, attention rollout, head statistics, capture comparison."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.plots.analysis_data import (
    CompareData,
    beams_data,
    compare_data,
    head_stats_data,
    lens_data,
    rollout_data,
)
from inspector.plots.interactive._draw import (
    BOUNDARY,
    HEATMAP_SCALE,
    LAYOUT,
    boundary_shapes,
    colorscale_gamma,
    masked_nan,
    plotly_go,
    title_layout,
)
from inspector.plots.labels import html_label, position_labels

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    import plotly.graph_objects as go

    from inspector._lens_math import LensResult
    from inspector._records.capture import Capture
    from inspector.analysis.head_stats import HeadStats


def lens_grid(
    capture: Capture,
    model: Any = None,
    lens: LensResult | None = None,
    k: int = 5,
    layers: Sequence[int] | None = None,
    positions: Sequence[int] | None = None,
    max_labels: int = 60,
    *,
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """Logit lens, layer (rows, the output at the top) x position; trace 0's ``z`` is the top-1
    probability ``[row, col]``, its ``text`` the top token; hover adds the produced token's rank."""
    go = plotly_go()
    d = lens_data(capture, model, lens, k, layers, positions)
    rows, cols = d.probs.shape
    words = [[html_label(w) for w in row] for row in d.words]
    ranks = np.where(d.target_rank > 0, d.target_rank, -1)
    custom = np.dstack([ranks.astype(np.float64), np.nan_to_num(d.target_prob.astype(np.float64), nan=-1.0)])
    x = [f"{p} {lab.split(' ', 1)[1]}" for p, lab in zip(d.positions, position_labels(d.tokens), strict=True)]
    fig = go.Figure(go.Heatmap(
        z=d.probs.astype(np.float32), x=x, y=d.row_labels, text=words,
        texttemplate="%{text}" if d.show_text else None, textfont={"size": 9},
        customdata=custom, zmin=0.0, zmax=1.0, colorscale="Blues",
        colorbar={"title": {"text": "top-1<br>probability"}},
        hovertemplate="%{y}, position %{x}<br>top: %{text} (p=%{z:.3f})<br>"
                      "produced token: rank %{customdata[0]}, p=%{customdata[1]:.3g}<extra></extra>",
        name="lens",
    ))
    start = d.positions[0]
    fig.update_layout(
        **LAYOUT,
        title=title_layout(d.title),
        width=width or int(min(max(700, (54 if d.show_text else 12) * cols + 260), 2400)),
        height=height or int(min(max(320, 30 * rows + 200), 1000)),
        xaxis={"type": "category", "nticks": max_labels, "tickangle": -90, "showgrid": False,
               "title": {"text": "input token at the position (cell: top next-token prediction)"}},
        yaxis={"type": "category", "showgrid": False},
        shapes=boundary_shapes(d.prompt_len - start, cols, axes="x"),
        meta={"kind": "lens", "entries": d.entries, "positions": d.positions},
    )
    return fig


def rollout_heatmap(
    capture: Capture,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    residual_weight: float = 0.5,
    norm_weighted: bool = False,
    max_labels: int = 60,
    *,
    width: int | None = None,
    height: int | None = None,
    gamma: float = 0.5,
) -> go.Figure:
    """Attention rollout: trace 0's ``z`` is ``[query, key]`` (NaN above the diagonal)."""
    go = plotly_go()
    d = rollout_data(capture, layers, heads, residual_weight, norm_weighted)
    n = d.matrix.shape[0]
    labels = position_labels(d.tokens)
    side = int(min(max(420, 14 * n), 1000))
    fig = go.Figure(go.Heatmap(
        z=masked_nan(d.matrix, d.masked), x=labels, y=labels, zmin=0.0, zmax=float(d.matrix.max()) or 1.0,
        colorscale=colorscale_gamma(HEATMAP_SCALE, gamma), hoverongaps=False,
        colorbar={"title": {"text": "rollout" if gamma == 1 else f"rollout<br>(colour ~ w^{gamma:g})"}},
        hovertemplate="position %{y}<br>source %{x}<br>share %{z:.4f}<extra></extra>", name=d.description,
    ))
    axis = {"type": "category", "nticks": max_labels, "tickfont": {"size": 10}, "showgrid": False}
    fig.update_layout(
        **LAYOUT, title=title_layout(d.title), width=width or side + 120, height=height or side + 60,
        xaxis={**axis, "title": {"text": "source token (key)"}, "tickangle": -90},
        yaxis={**axis, "title": {"text": "position (query)"}, "autorange": "reversed"},
        shapes=boundary_shapes(d.prompt_len, n), meta={"kind": "rollout", "prompt_len": d.prompt_len},
    )
    return fig


#: Head-statistics figure, pixels: a panel's height, its title's band above it, its x axis (ticks and title)
#: below it, the colour bar's thickness and its tick labels' band (see :func:`head_stats_heatmap`).
HS_PANEL_PX, HS_TITLE_PX, HS_AXIS_PX, HS_BAR_PX, HS_BAR_LABELS_PX = 240, 34, 46, 10, 22


def head_stats_heatmap(
    capture: Capture | HeadStats | pd.DataFrame,
    rows: str = "all",
    statistics: Sequence[str] | None = None,
    *,
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """One ``[layer, head]`` heatmap per statistic (trace ``i`` is ``d.names[i]``), each with its own scale."""
    go = plotly_go()
    from plotly.subplots import make_subplots

    d = head_stats_data(capture, rows, statistics)
    n = len(d.names)
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    # Pixel geometry below a panel: its x axis (ticks, title), then its colour bar, lying flat under the
    # panel and exactly as wide, and the bar's tick labels. The page stretches the width, never the height,
    # so every vertical gap is set in pixels and every horizontal extent in fractions of a panel: no bar
    # or label reaches into another panel at any width. The panels share their layer axis (labelled in the
    # first column only), so nothing stands between two panels.
    top, bottom = 110, HS_AXIS_PX + HS_BAR_PX + HS_BAR_LABELS_PX + 10
    gap = HS_AXIS_PX + HS_BAR_PX + HS_BAR_LABELS_PX + HS_TITLE_PX
    height = height or nrows * (HS_PANEL_PX + gap) - gap + top + bottom
    plot_px = height - top - bottom
    if plot_px - (nrows - 1) * gap < 60 * nrows:
        raise ValueError(f"height {height} px is too small for {nrows} rows of head-statistics panels; give at "
                         f"least {(nrows - 1) * gap + 60 * nrows + top + bottom} px")
    fig = make_subplots(rows=nrows, cols=ncols, subplot_titles=[_two_lines(t) for t in d.labels], shared_yaxes=True,
                        horizontal_spacing=0.05, vertical_spacing=gap / plot_px if nrows > 1 else 0.0)
    for i, (name, mat) in enumerate(zip(d.names, d.panels, strict=True)):
        r, c = divmod(i, ncols)
        sub = fig.get_subplot(r + 1, c + 1)
        (x0, x1), y0 = sub.xaxis.domain, sub.yaxis.domain[0]
        fig.add_trace(go.Heatmap(
            z=mat.astype(np.float32), x=list(range(d.num_heads)), y=list(range(d.num_layers)), colorscale="Magma",
            colorbar={"orientation": "h", "x": (x0 + x1) / 2, "xanchor": "center", "len": x1 - x0,
                      "lenmode": "fraction", "y": y0 - HS_AXIS_PX / plot_px, "yanchor": "top",
                      "thickness": HS_BAR_PX, "xpad": 0, "ypad": 0, "ticklabeloverflow": "hide past domain",
                      "nticks": 4},
            hovertemplate=f"layer %{{y}}, head %{{x}}<br>{html_label(name)} %{{z:.4f}}<extra></extra>", name=name,
        ), row=r + 1, col=c + 1)
    fig.update_xaxes(title_text="head", title_standoff=4, dtick=1 if d.num_heads <= 16 else None)
    fig.update_yaxes(autorange="reversed", dtick=1 if d.num_layers <= 16 else None)
    fig.update_yaxes(title_text="layer", col=1)
    fig.update_annotations(font_size=12)  # the panel titles
    fig.update_layout(
        **LAYOUT, title=title_layout(d.title), width=width or 300 * ncols + 120, height=height,
        margin={"t": top, "b": bottom}, meta={"kind": "head-stats", "statistics": d.names},
    )
    return fig


def _two_lines(label: str) -> str:
    """``label`` broken at the space nearest its middle when longer than 12 characters (narrow panels)."""
    spaces = [i for i, ch in enumerate(label) if ch == " "]
    if len(label) <= 12 or not spaces:
        return label
    cut = min(spaces, key=lambda i: abs(i - len(label) / 2))
    return f"{label[:cut]}<br>{label[cut + 1:]}"


def compare_view(
    capture: Capture,
    other: Capture,
    align: str = "auto",
    kl: str = "auto",
    layer: int | None = None,
    head: int | None = None,
    max_labels: int = 60,
    distributions: str = "processed",
    *,
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """A against B: trace 0 is the per-step KL (``x`` steps of A), trace 1 the top-1 agreement
    (1 agrees, 0 differs), trace 2 (when both kept attention) the difference heatmap A - B.
    ``layout.meta.first_divergence`` is the step in A where the generations part (``None``: never)."""
    data = compare_data(capture, other, align, kl, layer, head, distributions)
    return _comparison_figure(data, max_labels, width, height)


def beams_view(
    beams: Sequence[Capture],
    pair: Sequence[int] = (0, 1),
    kl: str = "auto",
    layer: int | None = None,
    head: int | None = None,
    max_labels: int = 60,
    distributions: str = "processed",
    *,
    width: int | None = None,
    height: int | None = None,
) -> go.Figure:
    """Two returned sequences of one search, ``beams[i]`` against ``beams[j]`` for ``pair=(i, j)``: the
    traces of :func:`compare_view`, over the steps whose context the beams share (see
    :func:`inspector.plots.analysis_data.beams_data`); ``layout.meta.names`` names the two beams."""
    return _comparison_figure(beams_data(beams, pair, kl, layer, head, distributions), max_labels, width, height)


def _comparison_figure(d: CompareData, max_labels: int, width: int | None, height: int | None) -> go.Figure:
    go = plotly_go()
    from plotly.subplots import make_subplots

    a, b = d.names
    has_diff = d.diff is not None and d.diff.size > 0
    titles = [f"KL({a}||{b}) of the {d.distributions} distributions, {d.kl_method}; top-1 agreement"]
    if has_diff:
        titles.append(f"attention {a} - {b} over the shared tokens ({d.diff_description})")
    fig = make_subplots(rows=1, cols=2 if has_diff else 1, subplot_titles=titles, horizontal_spacing=0.12,
                        specs=[[{"secondary_y": True}, {}] if has_diff else [{"secondary_y": True}]])
    pairs = np.asarray([f"{html_label(x)} / {html_label(y)}" for x, y in zip(d.tokens_a, d.tokens_b, strict=True)],
                       dtype=object)
    fig.add_trace(go.Scatter(x=d.steps.tolist(), y=d.kl.astype(np.float32), mode="lines+markers",
                             name=f"KL({a}||{b})", customdata=pairs, line={"color": "#3a6ea5"},
                             hovertemplate="step %{x}: %{customdata}<br>KL %{y:.3g} nats<extra></extra>"),
                  row=1, col=1, secondary_y=False)
    fig.add_trace(go.Scatter(x=d.steps.tolist(), y=d.agree.astype(np.int8), mode="markers", name="top-1 agrees",
                             marker={"color": np.where(d.agree, "#1b9e77", BOUNDARY).tolist(), "symbol": "line-ns-open",
                                     "size": 10}, hovertemplate="step %{x}: top-1 agrees=%{y}<extra></extra>"),
                  row=1, col=1, secondary_y=True)
    fig.update_yaxes(title_text="KL (nats)", row=1, col=1, secondary_y=False)
    fig.update_yaxes(title_text="top-1 agrees", range=[-0.2, 1.2], tickvals=[0, 1], row=1, col=1, secondary_y=True)
    fig.update_xaxes(title_text=f"step (in {a})", row=1, col=1)
    first = None if d.first_divergence is None else int(d.steps[d.first_divergence])
    if first is not None and d.first_divergence is not None:
        i = d.first_divergence
        note = html_label(f"first divergence: step {first}, {d.tokens_a[i]} / {d.tokens_b[i]}")
        fig.add_vline(x=first, line={"color": BOUNDARY, "dash": "dash", "width": 1.2}, row=1, col=1,
                      annotation_text=note, annotation_font_size=10)
    if has_diff:
        assert d.diff is not None
        n = d.diff.shape[0]
        labels = position_labels(d.diff_tokens)
        lim = float(np.abs(d.diff).max()) or 1.0
        fig.add_trace(go.Heatmap(
            z=masked_nan(d.diff, np.triu(np.ones((n, n), dtype=bool), 1)), x=labels, y=labels, zmin=-lim, zmax=lim,
            colorscale="RdBu", reversescale=True, hoverongaps=False, colorbar={"title": {"text": f"{a} - {b}"}},
            hovertemplate=f"query %{{y}}<br>key %{{x}}<br>{a} - {b} %{{z:+.3g}}<extra></extra>",
            name=f"attention {a} - {b}",
        ), row=1, col=2)
        fig.update_xaxes(type="category", nticks=max_labels, tickangle=-90, row=1, col=2)
        fig.update_yaxes(type="category", nticks=max_labels, autorange="reversed", row=1, col=2)
    fig.update_layout(
        **LAYOUT, title=title_layout(d.title), width=width or (1300 if has_diff else 800), height=height or 560,
        margin={"t": 110}, legend={"orientation": "h", "y": -0.2},
        meta={"kind": "compare", "first_divergence": first, "kl_method": d.kl_method, "align": d.align,
              "names": list(d.names), "distributions": d.distributions, "notes": list(d.notes)},
    )
    return fig
