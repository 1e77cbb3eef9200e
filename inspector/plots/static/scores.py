"""The top-k figure with matplotlib: each generated step's candidates, the chosen one framed, the entropy beside."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from inspector._formatting import format_prob
from inspector.plots.labels import thin_indices
from inspector.plots.scores_data import TOPK_TEXT_LIMIT, topk_data
from inspector.plots.static._draw import BOUNDARY, figure_size, label_fontsize, new_figure, suptitle

if TYPE_CHECKING:  # pragma: no cover
    from matplotlib.figure import Figure

    from inspector._records.capture import Capture


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

    d = topk_data(capture, k, scores)
    steps, k = d.num_steps, d.k
    show_text = steps <= TOPK_TEXT_LIMIT
    if figsize is None:
        figsize = figure_size(k, steps, 0.85, 0.42 if show_text else 0.12, base=(7.0, 3.0), limit=(18.0, 20.0))
        figsize = (figsize[0] + 2.6, figsize[1] + 1.2)
    fig = new_figure(figsize)
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
                ax.text(c, s, f"{label}\n{format_prob(p)}", ha="center", va="center", fontsize=size, color=ink,
                        parse_math=False, weight="bold" if c == d.chosen_col[s] else "normal")
    for s in range(steps):
        c = int(d.chosen_col[s])
        if c >= 0:
            ax.add_patch(Rectangle((c - 0.5, s - 0.5), 1, 1, fill=False, edgecolor=BOUNDARY, linewidth=1.8))
    idx = thin_indices(steps, max_labels)
    ax.set_yticks(idx, [d.row_labels[i] for i in idx], fontsize=label_fontsize(figsize[1] * 0.8, len(idx)),
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
    suptitle(fig, d.title, fontsize=10.5)
    return fig
