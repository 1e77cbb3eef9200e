"""Attention figures with matplotlib: one ``[query, key]`` heatmap, every layer's and head's map, one token's row."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from inspector.plots.attention_data import head_grid_data, head_mosaic, heatmap_data, token_attention_data
from inspector.plots.static._draw import (
    BOUNDARY,
    HEATMAP_CMAP,
    colormap,
    figure_size,
    label_fontsize,
    mark_boundary,
    new_figure,
    scale_label,
    suptitle,
    token_ticks,
    weight_norm,
)

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from inspector._records.capture import Capture


def attention_heatmap(
    capture: Capture,
    layer: int | None = None,
    head: int | None = None,
    agg: str = "mean",
    max_labels: int = 60,
    *,
    figsize: tuple[float, float] | None = None,
    cmap: str = HEATMAP_CMAP,
    vmax: float | None = None,
    gamma: float = 0.5,
) -> Figure:
    """Attention of one layer and head, or of an aggregate, as a ``[query, key]`` heatmap.

    ``layer``/``head`` select; the dimensions left open are reduced with ``agg`` (one of
    :data:`inspector._aggregate.AGGREGATE_MODES`). Cells above the diagonal (keys after
    the query, zero by causality) are grey; dashed lines mark where generation starts;
    generated tokens' labels are red. Above ``max_labels`` tokens, labels are thinned
    and carry their positions. Colour follows ``weight ** gamma`` (0.5 by default, so
    the many small weights of a long row stay visible; 1 for linear); the colour bar
    is labelled in weights.
    """
    d = heatmap_data(capture, layer, head, agg)
    n = d.matrix.shape[0]
    figsize = figsize or figure_size(n, n, 0.17, 0.15, base=(6.5, 5.5), limit=(13.0, 11.5))
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    data = np.ma.masked_array(d.matrix, d.masked)
    top = vmax if vmax is not None else (float(d.matrix.max()) or 1.0)
    im = ax.imshow(data, cmap=colormap(cmap), norm=weight_norm(top, gamma), interpolation="nearest", aspect="auto")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    plot_w = figsize[0] * 0.75
    plot_h = figsize[1] * 0.7
    token_ticks(ax, "x", d.tokens, d.prompt_len, max_labels, plot_w)
    token_ticks(ax, "y", d.tokens, d.prompt_len, max_labels, plot_h)
    mark_boundary(ax, d.prompt_len, n)
    ax.set_xlabel("key: the token attended to")
    ax.set_ylabel("query: the token attending")
    ax.tick_params(length=2)
    fig.colorbar(im, ax=ax, label=scale_label(gamma), shrink=0.85, pad=0.01)
    suptitle(fig, d.title)
    return fig


def head_grid(
    capture: Capture,
    max_cells: int | None = 128,
    *,
    figsize: tuple[float, float] | None = None,
    cmap: str = HEATMAP_CMAP,
    vmax: float | None = None,
    gamma: float = 0.5,
) -> Figure:
    """Every layer (rows) and head (columns) as small heatmaps on one colour scale.

    Sequences longer than ``max_cells`` are mean-pooled into blocks so each panel
    shows at most ``max_cells`` cells per side. The panels are tiled into one image
    (a 12 x 12 grid of separate axes takes many seconds to build). ``gamma`` as in
    :func:`attention_heatmap`.
    """
    from matplotlib.collections import LineCollection

    d = head_grid_data(capture, max_cells)
    m = head_mosaic(d)
    n_layer, n_head = d.num_layers, d.num_heads
    if figsize is None:
        side = 1.6 if max(n_layer, n_head) <= 4 else (1.3 if max(n_layer, n_head) <= 6 else 1.0)
        figsize = (min(max(2.2 + n_head * side, 7.0), 16.0), min(max(1.3 + n_layer * side, 5.0), 16.0))
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    top = vmax if vmax is not None else (d.vmax or 1.0)
    image = m.image.copy()
    image[m.gaps] = np.inf  # drawn in the "over" colour (white); NaN above diagonals stays grey
    im = ax.imshow(image, cmap=colormap(cmap).with_extremes(over="white"), norm=weight_norm(top, gamma),
                   interpolation="nearest", aspect="auto")
    if 0 < d.prompt_len < len(d.tokens):
        segs = []
        for li in range(n_layer):
            for hi in range(n_head):
                r, c = m.origin(li, hi)
                b = m.boundary
                segs.append([(c + b, r + b), (c + b, r + m.cells - 0.5)])
                segs.append([(c - 0.5, r + b), (c + b, r + b)])
        ax.add_collection(LineCollection(segs, colors=BOUNDARY, linewidths=0.5))
    ax.set_xticks(m.centres(n_head), [f"head {h}" for h in range(n_head)], fontsize=8)
    ax.set_yticks(m.centres(n_layer), [f"layer {i}" for i in range(n_layer)], fontsize=8)
    ax.xaxis.tick_top()
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.colorbar(im, ax=ax, label=scale_label(gamma), shrink=0.6, pad=0.01)
    start = "the continuation starts" if capture.meta.generation.get("mode") == "forced" else "generation starts"
    sub = f"rows: query, columns: key; red lines: {start}"
    fig.suptitle(f"{d.title}\n{sub}", fontsize=10, parse_math=False)
    return fig


def token_attention(
    capture: Capture,
    position: int | None = None,
    head: int | None = None,
    max_labels: int = 80,
    *,
    figsize: tuple[float, float] | None = None,
    cmap: str = HEATMAP_CMAP,
    gamma: float = 0.5,
) -> Figure:
    """Where the token at ``position`` looks: one row per layer, one column per earlier token.

    Heads are averaged unless ``head`` picks one; negative positions count from the end;
    ``position=None`` is the first generated token.
    ``gamma`` as in :func:`attention_heatmap`.
    """
    d = token_attention_data(capture, position, head)
    n_layer, n_keys = d.matrix.shape
    figsize = figsize or figure_size(n_keys, n_layer, 0.2, 0.32, base=(7.0, 2.6), limit=(20.0, 9.0))
    figsize = (figsize[0], figsize[1] + 1.3)
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    im = ax.imshow(d.matrix, cmap=colormap(cmap), norm=weight_norm(float(d.matrix.max()) or 1.0, gamma), aspect="auto",
                   interpolation="nearest")
    token_ticks(ax, "x", d.tokens, d.prompt_len, max_labels, figsize[0] * 0.8, keep=(d.position,))
    labels = ax.get_xticklabels()
    if labels and labels[-1].get_position()[0] == d.position:
        labels[-1].set_fontweight("bold")
    ax.set_yticks(range(n_layer), [f"layer {i}" for i in range(n_layer)],
                  fontsize=label_fontsize(figsize[1] * 0.5, n_layer))
    mark_boundary(ax, d.prompt_len, n_keys, axes="x")
    ax.set_xlabel(f"key: earlier token (the last column is token {d.position} itself)")
    ax.tick_params(length=2)
    fig.colorbar(im, ax=ax, label=scale_label(gamma), pad=0.01)
    suptitle(fig, d.title, fontsize=10.5)
    return fig
