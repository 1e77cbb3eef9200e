"""Drawing helpers shared by the plotly figures: colours, the gamma colour scale, titles, the generation boundary.

plotly is imported only when a figure is drawn (:func:`plotly_go`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, cast

import numpy as np

from inspector.plots.labels import char_width, html_label

if TYPE_CHECKING:  # pragma: no cover
    from types import ModuleType

#: The dashed line where generation starts, and the frame of the chosen candidate.
BOUNDARY = "#e41a1c"
HEATMAP_SCALE = "Viridis"
#: Layout every figure starts from.
LAYOUT: dict[str, Any] = {"template": "plotly_white", "font": {"size": 12}}


def plotly_go() -> ModuleType:
    """``plotly.graph_objects``, imported on first use so that importing the builders stays light."""
    import plotly.graph_objects as go

    return cast("ModuleType", go)  # plotly ships no type information, so mypy sees the module as Any


def masked_nan(matrix: np.ndarray, masked: np.ndarray) -> np.ndarray:
    """A float32 copy of ``matrix`` with NaN (a gap plotly does not draw) where ``masked``."""
    out = matrix.astype(np.float32, copy=True)
    out[masked] = np.nan
    return out


def boundary_shapes(prompt_len: int, n: int, axes: str = "xy") -> list[dict[str, Any]]:
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


def title_layout(text: str) -> dict[str, Any]:
    """A figure title: the first line of ``text`` large, the others (model, random-weights warning) smaller."""
    lines = [html_label(line) for line in text.split("\n")]
    body = lines[0] + "".join(f"<br><span style='font-size:12px'>{line}</span>" for line in lines[1:])
    return {"text": body, "x": 0.01, "xanchor": "left", "font": {"size": 14}}


def label_margin(labels: Sequence[str], font_px: int = 12, pad: int = 16) -> int:
    """A left margin (pixels) wide enough for the longest of ``labels`` at ``font_px``, at least 60."""
    longest = max((char_width(t) for t in labels), default=0)
    return max(60, int(longest * 0.62 * font_px) + pad)


def colorscale_gamma(name: str, gamma: float, stops: int = 21) -> list[list[float | str]]:
    """A named plotly colour scale bent so a value's colour follows ``(value / max) ** gamma``.

    The data keep their true values (hover and colour bar show weights); only where
    the colours fall changes, as matplotlib's ``PowerNorm`` does.
    """
    from plotly.colors import sample_colorscale

    if gamma <= 0:
        raise ValueError(f"gamma must be positive, got {gamma}")
    ts = [i / (stops - 1) for i in range(stops)]
    colours = sample_colorscale(name, ts)
    return [[t ** (1.0 / gamma), c] for t, c in zip(ts, colours, strict=True)]


def colorbar_spec(gamma: float) -> dict[str, Any]:
    """The attention colour bar: titled in weights, saying when colour follows a power of them."""
    text = "attention" if gamma == 1 else f"attention<br>(colour ~ w^{gamma:g})"
    return {"title": {"text": text}}
