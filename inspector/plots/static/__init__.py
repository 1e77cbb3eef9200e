"""Static figures (matplotlib) of captures and run summaries, for papers and slides.

Every builder returns a :class:`matplotlib.figure.Figure` made without pyplot (no
global state, no GUI backend, nothing to close); save it with
:func:`inspector.plots.export.export_figure`. Token text is never read as
mathtext, so a ``$`` in a token stays a ``$``. Importing this package loads no
matplotlib; drawing a figure does.

==========================  ==========  =========================================
builder                     module      figure
==========================  ==========  =========================================
attention_heatmap           attention   one layer/head or an aggregate
head_grid                   attention   all layers x heads
token_attention             attention   attention from one token, per layer
topk_steps                  scores      top-k candidates per step, entropy
text_figure, text_html      text        text coloured by probability or entropy
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

from inspector.plots.static._draw import BOUNDARY, GENERATED_INK, HEATMAP_CMAP, MASKED, PROMPT_INK
from inspector.plots.static.analysis import (
    beams_view,
    compare_view,
    head_stats_heatmap,
    lens_grid,
    rollout_heatmap,
)
from inspector.plots.static.attention import attention_heatmap, head_grid, token_attention
from inspector.plots.static.context_attribution import context_attribution_view
from inspector.plots.static.corpus import corpus_distributions
from inspector.plots.static.logit_attribution import logit_attribution_view
from inspector.plots.static.scores import topk_steps
from inspector.plots.static.text import text_figure, text_html

__all__ = [
    "BOUNDARY",
    "GENERATED_INK",
    "HEATMAP_CMAP",
    "MASKED",
    "PROMPT_INK",
    "attention_heatmap",
    "beams_view",
    "compare_view",
    "context_attribution_view",
    "corpus_distributions",
    "head_grid",
    "head_stats_heatmap",
    "lens_grid",
    "logit_attribution_view",
    "rollout_heatmap",
    "text_figure",
    "text_html",
    "token_attention",
    "topk_steps",
]
