"""The Analysis view: logit lens, attention rollout, head statistics, and the same prompt under other settings."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from typing import Any

import streamlit as st

from . import state
from .text import md

#: Session key of the second capture of a comparison, with the key of the capture it was made for.
COMPARE_CAPTURE = "_compare_capture"
#: The second decoding choice a comparison offers.
COMPARE_DECODING = {"greedy": "Greedy", "sample": "Sampling", "beam": "Beam search (4 beams)"}
#: Session key of the returned beams of the current capture's search, with the key of that capture.
BEAMS_CAPTURE = "_compare_beams"
#: Most positions the lens grid shows at once (a window over the sequence): 13 rows x 48 cells of words.
LENS_WINDOW = 48
#: The head rankings shown under the head statistics: (statistic, table title), and how many heads each lists.
HEAD_RANKINGS = (("induction", "Top heads by induction score"), ("previous", "Top heads by previous-token score"))
RANKING_TOP = 10


def analysis_panel(capture: Any, loaded: Any, request: state.ModelRequest, settings: Any) -> None:
    """Lens, rollout, head statistics and comparison of the current capture, each drawn on request."""
    if capture is None:
        st.info("Generate or open a capture first (Prompt or Corpus view).")
        return
    _lens(capture, loaded)
    if not capture.attention_layout.whole_grid:
        st.info(f"This capture kept part of the attention ({capture.attention_layout.describe()}): rollout and "
                "head statistics need every layer, head and row. Generate here, or capture again without "
                "`--layers`, `--heads` and `--attention-rows generated`.")
    elif capture.attentions is None:
        st.warning("This capture kept no attention weights, so rollout, head statistics and the attention "
                   "comparison are unavailable. Generate here, or run with `--attention full`.")
    else:
        _rollout(capture)
        _head_stats(capture)
    _compare(capture, loaded, request, settings)
    if int(capture.meta.generation.get("num_beams") or 1) > 1:
        _beams(capture, loaded, request, settings)


def capture_id(capture: Any) -> str:
    return f"{id(capture)}:{capture.seq_len}:{capture.meta.model}"


@st.fragment
def _lens(capture: Any, loaded: Any) -> None:
    from inspector.plots import interactive

    st.subheader("Logit lens: what each layer would say next")
    st.caption("Each layer's hidden state decoded through the final layer norm and the unembedding; the top row "
               "is the model's output. A cell shows the most likely next token, its colour the probability.")
    state.sticky("an_lens", False)  # one forward pass and a vocabulary-sized product per layer: on request
    if not st.toggle("Show the logit lens", key="an_lens",
                     help="Recomputes the hidden states with the loaded model (one forward pass)."):
        return
    if capture.meta.model and capture.meta.model != loaded.model.name:
        st.warning(f"This capture was made with {capture.meta.model}, the loaded model is {loaded.model.name}: "
                   "load that model to see its lens.")
        return
    n = capture.seq_len
    first = max(0, min(capture.prompt_len - 1, n - LENS_WINDOW)) if n > LENS_WINDOW else 0
    state.sticky("an_lens_start", first, range(n))
    start = st.slider("First position shown", 0, n - 1, key="an_lens_start", disabled=n <= LENS_WINDOW,
                      help=f"The grid shows {LENS_WINDOW} positions at a time.")
    positions = list(range(start, min(n, start + LENS_WINDOW)))
    try:
        fig = interactive.lens_grid(capture, model=loaded.model, k=5, positions=positions)
    except ValueError as exc:
        st.error(f"Logit lens: {exc}")
        return
    if _lens_mismatch(capture, fig):
        st.warning("The loaded model does not predict what this capture's model did: its lens would mislead. "
                   "Load the model that made the capture.")
        return
    st.plotly_chart(fig, key="fig_lens", width="stretch")


def _lens_mismatch(capture: Any, fig: Any) -> bool:
    """The output row disagrees with the capture's own top-1 at the first step (another model's weights)."""
    meta = fig.layout.meta
    positions = list(meta["positions"])
    col = capture.prompt_len - 1
    if not capture.num_steps or col not in positions:
        return False
    words: Sequence[str] = fig.data[0].text[-1]
    from inspector.plots.labels import display_token, html_label

    return words[positions.index(col)] != html_label(display_token(capture.label(int(capture.raw.topk_ids[0, 0]))))


@st.fragment
def _rollout(capture: Any) -> None:
    from inspector.plots import interactive

    st.subheader("Attention rollout: which earlier tokens fed each position")
    st.caption("Heads averaged, the residual path added as the identity, multiplied through the layers "
               "(Abnar & Zuidema 2020). Each row is a distribution over earlier tokens.")
    layers, heads = list(range(capture.num_layers)), list(range(capture.num_heads))
    state.sticky("an_roll_r", 0.5)
    state.sticky("an_roll_layers", layers)
    state.sticky("an_roll_heads", heads)
    c1, c2, c3 = st.columns([1, 1, 1])
    r = c1.slider("Residual weight", 0.0, 1.0, step=0.05, key="an_roll_r",
                  help="r in (1 - r)·A + r·I; 0.5 as in the paper.")
    chosen_layers = c2.multiselect("Layers", layers, key="an_roll_layers")
    chosen_heads = c3.multiselect("Heads", heads, key="an_roll_heads")
    if not chosen_layers or not chosen_heads:
        st.info("Choose at least one layer and one head.")
        return
    fig = interactive.rollout_heatmap(capture, layers=chosen_layers, heads=chosen_heads, residual_weight=float(r),
                                      height=700 if capture.seq_len > 32 else None)
    st.plotly_chart(fig, key="fig_rollout", width="stretch")


@st.fragment
def _head_stats(capture: Any) -> None:
    from inspector.analysis.choices import ROW_CHOICES, STATISTICS
    from inspector.plots import interactive

    st.subheader("Head statistics")
    st.caption("Per layer and head: attention entropy, how far back it looks, its share on the first token "
               "(sink), previous-token, induction and self scores, and its shares on prompt and generated "
               "tokens. The induction score is the share on the token that followed the last earlier "
               "occurrence of the current token, over the tokens that occurred before.")
    state.sticky("an_hs_rows", "all", ROW_CHOICES)
    state.sticky("an_hs_stats", ["entropy", "distance", "sink", "previous"])
    c1, c2 = st.columns([1, 3])
    rows = c1.segmented_control("Query rows", list(ROW_CHOICES), key="an_hs_rows", required=True,
                                help="Which tokens' attention the statistics average over.") or "all"
    names = c2.multiselect("Statistics", list(STATISTICS), key="an_hs_stats")
    if not names:
        st.info("Choose at least one statistic.")
        return
    try:
        fig = interactive.head_stats_heatmap(capture, rows=rows, statistics=names)
    except ValueError as exc:
        st.info(f"Head statistics: {exc}")
        return
    st.plotly_chart(fig, key="fig_head_stats", width="stretch")
    _head_rankings(capture, rows)


def _head_rankings(capture: Any, rows: str) -> None:
    """The heads with the highest induction and previous-token scores over the chosen rows, as tables."""
    from inspector.analysis.head_stats import capture_head_stats, rank_heads

    stats = capture_head_stats(capture, rows)
    for column, (statistic, title) in zip(st.columns(len(HEAD_RANKINGS)), HEAD_RANKINGS, strict=True):
        column.markdown(f"**{title}**")
        table = rank_heads(stats, statistic, top=RANKING_TOP)
        if table.empty:
            column.info(f"No {statistic} score over these rows: no token in them occurred earlier in the sequence."
                        if statistic == "induction" else f"No {statistic} score over these rows.")
            continue
        column.dataframe(table, key=f"an_hs_rank_{statistic}", hide_index=True, width="stretch")


def second_settings(settings: Any, mode: str, temperature: float, seed: int) -> Any:
    """The sidebar's settings with the decoding replaced by the comparison's choice."""
    return dataclasses.replace(
        settings, do_sample=mode == "sample", temperature=float(temperature) if mode == "sample" else 1.0,
        top_k=settings.top_k if mode == "sample" else None, top_p=settings.top_p if mode == "sample" else 1.0,
        num_beams=4 if mode == "beam" else 1, seed=int(seed))


@st.fragment
def _compare(capture: Any, loaded: Any, request: state.ModelRequest, settings: Any) -> None:
    from inspector.plots import interactive

    st.subheader("Compare: this prompt again with other settings")
    st.caption("Generates the same prompt a second time (B) with the decoding chosen here and the sidebar's "
               "other settings, then compares the current capture (A) with it step by step: KL divergence and "
               "top-1 agreement where the generations agree, the first step where they part, and the "
               "difference of attention over the tokens they share.")
    state.sticky("an_cmp_decoding", "sample", list(COMPARE_DECODING))
    state.sticky("an_cmp_temperature", 1.0)
    state.sticky("an_cmp_seed", 1)
    c1, c2, c3 = st.columns([2, 1, 1])
    choices: list[str] = list(COMPARE_DECODING)
    mode: str = c1.selectbox("B's decoding", choices, key="an_cmp_decoding",
                             format_func=lambda m: COMPARE_DECODING[m]) or "sample"
    temperature = c2.slider("B's temperature", 0.05, 2.0, step=0.05, key="an_cmp_temperature",
                            disabled=mode != "sample")
    seed = c3.number_input("B's seed", 0, 2**31 - 1, key="an_cmp_seed", disabled=mode != "sample")
    if st.button("Compare", key="an_cmp_go", icon=":material/compare_arrows:", disabled=settings is None,
                 help="Generates B (cached: the same choice again is instant)."):
        try:
            b_settings = second_settings(settings, mode, temperature, seed)
            other = state.generate(loaded, request, capture.prompt_text, b_settings, dict(capture.meta.source))
        except ValueError as exc:
            st.error(f"Could not generate B: {exc}")
            return
        st.session_state[COMPARE_CAPTURE] = (capture_id(capture), other, COMPARE_DECODING[mode])
    saved = st.session_state.get(COMPARE_CAPTURE)
    if saved is None or saved[0] != capture_id(capture):
        return
    _, other, label = saved
    try:
        fig = interactive.compare_view(capture, other)
    except ValueError as exc:  # CompareError included: nothing aligns
        st.error(f"Cannot compare: {exc}")
        return
    st.markdown(f"**A** (current): {md(repr(capture.generated_text))}  \n"
                f"**B** ({label}): {md(repr(other.generated_text))}")
    st.plotly_chart(fig, key="fig_compare", width="stretch")


def search_beams(loaded: Any, request: state.ModelRequest, capture: Any, settings: Any) -> list[Any]:
    """Every beam the current capture's search returns: the prompt again with ``num_return_sequences = num_beams``.

    Cached like :func:`state.generate` (same store and lock), under a key of its own;
    the search is the same, so beam 0 is the current capture when the sidebar still
    holds the settings that made it.
    """
    beams = int(capture.meta.generation["num_beams"])
    wanted = dataclasses.replace(settings, num_beams=beams, num_return_sequences=beams)
    source = dict(capture.meta.source)
    key = ("beams", state.model_key(loaded, request), capture.prompt_text, state.settings_key(wanted),
           json.dumps(source, sort_keys=True, default=str))
    store = state.capture_store()
    found = store.get(key)
    if found is None:
        with state.generation_lock():
            found = store.get(key) or loaded.model.generate([capture.prompt_text], settings=wanted, sources=[source])
        store.put(key, found)
    return list(found)


@st.fragment
def _beams(capture: Any, loaded: Any, request: state.ModelRequest, settings: Any) -> None:
    from inspector.plots import interactive

    beams = int(capture.meta.generation["num_beams"])
    st.subheader("Compare two beams of this search")
    st.caption(f"This capture is the best of {beams} beams. Shows two of the returned beams the same way: KL and "
               "top-1 agreement at the steps whose context they share, the step where they part, and the "
               "difference of their attention over the shared tokens.")
    state.sticky("an_beam_a", 0, range(beams))
    state.sticky("an_beam_b", 1, range(beams))
    c1, c2 = st.columns(2)
    i = c1.selectbox("Beam", list(range(beams)), key="an_beam_a", help="0 is the best (this capture).")
    j = c2.selectbox("against beam", list(range(beams)), key="an_beam_b")
    if st.button("Compare beams", key="an_beams_go", icon=":material/compare_arrows:",
                 disabled=settings is None or i == j, help="Runs the search again, returning every beam (cached)."):
        try:
            found = search_beams(loaded, request, capture, settings)
        except ValueError as exc:
            st.error(f"Could not run the search again: {exc}")
            return
        st.session_state[BEAMS_CAPTURE] = (capture_id(capture), found)
    saved = st.session_state.get(BEAMS_CAPTURE)
    if saved is None or saved[0] != capture_id(capture) or i == j:
        return
    found = saved[1]
    if not _same_tokens(found[0].token_ids, capture.token_ids):
        st.warning("The sidebar's settings changed since this capture was made, so the search returns other "
                   "beams: generate again, then compare its beams.")
        return
    try:
        fig = interactive.beams_view(found, pair=(int(i or 0), int(j or 0)))
    except ValueError as exc:
        st.error(f"Cannot compare: {exc}")
        return
    st.markdown(f"**beam {i}**: {md(repr(found[int(i or 0)].generated_text))}  \n"
                f"**beam {j}**: {md(repr(found[int(j or 0)].generated_text))}")
    st.plotly_chart(fig, key="fig_beams", width="stretch")


def _same_tokens(a: Any, b: Any) -> bool:
    return tuple(a.shape) == tuple(b.shape) and bool((a == b).all())
