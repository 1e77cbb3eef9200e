"""The logit-attribution figure with matplotlib: parts x steps heatmap, or one step's largest parts as bars."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from inspector.plots.labels import thin_indices
from inspector.plots.logit_attribution_data import LOWERS, RAISES, TOP_PARTS, logit_attribution_data
from inspector.plots.static._draw import figure_size, label_fontsize, new_figure, suptitle

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from inspector._records.capture import Capture
    from inspector.analysis.direct_logit import LogitAttribution


def logit_attribution_view(
    capture: Capture,
    model: Any = None,
    attribution: LogitAttribution | None = None,
    target: str | None = None,
    step: int | None = None,
    top: int = TOP_PARTS,
    max_labels: int = 60,
    *,
    figsize: tuple[float, float] | None = None,
) -> Figure:
    """Direct logit attribution (:func:`inspector.analysis.direct_logit.logit_attribution`) in logits: parts
    (rows, in model order) x generated steps, red raising the target and blue lowering it, colour centred on 0;
    with ``step``, that step's ``top`` largest parts as horizontal bars, largest at the top."""
    d = logit_attribution_data(capture, model, attribution, target, step, top)
    if d.step is not None:
        n = len(d.names)
        figsize = figsize or figure_size(1, n, 1, 0.36, base=(7.5, 3.2), limit=(14.0, 12.0))
        fig = new_figure(figsize)
        ax = fig.add_subplot()
        ys = np.arange(n)[::-1]  # the largest part at the top
        ax.barh(ys, d.values, color=[RAISES if v >= 0 else LOWERS for v in d.values])
        ax.set_yticks(ys, d.names, fontsize=8.5, parse_math=False)
        ax.axvline(0.0, color="#555555", linewidth=0.8)
        ax.set_xlabel(d.value_label)
        suptitle(fig, d.title, fontsize=10.5)
        return fig
    rows, cols = d.values.shape
    figsize = figsize or figure_size(cols, rows, 0.22, 0.12, base=(7.0, 5.0), limit=(22.0, 16.0))
    fig = new_figure(figsize)
    ax = fig.add_subplot()
    reach = float(np.abs(d.values).max()) or 1.0
    im = ax.imshow(d.values, cmap="RdBu_r", vmin=-reach, vmax=reach, aspect="auto", interpolation="nearest")
    labelled = thin_indices(rows, max_labels)
    ax.set_yticks(labelled, [d.names[i] for i in labelled], fontsize=label_fontsize(figsize[1], len(labelled)),
                  parse_math=False)
    xs = thin_indices(cols, max_labels)
    ax.set_xticks(xs, [d.step_labels[i] for i in xs], rotation=90, fontsize=label_fontsize(figsize[0], len(xs)),
                  parse_math=False)
    ax.set_xlabel("generated step and its token")
    ax.set_ylabel("part of the model")
    fig.colorbar(im, ax=ax, label=d.value_label, shrink=0.8)
    suptitle(fig, d.title, fontsize=10.5)
    return fig
