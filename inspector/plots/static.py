"""Static figures (matplotlib) of captures and run summaries, for papers and slides.

Every builder returns a :class:`matplotlib.figure.Figure` made without pyplot (no
global state, no GUI backend, nothing to close); save it with
:func:`inspector.plots.export.export_figure`. Token text is never read as
mathtext, so a ``$`` in a token stays a ``$``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from inspector.plots import _common as C

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

    from inspector.records import Capture

PROMPT_INK = "#333333"
GENERATED_INK = "#b2182b"
BOUNDARY = "#e41a1c"
HEATMAP_CMAP = "viridis"
MASKED = "#eeeeee"


def _figure(figsize: tuple[float, float], layout: str | None = "constrained") -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, layout=layout)


def _cmap(name: str):
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=MASKED)


def _norm(vmax: float, gamma: float):
    """Colour scale from 0 to ``vmax``; ``gamma < 1`` spreads the small weights that dominate long rows."""
    from matplotlib.colors import Normalize, PowerNorm

    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    if gamma == 1:
        return Normalize(vmin=0.0, vmax=vmax)
    return PowerNorm(gamma=gamma, vmin=0.0, vmax=vmax)


def _scale_label(gamma: float) -> str:
    return "attention weight" if gamma == 1 else f"attention weight (colour ~ w^{gamma:g})"


def _label_fontsize(axis_inches: float, n_labels: int, largest: float = 9.0, smallest: float = 4.5) -> float:
    if n_labels <= 0:
        return largest
    return float(min(largest, max(smallest, 72 * 0.85 * axis_inches / n_labels)))


def _token_ticks(ax: Axes, axis: str, tokens: Sequence[str], prompt_len: int, max_labels: int, inches: float,
                 keep: Sequence[int] = ()) -> None:
    """Thinned token labels on ``axis`` ('x' or 'y'); generated tokens in red."""
    idx, labels = C.axis_labels(tokens, max_labels, prompt_len, keep=keep)
    size = _label_fontsize(inches, len(idx))
    if axis == "x":
        ax.set_xticks(idx, labels, rotation=90, fontsize=size, parse_math=False)
        ticklabels = ax.get_xticklabels()
    else:
        ax.set_yticks(idx, labels, fontsize=size, parse_math=False)
        ticklabels = ax.get_yticklabels()
    for i, text in zip(idx, ticklabels):
        text.set_color(GENERATED_INK if i >= prompt_len else PROMPT_INK)


def _mark_boundary(ax: Axes, prompt_len: int, n: int, axes: str = "xy") -> None:
    """Dashed lines between the last prompt token and the first generated one.

    On a square ``[query, key]`` map (``axes="xy"``) the lines stop at the diagonal,
    framing the prompt-to-prompt block; ``axes="x"`` draws one full-height line.
    """
    if not 0 < prompt_len < n:
        return
    pos = prompt_len - 0.5
    kw = {"color": BOUNDARY, "linewidth": 1.0, "linestyle": (0, (4, 2))}
    if axes == "x":
        ax.axvline(pos, **kw)
        return
    ax.plot([pos, pos], [pos, n - 0.5], **kw)
    ax.plot([-0.5, pos], [pos, pos], **kw)


def _title(fig: Figure, title: str, fontsize: float = 11) -> None:
    fig.suptitle(title, fontsize=fontsize, parse_math=False)


# --------------------------------------------------------------------------- 1. heatmap
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
    :data:`inspector.aggregate.AGGREGATE_MODES`). Cells above the diagonal (keys after
    the query, zero by causality) are grey; dashed lines mark where generation starts;
    generated tokens' labels are red. Above ``max_labels`` tokens, labels are thinned
    and carry their positions. Colour follows ``weight ** gamma`` (0.5 by default, so
    the many small weights of a long row stay visible; 1 for linear); the colour bar
    is labelled in weights.
    """
    d = C.heatmap_data(capture, layer, head, agg)
    n = d.matrix.shape[0]
    figsize = figsize or C.figure_size(n, n, 0.17, 0.15, base=(6.5, 5.5), limit=(13.0, 11.5))
    fig = _figure(figsize)
    ax = fig.add_subplot()
    data = np.ma.masked_array(d.matrix, d.masked)
    top = vmax if vmax is not None else (float(d.matrix.max()) or 1.0)
    im = ax.imshow(data, cmap=_cmap(cmap), norm=_norm(top, gamma), interpolation="nearest", aspect="auto")
    ax.set_xlim(-0.5, n - 0.5)
    ax.set_ylim(n - 0.5, -0.5)
    plot_w = figsize[0] * 0.75
    plot_h = figsize[1] * 0.7
    _token_ticks(ax, "x", d.tokens, d.prompt_len, max_labels, plot_w)
    _token_ticks(ax, "y", d.tokens, d.prompt_len, max_labels, plot_h)
    _mark_boundary(ax, d.prompt_len, n)
    ax.set_xlabel("key: the token attended to")
    ax.set_ylabel("query: the token attending")
    ax.tick_params(length=2)
    fig.colorbar(im, ax=ax, label=_scale_label(gamma), shrink=0.85, pad=0.01)
    _title(fig, d.title)
    return fig


# --------------------------------------------------------------------------- 2. head grid
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

    d = C.head_grid_data(capture, max_cells)
    m = C.head_mosaic(d)
    n_layer, n_head = d.num_layers, d.num_heads
    if figsize is None:
        side = 1.6 if max(n_layer, n_head) <= 4 else (1.3 if max(n_layer, n_head) <= 6 else 1.0)
        figsize = (min(max(2.2 + n_head * side, 7.0), 16.0), min(max(1.3 + n_layer * side, 5.0), 16.0))
    fig = _figure(figsize)
    ax = fig.add_subplot()
    top = vmax if vmax is not None else (d.vmax or 1.0)
    image = m.image.copy()
    image[m.gaps] = np.inf  # drawn in the "over" colour (white); NaN above diagonals stays grey
    im = ax.imshow(image, cmap=_cmap(cmap).with_extremes(over="white"), norm=_norm(top, gamma),
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
    fig.colorbar(im, ax=ax, label=_scale_label(gamma), shrink=0.6, pad=0.01)
    sub = "rows: query, columns: key; red lines: generation starts"
    fig.suptitle(f"{d.title}\n{sub}", fontsize=10, parse_math=False)
    return fig


# --------------------------------------------------------------------------- 3. top-k
def topk_steps(
    capture: Capture,
    k: int | None = None,
    scores: str = "raw",
    max_labels: int = 80,
    *,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Per generated step (rows): the top-k candidates with probabilities, and the entropy.

    The chosen token's cell has a red frame; a chosen token outside the top k is named
    with its rank in the row label. ``scores`` is ``"raw"`` (model logits) or
    ``"processed"`` (what decoding picked from).
    """
    from matplotlib.patches import Rectangle

    d = C.topk_data(capture, k, scores)
    steps, k = d.num_steps, d.k
    show_text = steps <= C.TOPK_TEXT_LIMIT
    if figsize is None:
        figsize = C.figure_size(k, steps, 0.85, 0.42 if show_text else 0.12, base=(7.0, 3.0), limit=(18.0, 20.0))
        figsize = (figsize[0] + 2.6, figsize[1] + 1.2)
    fig = _figure(figsize)
    ax, ax_e = fig.subplots(1, 2, sharey=True, width_ratios=[max(k, 2), 2.6])
    im = ax.imshow(d.probs, cmap="Blues", vmin=0.0, vmax=1.0, aspect="auto", interpolation="nearest")
    if show_text:
        size = 7.5 if k <= 10 else 6.5
        for s in range(steps):
            for c in range(k):
                p = float(d.probs[s, c])
                ink = "white" if p > 0.55 else "#111111"
                label = d.labels[s][c]
                label = label if len(label) <= 11 else label[:10] + "…"
                ax.text(c, s, f"{label}\n{C.format_prob(p)}", ha="center", va="center", fontsize=size, color=ink,
                        parse_math=False, weight="bold" if c == d.chosen_col[s] else "normal")
    for s in range(steps):
        c = int(d.chosen_col[s])
        if c >= 0:
            ax.add_patch(Rectangle((c - 0.5, s - 0.5), 1, 1, fill=False, edgecolor=BOUNDARY, linewidth=1.8))
    idx = C.thin_indices(steps, max_labels)
    ax.set_yticks(idx, [d.row_labels[i] for i in idx], fontsize=_label_fontsize(figsize[1] * 0.8, len(idx)),
                  parse_math=False)
    ax.set_xticks(range(k), [str(r + 1) for r in range(k)], fontsize=8)
    ax.set_xlabel("rank among candidates (red frame: the chosen token)")
    ax.set_ylabel("generated step: chosen token")
    ax.tick_params(length=2)
    fig.colorbar(im, ax=ax, label="probability", location="bottom", shrink=0.5, pad=0.01, aspect=40)
    ax_e.barh(np.arange(steps), d.entropy, color="#6a51a3", height=0.7)
    ax_e.set_xlabel("entropy (nats)")
    ax_e.tick_params(axis="y", left=False)
    ax_e.grid(axis="x", alpha=0.3)
    ax_e.set_title("entropy per step", fontsize=9)
    ax.set_ylim(steps - 0.5, -0.5)
    _title(fig, d.title, fontsize=10.5)
    return fig


# --------------------------------------------------------------------------- 4. text
def text_html(capture: Capture, color_by: str = "prob") -> str:
    """The prompt and generated text as a self-contained HTML page, generated tokens coloured.

    ``color_by`` is ``"prob"`` (probability of the chosen token) or ``"entropy"``. This
    plain version gives each token's value as a ``title``; the interactive module's
    version shows the top alternatives on hover.
    """
    return C.text_document(C.text_data(capture, color_by), tooltips=False)


def _wrap_tokens(tokens: Sequence[C.TextToken], cols: int) -> tuple[list[tuple[int, int, str, C.TextToken]], int]:
    """Place tokens on a grid ``cols`` characters wide: ``(line, column, text, token)`` and the line count.

    Lines wrap between tokens; line breaks inside tokens start new lines. A generated
    token made only of blanks shows as a symbol (``␣``, ``↵``) so its colour is seen.
    Tabs show as ``⇥`` and control characters as escapes (``\\x13``), as in every label.
    """
    placed: list[tuple[int, int, str, C.TextToken]] = []
    line = col = 0

    def put(shown: str, tok: C.TextToken) -> None:
        nonlocal line, col
        w = C.char_width(shown)
        if col > 0 and col + w > cols:
            line, col = line + 1, 0
        placed.append((line, col, shown, tok))
        col += w

    for tok in tokens:
        if tok.generated and tok.text.strip() == "":
            put(C.display_token(tok.text), tok)
            for _ in range(tok.text.count("\n")):
                line, col = line + 1, 0
            continue
        pieces = tok.text.replace("\r", "").split("\n")
        for i, piece in enumerate(pieces):
            if piece:
                put(C.escape_controls(piece.replace("\t", "⇥")), tok)
            if i < len(pieces) - 1:
                line, col = line + 1, 0
    return placed, line + 1


def text_figure(
    capture: Capture,
    color_by: str = "prob",
    *,
    width: float = 9.0,
    fontsize: float = 11.0,
) -> Figure:
    """The text as an image: prompt in grey, generated tokens on coloured cells, a colour bar below.

    Laid out on a monospace grid ``width`` inches wide, wrapping at token boundaries.
    """
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.patches import Rectangle

    d = C.text_data(capture, color_by)
    cw = 0.602 * fontsize / 72  # DejaVu Sans Mono advance, inches per character cell
    lh = 1.55 * fontsize / 72
    margin = 0.35
    cols = max(20, int((width - 2 * margin) / cw))
    placed, n_lines = _wrap_tokens(d.tokens, cols)
    text_h = n_lines * lh
    title_h, bar_h = 0.75, 0.75
    fig_h = text_h + title_h + bar_h + 0.2
    fig = _figure((width, fig_h), layout=None)
    ax = fig.add_axes((margin / width, (bar_h + 0.1) / fig_h, cols * cw / width, text_h / fig_h))
    ax.set_xlim(0, cols)
    ax.set_ylim(n_lines, 0)
    ax.axis("off")
    for ln, cl, shown, tok in placed:
        w = C.char_width(shown)
        if tok.generated:
            ax.add_patch(Rectangle((cl, ln + 0.08), w, 0.84, facecolor=tok.colour, edgecolor="white", linewidth=0.6))
        ax.text(cl, ln + 0.5, shown, family="DejaVu Sans Mono", fontsize=fontsize, va="center", ha="left",
                color=tok.ink, parse_math=False)
    fig.text(margin / width, 1 - 0.12 / fig_h, d.title, fontsize=10, va="top", parse_math=False)
    samples = [C.colour_of(d.color_by, v, d.vmin, d.vmax) for v in np.linspace(d.vmin, d.vmax, 256)]
    cax = fig.add_axes((0.25, 0.45 / fig_h, 0.5, 0.14 / fig_h))
    ColorbarBase(cax, cmap=ListedColormap(samples), norm=Normalize(d.vmin, d.vmax), orientation="horizontal")
    cax.tick_params(labelsize=8)
    cax.set_title(d.legend + "; grey text: prompt", fontsize=8)
    return fig


# --------------------------------------------------------------------------- 5. token strip
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
    d = C.token_attention_data(capture, position, head)
    n_layer, n_keys = d.matrix.shape
    figsize = figsize or C.figure_size(n_keys, n_layer, 0.2, 0.32, base=(7.0, 2.6), limit=(20.0, 9.0))
    figsize = (figsize[0], figsize[1] + 1.3)
    fig = _figure(figsize)
    ax = fig.add_subplot()
    im = ax.imshow(d.matrix, cmap=_cmap(cmap), norm=_norm(float(d.matrix.max()) or 1.0, gamma), aspect="auto",
                   interpolation="nearest")
    _token_ticks(ax, "x", d.tokens, d.prompt_len, max_labels, figsize[0] * 0.8, keep=(d.position,))
    labels = ax.get_xticklabels()
    if labels and labels[-1].get_position()[0] == d.position:
        labels[-1].set_fontweight("bold")
    ax.set_yticks(range(n_layer), [f"layer {i}" for i in range(n_layer)],
                  fontsize=_label_fontsize(figsize[1] * 0.5, n_layer))
    _mark_boundary(ax, d.prompt_len, n_keys, axes="x")
    ax.set_xlabel(f"key: earlier token (the last column is token {d.position} itself)")
    ax.tick_params(length=2)
    fig.colorbar(im, ax=ax, label=_scale_label(gamma), pad=0.01)
    _title(fig, d.title, fontsize=10.5)
    return fig


# --------------------------------------------------------------------------- 6. corpus
def corpus_distributions(
    summary: pd.DataFrame,
    by: str = "emotion",
    metrics: Sequence[str] | None = None,
    *,
    figsize: tuple[float, float] | None = None,
    points: bool | None = None,
) -> Figure:
    """Box plots of per-turn metrics from a run's ``summary.parquet``, one panel per metric.

    ``by`` is one of ``act``, ``emotion``, ``response_act``, ``response_emotion``.
    ``metrics`` default to entropy and chosen-token probability, plus the attention
    shares the run recorded. Each group's label gives its number of turns; with
    ``points`` (default: up to 300 turns per group) the individual turns are drawn too.
    """
    d = C.corpus_data(summary, by, metrics)
    n_m = len(d.metrics)
    ncols = min(3, n_m)
    nrows = math.ceil(n_m / ncols)
    per_group = max(0.55, 0.09 * max(len(g) for g in d.groups))
    panel_w = max(3.2, per_group * len(d.groups) + 0.8)
    figsize = figsize or (min(ncols * panel_w, 20.0), min(nrows * 3.6 + 0.8, 20.0))
    fig = _figure(figsize)
    axes = fig.subplots(nrows, ncols, squeeze=False)
    rotate = len(d.groups) > 4
    ticklabels = [f"{g} (n={d.counts[g]})" if rotate else f"{g}\n(n={d.counts[g]})" for g in d.groups]
    if points is None:
        points = max(d.counts.values()) <= 300
    rng = np.random.default_rng(0)
    for i, metric in enumerate(d.metrics):
        ax = axes[i // ncols, i % ncols]
        data = [d.values[metric][g] for g in d.groups]
        ax.boxplot(
            [v if v.size else np.array([np.nan]) for v in data],
            tick_labels=ticklabels,
            widths=0.55,
            showfliers=not points,
            medianprops={"color": "#b2182b", "linewidth": 1.5},
            boxprops={"color": "#333333"},
            whiskerprops={"color": "#333333"},
            capprops={"color": "#333333"},
        )
        if points:
            for gi, v in enumerate(data):
                x = gi + 1 + rng.uniform(-0.18, 0.18, size=v.size)
                ax.scatter(x, v, s=7, alpha=0.45, color="#2166ac", linewidths=0)
        ax.set_title(d.metric_label(metric), fontsize=10)
        ax.tick_params(axis="x", labelsize=8, rotation=30 if rotate else 0)
        for lbl in ax.get_xticklabels():
            lbl.set_parse_math(False)
            if rotate:
                lbl.set_horizontalalignment("right")
                lbl.set_rotation_mode("anchor")
        ax.grid(axis="y", alpha=0.3)
    for j in range(n_m, nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    _title(fig, d.title, fontsize=11)
    return fig
