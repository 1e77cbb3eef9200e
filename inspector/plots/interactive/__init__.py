"""Interactive figures (plotly) of captures and run summaries: hover, zoom, pan.

Every builder returns a :class:`plotly.graph_objects.Figure` holding the same
numbers as its :mod:`inspector.plots.static` counterpart (both take them from the
``*_data`` modules of :mod:`inspector.plots`). Token axes are category axes with one
unique ``"position token"`` label per token: plotly thins the labels to fit and shows
more of them as you zoom in; hovering a cell names both tokens and the value.
Save with :func:`inspector.plots.export.export_figure` (``.html`` embeds plotly.js).
Importing this package loads no plotly; drawing a figure does.

==========================  ==========  =========================================
builder                     module      figure
==========================  ==========  =========================================
attention_heatmap           attention   one layer/head or an aggregate
head_grid                   attention   all layers x heads
token_attention             attention   attention from one token, per layer
topk_steps                  scores      top-k candidates per step, entropy
text_html                   text        text coloured by probability or entropy
corpus_distributions        corpus      a run's metrics by label
lens_grid                   analysis    logit lens, layer x position
rollout_heatmap             analysis    attention rollout
head_stats_heatmap           analysis    head statistics, layer x head panels
compare_view                analysis    two captures: KL, agreement, difference
beams_view                  analysis    two beams of one search, the same way
logit_attribution_view      logit_...   direct logit attribution, parts x steps
context_attribution_view    context_... text coloured by context attribution
==========================  ==========  =========================================
"""

from inspector.plots.html_text import text_html
from inspector.plots.interactive._draw import BOUNDARY, HEATMAP_SCALE, colorscale_gamma
from inspector.plots.interactive.analysis import (
    beams_view,
    compare_view,
    head_stats_heatmap,
    lens_grid,
    rollout_heatmap,
)
from inspector.plots.interactive.attention import attention_heatmap, head_grid, token_attention
from inspector.plots.interactive.context_attribution import context_attribution_view
from inspector.plots.interactive.corpus import corpus_distributions
from inspector.plots.interactive.logit_attribution import logit_attribution_view
from inspector.plots.interactive.scores import TOPK_COLORBAR_PX, TOPK_MARGIN, topk_steps

__all__ = [
    "BOUNDARY",
    "HEATMAP_SCALE",
    "TOPK_COLORBAR_PX",
    "TOPK_MARGIN",
    "attention_heatmap",
    "beams_view",
    "compare_view",
    "colorscale_gamma",
    "context_attribution_view",
    "corpus_distributions",
    "head_grid",
    "head_stats_heatmap",
    "lens_grid",
    "logit_attribution_view",
    "rollout_heatmap",
    "text_html",
    "token_attention",
    "topk_steps",
]
