"""The top-k figure with plotly: each generated step's candidates, the chosen one framed, the entropy beside."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from inspector._formatting import format_prob
from inspector.plots.interactive._draw import BOUNDARY, LAYOUT, plotly_go, title_layout
from inspector.plots.labels import html_label, thin_indices
from inspector.plots.scores_data import TOPK_TEXT_LIMIT, topk_data

if TYPE_CHECKING:  # pragma: no cover
    import plotly.graph_objects as go

    from inspector._records.capture import Capture

#: Margins (pixels) of the top-k figure: the two-line title and the "entropy per step" heading fit in ``t``.
TOPK_MARGIN = {"t": 76, "b": 60, "l": 80, "r": 40}
#: Tallest the top-k figure's colour bar grows (pixels); shorter plots get a bar as tall as the heatmap.
TOPK_COLORBAR_PX = 320


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
    go = plotly_go()
    from plotly.subplots import make_subplots

    d = topk_data(capture, k, scores)
    steps, k = d.num_steps, d.k
    show_text = steps <= TOPK_TEXT_LIMIT
    rows = [html_label(r) for r in d.row_labels]
    words = [[html_label(w) for w in row] for row in d.labels]
    cell_text = [[f"{w}<br>{format_prob(float(p))}" for w, p in zip(row, prow, strict=True)]
                 for row, prow in zip(words, d.probs, strict=True)]
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
            customdata=np.asarray([html_label(t) for t in d.chosen_tokens], dtype=object),
            hovertemplate="step %{y}: %{customdata}<br>entropy %{x:.3f} nats<extra></extra>",
            showlegend=False,
        ),
        row=1,
        col=2,
    )
    idx = thin_indices(steps, max_labels)
    # Fixed ranges: autorange would pad for the 34-pixel frames, leaving empty bands above and below.
    fig.update_yaxes(tickmode="array", tickvals=idx, ticktext=[rows[i] for i in idx], range=[steps - 0.5, -0.5],
                     autorange=False, title_text="generated step: chosen token", automargin=True, row=1, col=1)
    fig.update_xaxes(tickmode="array", tickvals=list(range(1, k + 1)), title_text="rank (red frame: chosen)",
                     range=[0.5, k + 0.5], autorange=False, row=1, col=1)
    fig.update_xaxes(title_text="nats", row=1, col=2)
    title = title_layout(d.title)
    # Pinned to the top of the figure, so the heatmap starts right under it.
    title.update({"y": 1.0, "yref": "container", "yanchor": "top", "pad": {"t": 12}})
    fig.update_layout(
        **LAYOUT,
        title=title,
        margin=dict(TOPK_MARGIN),
        width=width or max(760, 92 * k + 420),
        height=height,
        bargap=0.25,
        meta={"kind": "topk", "scores": d.scores},
    )
    return fig
