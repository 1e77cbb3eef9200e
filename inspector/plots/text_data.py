"""The numbers of the coloured text: every token, and for generated ones a colour, its value and alternatives.

:func:`text_data` is drawn by the matplotlib text figure and rendered as HTML by
:mod:`inspector.plots.html_text`; both colour a value with :func:`colour_of`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inspector.plots.arrays import to_numpy
from inspector.plots.labels import capture_title
from inspector.plots.options import COLOR_BY

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture


@dataclass(frozen=True)
class TextToken:
    """One token of the coloured text; ``value`` is what its colour shows (generated tokens only).

    ``tip``: the top alternatives as ``(label, probability, is_chosen)``; ``prob``,
    ``rank`` and ``entropy`` describe the chosen token's step under the raw logits.
    """

    text: str
    generated: bool
    value: float | None
    colour: str | None
    ink: str
    tip: list[tuple[str, float, bool]]
    prob: float = float("nan")
    rank: int = 0
    entropy: float = float("nan")


@dataclass(frozen=True)
class TextData:
    """The whole text: ``tokens`` in order (prompt, then generated), coloured on ``cmap`` from ``vmin`` to ``vmax``."""

    tokens: list[TextToken]
    color_by: str
    legend: str
    vmin: float
    vmax: float
    cmap: str
    title: str


TEXT_CMAP = "YlOrRd"


def rgba_hex(rgba: Sequence[float]) -> str:
    """An RGB(A) colour with channels in 0..1 as ``#rrggbb``."""
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in rgba[:3]))


def _ink(rgba: Sequence[float]) -> str:
    # Luma weights of ITU-R BT.601: white text only where the cell is dark enough.
    r, g, b = rgba[:3]
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "#ffffff"


def text_scale(color_by: str, values: np.ndarray) -> tuple[float, float, str]:
    """``(vmin, vmax, legend)`` of the colour scale: probabilities span 0..1, entropies 0..their maximum."""
    if color_by == "prob":
        return 0.0, 1.0, "probability of the chosen token (red: surprising)"
    vmax = float(values.max()) if values.size and float(values.max()) > 0 else 1.0
    return 0.0, vmax, "entropy of the next-token distribution, nats (red: uncertain)"


def colour_of(color_by: str, value: float, vmin: float, vmax: float) -> tuple[float, float, float, float]:
    """Colour of one value: red means surprising (low probability) or uncertain (high entropy)."""
    from matplotlib import colormaps

    frac = (value - vmin) / (vmax - vmin) if vmax > vmin else 0.0
    frac = min(max(frac, 0.0), 1.0)
    if color_by == "prob":
        frac = 1.0 - frac
    # Stay off the darkest end so black text remains readable on most cells.
    r, g, b, a = colormaps[TEXT_CMAP](0.05 + 0.85 * frac)
    return float(r), float(g), float(b), float(a)


def text_data(capture: Capture, color_by: str = "prob", alternatives: int = 5) -> TextData:
    """The prompt (uncoloured) and the generated tokens coloured by probability or entropy."""
    if color_by not in COLOR_BY:
        raise ValueError(f"unknown color_by {color_by!r}; choose one of {list(COLOR_BY)}")
    values = (to_numpy(capture.chosen_probs) if color_by == "prob" else to_numpy(capture.raw.entropy)).astype(
        np.float64
    )
    vmin, vmax, legend = text_scale(color_by, values)
    out: list[TextToken] = [
        TextToken(text=t, generated=False, value=None, colour=None, ink="#666666", tip=[])
        for t in capture.tokens[: capture.prompt_len]
    ]
    probs = to_numpy(capture.chosen_probs)
    entropy = to_numpy(capture.raw.entropy)
    ranks = capture.raw.chosen_rank.tolist()
    for i, tok in enumerate(capture.generated_tokens):
        rgba = colour_of(color_by, float(values[i]), vmin, vmax)
        chosen = int(capture.generated_ids[i])
        tip = [
            (capture.label(tid), math.exp(lp), tid == chosen)
            for tid, lp in zip(
                capture.raw.topk_ids[i, :alternatives].tolist(),
                capture.raw.topk_logprobs[i, :alternatives].tolist(),
                strict=True,
            )
        ]
        out.append(
            TextToken(text=tok, generated=True, value=float(values[i]), colour=rgba_hex(rgba), ink=_ink(rgba), tip=tip,
                      prob=float(probs[i]), rank=int(ranks[i]), entropy=float(entropy[i]))
        )
    lead = "Forced continuation" if capture.meta.generation.get("mode") == "forced" else "Generated text"
    what = f"{lead} coloured by " + ("chosen-token probability" if color_by == "prob" else "entropy (nats)")
    return TextData(
        tokens=out,
        color_by=color_by,
        legend=legend,
        vmin=vmin,
        vmax=vmax,
        cmap=TEXT_CMAP,
        title=capture_title(capture, what),
    )

