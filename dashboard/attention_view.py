"""The Attention view: a heatmap for a layer/head or aggregate, where one token looks, and the head grid."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import state

#: The layer/head choice meaning "combine all of them by the aggregate".
ALL = "all"
# At most this many cells per side of each head-grid panel (a panel is ~80 px wide): on a
# 100-token capture 64 cells made the grid a 2.5 MB figure that took ~2 s to appear in
# Chromium here, 40 (34 cells after pooling) about 1.3 s (benchmarks/bench_dashboard.py).
GRID_MAX_CELLS = 40


def attention_controls(capture: Any) -> tuple[int | None, int | None, str]:
    """Layer, head (``None`` = all, combined by the aggregate) and aggregate mode."""
    from inspector._aggregate import AGGREGATE_MODES

    layers = [ALL, *range(capture.num_layers)]
    heads = [ALL, *range(capture.num_heads)]
    state.sticky("att_layer", ALL, layers)
    state.sticky("att_head", ALL, heads)
    state.sticky("att_agg", "mean", AGGREGATE_MODES)
    c1, c2, c3 = st.columns([1, 1, 2])
    layer = c1.selectbox("Layer", layers, key="att_layer",
                         format_func=lambda v: "all layers" if v == ALL else f"layer {v}")
    head = c2.selectbox("Head", heads, key="att_head",
                        format_func=lambda v: "all heads" if v == ALL else f"head {v}")
    layer = None if layer == ALL else int(layer)
    head = None if head == ALL else int(head)
    agg = c3.segmented_control(
        "Combine the 'all' dimensions by", list(AGGREGATE_MODES), key="att_agg", required=True,
        help="mean: average weight; max: strongest weight; stacked-mean: the notebook's mean over layers, then "
        "over heads; norm-weighted: weights times value-vector norms (needs a capture with value norms).",
        disabled=layer is not None and head is not None,
    ) or "mean"
    return layer, head, agg


def _height(n_tokens: int) -> int | None:
    """A heatmap height that keeps the views below it within reach (the figure's own size otherwise)."""
    return 700 if n_tokens > 32 else None


def attention_panel(capture: Any) -> None:
    """Heatmap for a layer/head or aggregate, 'pick a token, see where it looks', and the head grid."""
    if capture is None:
        return
    layout = capture.attention_layout
    if not layout.whole_grid:
        st.info(f"This capture kept part of the attention ({layout.describe()}); these views draw every layer, "
                "head and row. Generate here, or capture again without `--layers`, `--heads` and "
                "`--attention-rows generated`.")
        return
    if capture.attentions is None:
        st.warning("This capture kept no attention weights (e.g. a corpus run made with `--attention summary` or "
                   "`none`). Generate here, or run with `--attention full`.")
        return
    st.subheader("Attention heatmap")
    st.caption("Each row is a token (query) and shows how much it attended to each earlier token (key). Tokens "
               "after the dashed line were generated.")
    if (capture.meta.extra or {}).get("attention") == "summary" or layout.head_reduce == "mean":
        st.caption("This capture kept only the mean over heads (a run's `--attention summary`, or "
                   "`--head-reduce mean`): 'head 0' is that mean. Capture again with every head to see each one.")
    _heatmap(capture)
    _token_view(capture)
    _head_grid(capture)


# Each view below is a fragment: changing one of its widgets reruns just that figure, not the page.
@st.fragment
def _heatmap(capture: Any) -> None:
    from inspector.plots import interactive

    layer, head, agg = attention_controls(capture)
    try:
        fig = interactive.attention_heatmap(capture, layer=layer, head=head, agg=agg, height=_height(capture.seq_len))
    except ValueError as exc:  # e.g. "norm-weighted" on a capture without value norms: the package says what to do
        st.warning(f"Cannot draw this aggregate: {exc}")
        return
    st.plotly_chart(fig, key="fig_heatmap", width="stretch")


@st.fragment
def _token_view(capture: Any) -> None:
    from inspector.plots import default_position, interactive

    st.subheader("Pick a token, see where it looks")
    positions = list(range(capture.seq_len))
    state.sticky("att_token", default_position(capture), positions)
    pos = st.selectbox("Token", positions, key="att_token",
                       format_func=lambda i: f"{i}: {capture.tokens[i]!r} "
                       f"({'generated' if i >= capture.prompt_len else 'prompt'})")
    st.plotly_chart(interactive.token_attention(capture, pos), key="fig_token", width="stretch")


@st.fragment
def _head_grid(capture: Any) -> None:
    from inspector.plots import interactive

    st.subheader("All layers × heads")
    state.sticky("att_grid", False)  # off by default: the largest figure, drawn on request
    if st.toggle("Show the head grid", key="att_grid",
                 help="Every layer (rows) and head (columns) on one colour scale."):
        fig = interactive.head_grid(capture, max_cells=GRID_MAX_CELLS)
        if fig.layout.meta["factor"] > 1:
            st.caption(f"Each panel shows means over {fig.layout.meta['factor']}-token blocks so the grid draws "
                       "quickly; hover a cell for the positions it covers. **Export** writes a finer grid, "
                       "and choosing a layer and head above shows one head at full detail.")
        st.plotly_chart(fig, key="fig_grid", width="stretch")
