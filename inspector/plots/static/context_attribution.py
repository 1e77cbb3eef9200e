"""The context-attribution figure with matplotlib: the text, each input token on a cell coloured by its score."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.plots.context_attribution_data import AttributedToken, attribution_colour, context_attribution_data
from inspector.plots.labels import char_width, display_token, escape_controls
from inspector.plots.static._draw import text_canvas

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from inspector._records.capture import Capture
    from inspector.analysis.context_attribution import ContextAttribution


def _layout(tokens: list[AttributedToken], cols: int) -> tuple[list[tuple[int, int, str, AttributedToken]], int]:
    """``(line, column, shown text, token)`` on a grid ``cols`` characters wide, and the line count.

    Lines wrap between tokens and at line breaks inside them; a token made only of blanks shows as a
    symbol (``␣``, ``↵``) so that its colour is seen.
    """
    placed: list[tuple[int, int, str, AttributedToken]] = []
    line = col = 0
    for tok in tokens:
        pieces = [display_token(tok.text)] if tok.text.strip() == "" else tok.text.replace("\r", "").split("\n")
        for i, piece in enumerate(pieces):
            shown = escape_controls(piece.replace("\t", "⇥"))
            if shown:
                w = char_width(shown)
                if col > 0 and col + w > cols:
                    line, col = line + 1, 0
                placed.append((line, col, shown, tok))
                col += w
            if i < len(pieces) - 1:
                line, col = line + 1, 0
    return placed, line + 1


def context_attribution_view(
    capture: Capture,
    model: Any = None,
    attribution: ContextAttribution | None = None,
    method: str | None = None,
    steps: int | None = None,
    step: int | None = None,
    *,
    figsize: tuple[float, float] | None = None,
    fontsize: float = 11.0,
) -> Figure:
    """The prompt and reply as coloured text: each input of generated step ``step`` on a cell coloured by
    its score (red raised the token's log-probability, blue lowered it; the scale is symmetric around 0),
    the explained token outlined, later tokens grey. ``figsize``: its width sets the wrap (the height
    follows the text). See :func:`~inspector.plots.context_attribution_data.context_attribution_data`."""
    from matplotlib.colorbar import ColorbarBase
    from matplotlib.colors import ListedColormap, Normalize
    from matplotlib.patches import Rectangle

    d = context_attribution_data(capture, model, attribution, method, steps, step)
    width = 9.0 if figsize is None else float(figsize[0])
    cw, lh, margin = 0.602 * fontsize / 72, 1.55 * fontsize / 72, 0.35
    cols = max(20, int((width - 2 * margin) / cw))
    placed, n_lines = _layout(d.tokens, cols)
    title_h, bar_h = 0.9, 0.8
    fig, ax = text_canvas(width, cols, cw, n_lines, lh, margin, title_h, bar_h)
    fig_h = fig.get_figheight()
    for ln, cl, shown, tok in placed:
        w = char_width(shown)
        if tok.colour is not None:
            ax.add_patch(Rectangle((cl, ln + 0.08), w, 0.84, facecolor=tok.colour, edgecolor="white", linewidth=0.6))
        elif tok.role == "target":
            ax.add_patch(Rectangle((cl, ln + 0.08), w, 0.84, facecolor="none", edgecolor="#000000", linewidth=1.4))
        ax.text(cl, ln + 0.5, shown, family="DejaVu Sans Mono", fontsize=fontsize, va="center", ha="left",
                color=tok.ink, parse_math=False)
    fig.text(margin / width, 1 - 0.12 / fig_h, d.title, fontsize=10, va="top", parse_math=False)
    vmax = d.vmax if d.vmax > 0 else 1.0
    samples = [attribution_colour(v, vmax) for v in np.linspace(-vmax, vmax, 256)]
    cax = fig.add_axes((0.2, 0.45 / fig_h, 0.6, 0.14 / fig_h))
    ColorbarBase(cax, cmap=ListedColormap(samples), norm=Normalize(-vmax, vmax), orientation="horizontal")
    cax.tick_params(labelsize=8)
    cax.set_title(d.legend, fontsize=8)
    return fig
