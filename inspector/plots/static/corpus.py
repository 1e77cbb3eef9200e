"""The corpus figure with matplotlib: box plots of a run's per-turn metrics by DailyDialog label."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from inspector.plots.corpus_data import corpus_data
from inspector.plots.static._draw import new_figure, suptitle

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd
    from matplotlib.figure import Figure


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
    d = corpus_data(summary, by, metrics)
    n_m = len(d.metrics)
    ncols = min(3, n_m)
    nrows = math.ceil(n_m / ncols)
    per_group = max(0.55, 0.09 * max(len(g) for g in d.groups))
    panel_w = max(3.2, per_group * len(d.groups) + 0.8)
    figsize = figsize or (min(ncols * panel_w, 20.0), min(nrows * 3.6 + 0.8, 20.0))
    fig = new_figure(figsize)
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
        # No offset or multiplier text ("+1.067e1", "1e-5"): it sits over the panel title and hides the
        # values; with random weights entropy barely varies and probabilities are ~2e-5.
        ax.ticklabel_format(axis="y", style="plain", useOffset=False)
        ax.grid(axis="y", alpha=0.3)
    for j in range(n_m, nrows * ncols):
        axes[j // ncols, j % ncols].set_visible(False)
    suptitle(fig, d.title, fontsize=11)
    return fig
