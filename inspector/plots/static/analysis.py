"""Analysis figures with matplotlib: logit-lens grid, attention rollout, head statistics, capture comparison."""

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
from inspector.plots.labels import display_token, thin_indices
from inspector.plots.static._draw import (
    BOUNDARY,
    HEATMAP_CMAP,
    colormap,
    figure_size,
    label_fontsize,
    mark_boundary,
    new_figure,
    suptitle,
    token_ticks,
    weight_norm,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure

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
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Logit lens, layer (rows, the output at the top) x position: the top token written in each cell,
    its colour the probability. Columns are labelled with the input token at that position;
    a cell shows what the model would say next from that layer's state."""
    d = lens_data(capture, model, lens, k, layers, positions)
    rows, cols = d.probs.shape
    figsize = figsize or figure_size(cols, rows, 0.62 if d.show_text else 0.16, 0.42, base=(7.0, 4.0),
                                     limit=(24.0, 14.0))
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    im = ax.imshow(d.probs, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest",
                   origin="lower")
    if d.show_text:
        size = label_fontsize(figsize[0], cols, largest=7.5, smallest=4.0)
        for r in range(rows):
            for c in range(cols):
                word = d.words[r][c]
                word = word if len(word) <= 8 else word[:7] + "…"
                ink = "white" if d.probs[r, c] > 0.55 else "#111111"
                ax.text(c, r, word, ha="center", va="center", fontsize=size, color=ink, parse_math=False)
    ax.set_yticks(range(rows), d.row_labels, fontsize=8)
    token_ticks(ax, "x", d.tokens, d.prompt_len - d.positions[0], max_labels, figsize[0])
    if 0 < d.prompt_len - d.positions[0] < cols:
        mark_boundary(ax, d.prompt_len - d.positions[0], cols, axes="x")
    ax.set_xlabel("input token at the position (cell: top next-token prediction)")
    fig.colorbar(im, ax=ax, label="probability of the top token", shrink=0.8)
    suptitle(fig, d.title, fontsize=10.5)
    return fig


def rollout_heatmap(
    capture: Capture,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    residual_weight: float = 0.5,
    norm_weighted: bool = False,
    max_labels: int = 60,
    *,
    figsize: tuple[float, float] | None = None,
    gamma: float = 0.5,
) -> Figure:
    """Attention rollout ``[query, key]``: how much each earlier token fed each position through the layers."""
    d = rollout_data(capture, layers, heads, residual_weight, norm_weighted)
    n = d.matrix.shape[0]
    figsize = figsize or figure_size(n, n, 0.17, 0.15, base=(6.5, 5.5), limit=(13.0, 11.5))
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    data = np.ma.masked_array(d.matrix, d.masked)
    top = float(d.matrix.max()) or 1.0
    im = ax.imshow(data, cmap=colormap(HEATMAP_CMAP), norm=weight_norm(top, gamma), interpolation="nearest",
                   aspect="auto")
    token_ticks(ax, "x", d.tokens, d.prompt_len, max_labels, figsize[0])
    token_ticks(ax, "y", d.tokens, d.prompt_len, max_labels, figsize[1])
    mark_boundary(ax, d.prompt_len, n)
    ax.set_xlabel("source token (key)")
    ax.set_ylabel("position (query)")
    label = "rollout share" if gamma == 1 else f"rollout share (colour ~ w^{gamma:g})"
    fig.colorbar(im, ax=ax, label=label, shrink=0.8)
    suptitle(fig, d.title, fontsize=10.5)
    return fig


def head_stats_heatmap(
    capture: Capture | HeadStats | pd.DataFrame,
    rows: str = "all",
    statistics: Sequence[str] | None = None,
    *,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Head statistics, layer x head, one panel per statistic (a capture, a HeadStats or one run group)."""
    d = head_stats_data(capture, rows, statistics)
    n = len(d.names)
    ncols = min(n, 4)
    nrows = -(-n // ncols)
    panel = figure_size(d.num_heads, d.num_layers, 0.28, 0.25, base=(3.0, 2.6), limit=(6.0, 6.0))
    figsize = figsize or (panel[0] * ncols, panel[1] * nrows + 0.8)
    fig = new_figure(figsize)
    axes = np.atleast_1d(fig.subplots(nrows, ncols, squeeze=False)).reshape(-1)
    for ax, mat, label in zip(axes, d.panels, d.labels, strict=False):
        im = ax.imshow(mat, cmap="magma", aspect="auto", interpolation="nearest")
        ax.set_title(label, fontsize=9)
        ax.set_xlabel("head", fontsize=8)
        ax.set_ylabel("layer", fontsize=8)
        for axis, count in (("x", d.num_heads), ("y", d.num_layers)):
            ticks = thin_indices(count, 12)
            (ax.set_xticks if axis == "x" else ax.set_yticks)(ticks, [str(t) for t in ticks], fontsize=7)
        fig.colorbar(im, ax=ax, shrink=0.85)
    for ax in axes[n:]:
        ax.set_visible(False)
    suptitle(fig, d.title, fontsize=10.5)
    return fig


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
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Capture A against B: per-step KL and top-1 agreement with the first divergence marked (left),
    and the attention difference A - B over the shared tokens (right, when both kept attention)."""
    return _comparison_figure(compare_data(capture, other, align, kl, layer, head, distributions), max_labels, figsize)


def beams_view(
    beams: Sequence[Capture],
    pair: Sequence[int] = (0, 1),
    kl: str = "auto",
    layer: int | None = None,
    head: int | None = None,
    max_labels: int = 60,
    distributions: str = "processed",
    *,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Two returned sequences of one search, ``beams[i]`` against ``beams[j]`` for ``pair=(i, j)``: the panels
    of :func:`compare_view` over the steps whose context the beams share (see
    :func:`inspector.plots.analysis_data.beams_data`)."""
    return _comparison_figure(beams_data(beams, pair, kl, layer, head, distributions), max_labels, figsize)


def _comparison_figure(d: CompareData, max_labels: int, figsize: tuple[float, float] | None) -> Figure:
    a, b = d.names
    has_diff = d.diff is not None and d.diff.size > 0
    figsize = figsize or ((13.0, 5.5) if has_diff else (8.0, 4.5))
    fig = new_figure(figsize)
    axes = fig.subplots(1, 2 if has_diff else 1, squeeze=False)[0]
    ax = axes[0]
    ax.plot(d.steps, d.kl, color="#3a6ea5", marker="o", markersize=3, linewidth=1.2,
            label=f"KL({a}||{b}) of the {d.distributions} distributions ({d.kl_method})")
    ax.set_xlabel(f"step (in {a})")
    ax.set_ylabel("KL (nats)")
    finite = d.kl[np.isfinite(d.kl)]  # an infinite KL is not drawn (the title says where)
    top = float(finite.max()) if finite.size else 1.0
    y = np.full(d.steps.shape, -0.06 * (top or 1.0))
    ax.scatter(d.steps[d.agree], y[d.agree], marker="|", color="#1b9e77", label="top-1 agrees")
    ax.scatter(d.steps[~d.agree], y[~d.agree], marker="x", color=BOUNDARY, label="top-1 differs")
    if d.first_divergence is not None:
        s = int(d.steps[d.first_divergence])
        tok = f"{d.tokens_a[d.first_divergence]} / {d.tokens_b[d.first_divergence]}"
        ax.axvline(s, color=BOUNDARY, linestyle=(0, (4, 2)), linewidth=1.0, label=f"first divergence: {tok}")
    ax.legend(fontsize=7, loc="upper left")
    ax.grid(alpha=0.3)
    if has_diff:
        assert d.diff is not None
        ax2 = axes[1]
        n = d.diff.shape[0]
        lim = float(np.abs(d.diff).max()) or 1.0
        masked = np.ma.masked_array(d.diff, np.triu(np.ones((n, n), dtype=bool), 1))
        im = ax2.imshow(masked, cmap=colormap("RdBu_r"), vmin=-lim, vmax=lim, aspect="auto", interpolation="nearest")
        token_ticks(ax2, "x", [display_token(t) for t in d.diff_tokens], d.prompt_len, max_labels, figsize[0] / 2)
        token_ticks(ax2, "y", [display_token(t) for t in d.diff_tokens], d.prompt_len, max_labels, figsize[1])
        mark_boundary(ax2, d.prompt_len, n)
        ax2.set_title(f"attention {a} - {b} over the shared tokens ({d.diff_description})", fontsize=9)
        fig.colorbar(im, ax=ax2, label="attention difference", shrink=0.8)
    suptitle(fig, d.title, fontsize=10.5)
    return fig
