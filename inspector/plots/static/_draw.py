"""Helpers shared by the matplotlib figures: colours, colour scales, token ticks, the generation boundary, sizes.

Figures are made without pyplot (no global state, no GUI backend, nothing to close),
and matplotlib is imported only when a figure is drawn.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from inspector.plots.labels import axis_labels

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.axes import Axes
    from matplotlib.colors import Colormap, Normalize
    from matplotlib.figure import Figure

#: Ink of prompt tokens' labels.
PROMPT_INK = "#333333"
#: Ink of generated tokens' labels.
GENERATED_INK = "#b2182b"
#: The dashed line where generation starts, and the frame of the chosen candidate.
BOUNDARY = "#e41a1c"
HEATMAP_CMAP = "viridis"
#: Cells above the diagonal (keys after the query).
MASKED = "#eeeeee"


def new_figure(figsize: tuple[float, float], layout: Literal["constrained"] | None = "constrained") -> Figure:
    """A figure made without pyplot: no global state, no GUI backend, nothing to close; shown inline in Jupyter."""
    from inspector.plots.static._figure import InspectorFigure

    return InspectorFigure(figsize=figsize, layout=layout)


def colormap(name: str) -> Colormap:
    """The named colour map, with masked cells in :data:`MASKED`."""
    from matplotlib import colormaps

    return colormaps[name].with_extremes(bad=MASKED)


def weight_norm(vmax: float, gamma: float) -> Normalize:
    """Colour scale from 0 to ``vmax``; ``gamma < 1`` spreads the small weights that dominate long rows."""
    from matplotlib.colors import Normalize, PowerNorm

    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    if gamma == 1:
        return Normalize(vmin=0.0, vmax=vmax)
    return PowerNorm(gamma=gamma, vmin=0.0, vmax=vmax)


def scale_label(gamma: float) -> str:
    """The colour bar's label: it reads in weights, and says when colour follows a power of them."""
    return "attention weight" if gamma == 1 else f"attention weight (colour ~ w^{gamma:g})"


def label_fontsize(axis_inches: float, n_labels: int, largest: float = 9.0, smallest: float = 4.5) -> float:
    """A font size (points) at which ``n_labels`` labels share ``axis_inches`` without overlapping."""
    if n_labels <= 0:
        return largest
    return float(min(largest, max(smallest, 72 * 0.85 * axis_inches / n_labels)))


def token_ticks(ax: Axes, axis: str, tokens: Sequence[str], prompt_len: int, max_labels: int, inches: float,
                keep: Sequence[int] = ()) -> None:
    """Thinned token labels on ``axis`` ('x' or 'y'); generated tokens in red."""
    idx, labels = axis_labels(tokens, max_labels, prompt_len, keep=keep)
    size = label_fontsize(inches, len(idx))
    if axis == "x":
        ax.set_xticks(idx, labels, rotation=90, fontsize=size, parse_math=False)
        ticklabels = ax.get_xticklabels()
    else:
        ax.set_yticks(idx, labels, fontsize=size, parse_math=False)
        ticklabels = ax.get_yticklabels()
    # Not strict: matplotlib leaves out the labels of ticks outside the view limits.
    for i, text in zip(idx, ticklabels, strict=False):
        text.set_color(GENERATED_INK if i >= prompt_len else PROMPT_INK)


def mark_boundary(ax: Axes, prompt_len: int, n: int, axes: str = "xy") -> None:
    """Dashed lines between the last prompt token and the first generated one.

    On a square ``[query, key]`` map (``axes="xy"``) the lines stop at the diagonal,
    framing the prompt-to-prompt block; ``axes="x"`` draws one full-height line.
    """
    if not 0 < prompt_len < n:
        return
    pos = prompt_len - 0.5
    kw: dict[str, Any] = {"color": BOUNDARY, "linewidth": 1.0, "linestyle": (0, (4, 2))}
    if axes == "x":
        ax.axvline(pos, **kw)
        return
    ax.plot([pos, pos], [pos, n - 0.5], **kw)
    ax.plot([-0.5, pos], [pos, pos], **kw)


def suptitle(fig: Figure, title: str, fontsize: float = 11) -> None:
    """The figure's title, read as plain text (a ``$`` in a token is not mathtext)."""
    fig.suptitle(title, fontsize=fontsize, parse_math=False)


def figure_size(
    n_cols: float,
    n_rows: float,
    per_col: float,
    per_row: float,
    base: tuple[float, float],
    limit: tuple[float, float] = (22.0, 22.0),
) -> tuple[float, float]:
    """A figure size (inches) growing with the data, between ``base`` and ``limit``."""
    w = min(max(base[0], n_cols * per_col), limit[0])
    h = min(max(base[1], n_rows * per_row), limit[1])
    return float(w), float(h)


def text_canvas(width: float, cols: int, cell: float, n_lines: int, line: float, margin: float, title_h: float,
                bar_h: float) -> tuple[Figure, Any]:
    """A figure ``width`` inches wide for ``n_lines`` of text on a ``cols``-cell grid (``cell`` x ``line``
    inches per cell), with ``title_h`` inches above for the title and ``bar_h`` below for a colour bar;
    and the text's axes, in grid units (x: cell, y: line from the top), without decorations."""
    text_h = n_lines * line
    fig_h = text_h + title_h + bar_h + 0.2
    fig = new_figure((width, fig_h), layout=None)
    ax = fig.add_axes((margin / width, (bar_h + 0.1) / fig_h, cols * cell / width, text_h / fig_h))
    ax.set_xlim(0, cols)
    ax.set_ylim(n_lines, 0)
    ax.axis("off")
    return fig, ax
