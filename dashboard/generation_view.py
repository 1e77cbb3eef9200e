"""The Generation view: summary numbers, the coloured text, and the candidates the model weighed at each step."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import state
from .text import stop_label


def generation_panel(capture: Any) -> None:
    """Coloured text, summary numbers, top-k candidates per step and the entropy curve."""
    from inspector._formatting import format_prob, format_value
    from inspector._metrics import score_metrics

    if capture is None:
        return
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Generated tokens", capture.num_steps)
    m2.metric("Stopped at", stop_label(capture.stop_reason),
              help="end of text: the model chose its end-of-text token; token limit: Max new tokens was "
              "reached; stop string: the text ended with one of the stop strings.")
    if capture.num_steps:
        scores = score_metrics(capture)
        m3.metric("Mean entropy (nats)", format_value(scores['entropy_mean']),
                  help="How spread out the next-token distribution was, averaged over steps: 0 means certain; "
                  "the log of the vocabulary size means no preference at all.")
        m4.metric("Mean chosen probability", format_prob(scores['chosen_prob_mean']),
                  help="The probability the model gave each token it actually produced, averaged over steps.")
    _coloured_text(capture)
    if not capture.num_steps:
        st.info("Nothing was generated (the model ended the text at once).")
        return
    _candidates(capture)


_COLOUR_BY = {"prob": "probability of the chosen token", "entropy": "entropy (uncertainty)"}


# Each view below is a fragment: changing one of its widgets reruns just that fragment (its
# figure), not the whole page, which keeps redraws on a 100-token 12 x 12-head capture short.
@st.fragment
def _coloured_text(capture: Any) -> None:
    from inspector.plots import interactive

    st.subheader("Generated text")
    state.sticky("gen_color_by", "prob", ["prob", "entropy"])
    color_by = st.segmented_control(
        "Colour generated tokens by", ["prob", "entropy"], key="gen_color_by", required=True,
        format_func=lambda v: _COLOUR_BY.get(v, v),
    ) or "prob"
    st.html(interactive.text_html(capture, color_by=color_by))


@st.fragment
def _candidates(capture: Any) -> None:
    from inspector._report import step_rows
    from inspector.plots import interactive

    st.subheader("What the model almost chose, step by step")
    state.sticky("gen_topk", min(5, capture.raw.k), range(1, capture.raw.k + 1))
    k = st.slider("Candidates shown", 1, max(capture.raw.k, 2), key="gen_topk")
    st.plotly_chart(interactive.topk_steps(capture, k=k), key="fig_topk", width="stretch")
    # Built only while open: on a 100-step capture the table added to every redraw of this view.
    table = st.expander("Table of candidates per step", key="gen_table_open", on_change="rerun")
    if table.open:
        with table:
            st.dataframe(step_rows(capture, k), hide_index=True, key="topk_table", width="stretch")
