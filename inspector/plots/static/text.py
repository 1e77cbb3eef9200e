"""The coloured text with matplotlib (an image of the text) and as plain HTML (values in each token's title)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from inspector.plots.html_text import text_document
from inspector.plots.labels import char_width, display_token, escape_controls
from inspector.plots.static._draw import text_canvas
from inspector.plots.text_data import TextToken, colour_of, text_data

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from inspector._records.capture import Capture


def text_html(capture: Capture, color_by: str = "prob") -> str:
    """The prompt and generated text as a self-contained HTML page, generated tokens coloured.

    ``color_by`` is ``"prob"`` (probability of the chosen token) or ``"entropy"``. This
    plain version gives each token's value as a ``title``; the interactive module's
    version shows the top alternatives on hover.
    """
    return text_document(text_data(capture, color_by), tooltips=False)


def _wrap_tokens(tokens: Sequence[TextToken], cols: int) -> tuple[list[tuple[int, int, str, TextToken]], int]:
    """Place tokens on a grid ``cols`` characters wide: ``(line, column, text, token)`` and the line count.

    Lines wrap between tokens; line breaks inside tokens start new lines. A generated
    token made only of blanks shows as a symbol (``␣``, ``↵``) so its colour is seen.
    Tabs show as ``⇥`` and control characters as escapes (``\\x13``), as in every label.
    """
    placed: list[tuple[int, int, str, TextToken]] = []
    line = col = 0

    def put(shown: str, tok: TextToken) -> None:
        nonlocal line, col
        w = char_width(shown)
        if col > 0 and col + w > cols:
            line, col = line + 1, 0
        placed.append((line, col, shown, tok))
        col += w

    for tok in tokens:
        if tok.generated and tok.text.strip() == "":
            put(display_token(tok.text), tok)
            for _ in range(tok.text.count("\n")):
                line, col = line + 1, 0
            continue
        pieces = tok.text.replace("\r", "").split("\n")
        for i, piece in enumerate(pieces):
            if piece:
                put(escape_controls(piece.replace("\t", "⇥")), tok)
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

    d = text_data(capture, color_by)
    cw = 0.602 * fontsize / 72  # DejaVu Sans Mono advance, inches per character cell
    lh = 1.55 * fontsize / 72
    margin = 0.35
    cols = max(20, int((width - 2 * margin) / cw))
    placed, n_lines = _wrap_tokens(d.tokens, cols)
    title_h, bar_h = 0.75, 0.75
    fig, ax = text_canvas(width, cols, cw, n_lines, lh, margin, title_h, bar_h)
    fig_h = fig.get_figheight()
    for ln, cl, shown, tok in placed:
        w = char_width(shown)
        if tok.generated:
            ax.add_patch(Rectangle((cl, ln + 0.08), w, 0.84, facecolor=tok.colour, edgecolor="white", linewidth=0.6))
        ax.text(cl, ln + 0.5, shown, family="DejaVu Sans Mono", fontsize=fontsize, va="center", ha="left",
                color=tok.ink, parse_math=False)
    fig.text(margin / width, 1 - 0.12 / fig_h, d.title, fontsize=10, va="top", parse_math=False)
    samples = [colour_of(d.color_by, v, d.vmin, d.vmax) for v in np.linspace(d.vmin, d.vmax, 256)]
    cax = fig.add_axes((0.25, 0.45 / fig_h, 0.5, 0.14 / fig_h))
    ColorbarBase(cax, cmap=ListedColormap(samples), norm=Normalize(d.vmin, d.vmax), orientation="horizontal")
    cax.tick_params(labelsize=8)
    cax.set_title(d.legend + "; grey text: prompt", fontsize=8)
    return fig
