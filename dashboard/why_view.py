"""The "Why this token?" view: one generated token's context attribution, top parts, lens, and an ablation.

Every number comes from the package: :func:`inspector.analysis.context_attribution.context_attribution`,
:func:`inspector.analysis.direct_logit.logit_attribution`, :func:`inspector.analysis.lens.capture_lens` and
:func:`inspector.analysis.compare.compare_captures`, drawn by the ``attribution``, ``logit-attribution``,
``lens`` and ``compare`` figures. Each analysis runs the loaded model once per capture (and method) and is kept
in the browser session; the ablated run is generated through :func:`dashboard.state.generate` (the
process-wide capture cache and generation lock).
"""

from __future__ import annotations

import dataclasses
from collections import OrderedDict
from collections.abc import Callable
from typing import Any

import streamlit as st

from . import state
from .text import md

#: Session key of the analyses computed in this browser session: ``{(capture id, what, ...): result}``.
RESULTS = "_why_results"
#: Analyses kept per browser session (the oldest is dropped first).
RESULTS_KEPT = 12
#: Session key of the last ablated run: ``(the capture it was made for, the ablated capture, its settings' origin)``.
ABLATED = "_why_ablated"
#: Bars of the logit-attribution figure.
TOP_PARTS = 10
#: Candidates per layer the lens keeps (the figure shows the first).
LENS_K = 5


def capture_id(capture: Any) -> str:
    return f"{id(capture)}:{capture.seq_len}:{capture.meta.model}"


def view_title(capture: Any) -> str:
    """The view's title: says what was ablated or patched when the capture's run was changed."""
    from inspector.plots.labels import intervention_note

    note = intervention_note(capture.meta.interventions)
    return "Why this token?" + (f" ({note})" if note else "")


def why_panel(capture: Any, loaded: Any, request: state.ModelRequest, settings: Any) -> None:
    """Pick a generated token; see what in the context, and which parts of the model, made it; ablate parts."""
    if capture is None:
        st.info("Generate or open a capture first (Prompt or Corpus view).")
        return
    st.subheader(md(view_title(capture)))
    if not capture.num_steps:
        st.info("This capture generated no token: there is nothing to explain.")
        return
    if capture.meta.model and capture.meta.model != loaded.model.name:
        st.warning(f"This capture was made with {md(capture.meta.model)}, the loaded model is "
                   f"{md(loaded.model.name)}: load that model to explain its tokens.")
        return
    if capture.meta.interventions:
        # The attributions and the lens run the model unchanged: they would explain another run than this one.
        st.info("This capture's run was changed (see the title), and the attributions and the lens run the "
                "model unchanged, so they are not shown: open the unchanged run to explain its tokens.")
    else:
        step = _pick_step(capture)
        _context(capture, loaded, step)
        _parts(capture, loaded, step)
        _lens(capture, loaded, step)
    _ablate(capture, loaded, request, settings)


def _token_label(capture: Any, step: int) -> str:
    from inspector.plots.labels import display_token

    # The slider draws its labels as markdown: a token such as "*" or "$" must stay text.
    return f"{step}: {md(display_token(capture.tokens[capture.prompt_len + step]))}"


def _pick_step(capture: Any) -> int:
    steps = list(range(capture.num_steps))
    state.sticky("why_step", 0, steps)
    picked = st.select_slider("Generated token", steps, key="why_step", format_func=lambda s: _token_label(capture, s),
                              disabled=len(steps) < 2, help="The step explained below, counted from 0.")
    return int(picked or 0)


def cached(capture: Any, what: tuple[Any, ...], compute: Callable[[], Any]) -> Any:
    """``compute()`` once per capture and ``what`` in this browser session (the newest :data:`RESULTS_KEPT`)."""
    store: OrderedDict[tuple[Any, ...], tuple[Any, Any]] = st.session_state.setdefault(RESULTS, OrderedDict())
    key = (capture_id(capture), *what)
    found = store.get(key)
    if found is not None and found[0] is capture:  # kept with its capture, so the id is not reused meanwhile
        store.move_to_end(key)
        return found[1]
    value = compute()
    store[key] = (capture, value)
    while len(store) > RESULTS_KEPT:
        store.popitem(last=False)
    return value


@st.fragment
def _context(capture: Any, loaded: Any, step: int) -> None:
    from inspector.analysis.choices import CONTEXT_METHODS, IG_TOLERANCE
    from inspector.analysis.context_attribution import context_attribution
    from inspector.plots import make_figure
    from inspector.plots.context_attribution_data import METHOD_LABELS

    st.markdown("#### Which earlier tokens made it likely")
    st.caption("Each earlier token coloured by how much it moved the log-probability of the picked token: red "
               "raised it, blue lowered it. Input x gradient is one gradient per token; integrated gradients "
               "average the gradient along a path from a baseline (slower, more faithful); occlusion removes "
               "one token at a time.")
    methods = list(CONTEXT_METHODS)
    state.sticky("why_method", "input_x_gradient", methods)
    state.sticky("why_ig_steps", 32)
    c1, c2 = st.columns([3, 1])
    method = c1.segmented_control("Method", methods, key="why_method", required=True,
                                  format_func=lambda m: METHOD_LABELS.get(m, m)) or "input_x_gradient"
    steps = int(c2.number_input("Integration steps", 1, 256, key="why_ig_steps",
                                disabled=method != "integrated_gradients",
                                help="The first quadrature nodes of integrated gradients; more are added where "
                                     "a token's scores do not yet sum to its change of log-probability within "
                                     f"{IG_TOLERANCE:.0%} (the title says how many it took and how close they "
                                     "came)."))
    steps = steps if method == "integrated_gradients" else 1
    try:
        with st.spinner(f"Attributing with {METHOD_LABELS.get(method, method)} ..."):
            attribution = cached(capture, ("context", method, steps), lambda: context_attribution(
                capture, loaded.model, method=method, steps=steps))
        page = make_figure("attribution", capture, interactive=True, attribution=attribution, step=step)
    except ValueError as exc:
        st.error(f"Context attribution: {md(str(exc))}")
        return
    with st.container(key="why_attribution"):
        st.html(page)


@st.fragment
def _parts(capture: Any, loaded: Any, step: int) -> None:
    from inspector.analysis.choices import ATTRIBUTION_TARGETS
    from inspector.analysis.direct_logit import logit_attribution
    from inspector.plots import make_figure
    from inspector.plots.logit_attribution_data import TARGET_LABELS

    st.markdown("#### Which parts of the model wrote it")
    st.caption(f"The {TOP_PARTS} heads, MLPs and embeddings whose direct contribution to the logit is largest "
               "(the final norm's scale frozen at its value for this position; what later layers make of a "
               "part is not counted). Red raises the target, blue lowers it.")
    targets = list(ATTRIBUTION_TARGETS)
    state.sticky("why_target", targets[0], targets)
    target = st.segmented_control("Explain", targets, key="why_target", required=True,
                                  format_func=lambda t: TARGET_LABELS.get(t, t)) or targets[0]
    try:
        with st.spinner("Attributing the logit to the model's parts ..."):
            attribution = cached(capture, ("logit", target), lambda: logit_attribution(capture, loaded.model,
                                                                                        target=target))
        fig = make_figure("logit-attribution", capture, interactive=True, attribution=attribution, step=step,
                          top=TOP_PARTS)
    except ValueError as exc:
        st.error(f"Logit attribution: {md(str(exc))}")
        return
    st.plotly_chart(fig, key="fig_why_parts", width="stretch")


@st.fragment
def _lens(capture: Any, loaded: Any, step: int) -> None:
    from inspector.analysis.lens import capture_lens
    from inspector.plots import make_figure

    position = capture.prompt_len + step - 1
    st.markdown("#### What each layer would have said")
    st.caption(f"The logit lens at position {position}, the one that predicts the picked token: each layer's "
               "hidden state decoded through the final norm and the unembedding. A cell is that layer's most "
               "likely next token, its colour the probability; hover for the picked token's rank there.")
    try:
        with st.spinner("Decoding every layer ..."):
            lens = cached(capture, ("lens", LENS_K), lambda: capture_lens(capture, loaded.model, k=LENS_K))
        fig = make_figure("lens", capture, interactive=True, model=loaded.model, lens=lens,
                          positions=[position], width=560)
    except ValueError as exc:
        st.error(f"Logit lens: {md(str(exc))}")
        return
    st.plotly_chart(fig, key="fig_why_lens", width="content")


def ablation_settings(capture: Any, settings: Any, parts: tuple[str, ...], mode: str) -> tuple[Any, str]:
    """The settings ``capture`` was generated with (the sidebar's when it records none), with ``ablate=parts``;
    and where they came from, in words."""
    from inspector._store_checks import generation_settings

    recorded = generation_settings(capture)
    base, origin = (recorded, "generated with A's settings") if recorded is not None else (
        settings, "generated with the sidebar's settings: A records none")
    if base is None:
        raise ValueError("the sidebar's settings are invalid; fix them first")
    return dataclasses.replace(base, ablate=parts, ablate_mode=mode), origin


def _model_parts(model: Any) -> str:
    """What the loaded model has, in words (markdown)."""
    return (f"The loaded model ({md(model.name)}) has {model.num_layers} layers (0 to {model.num_layers - 1}), "
            f"each with {model.num_heads} heads (0 to {model.num_heads - 1}).")


@st.fragment
def _ablate(capture: Any, loaded: Any, request: state.ModelRequest, settings: Any) -> None:
    from inspector._capture.settings import ABLATE_MODES
    from inspector._components import ABLATE_HELP, parse_components

    m = loaded.model
    st.markdown("#### Ablate: switch parts off and generate again")
    st.caption(f"Generates the same prompt with the same settings, these parts switched off ({ABLATE_HELP}), "
               f"and compares the two runs step by step. {_model_parts(m)}")
    state.sticky("why_ablate", "")
    state.sticky("why_ablate_mode", ABLATE_MODES[0], ABLATE_MODES)
    c1, c2 = st.columns([3, 1])
    typed = c1.text_input("Parts to ablate", key="why_ablate", placeholder="L0.H1, L1.mlp", help=ABLATE_HELP)
    mode = c2.segmented_control("Replace by", list(ABLATE_MODES), key="why_ablate_mode", required=True,
                                help="zero, or the part's mean over the prompt's positions") or ABLATE_MODES[0]
    if st.button("Ablate", key="why_ablate_go", icon=":material/content_cut:",
                 help="Generates the ablated run (cached: the same parts again are instant)."):
        try:
            names = tuple(c.name for c in parse_components(typed, m.num_layers, m.num_heads))
            if not names:
                raise ValueError(f"name at least one part: {ABLATE_HELP}")
        except ValueError as exc:
            st.error(f"Cannot ablate: {md(str(exc))}. {_model_parts(m)}")
            return
        try:
            wanted, origin = ablation_settings(capture, settings, names, mode)
            ablated = state.generate(loaded, request, capture.prompt_text, wanted, dict(capture.meta.source))
        except ValueError as exc:
            st.error(f"Could not generate the ablated run: {md(str(exc))}")
            return
        st.session_state[ABLATED] = (capture, ablated, origin)
    saved = st.session_state.get(ABLATED)
    if saved is None or saved[0] is not capture:
        return
    _comparison(capture, saved[1], saved[2])


def _comparison(capture: Any, ablated: Any, origin: str) -> None:
    from inspector._formatting import format_percent
    from inspector.analysis.compare import compare_captures
    from inspector.plots import make_figure
    from inspector.plots.labels import intervention_note

    note = intervention_note(ablated.meta.interventions)
    try:
        cmp = compare_captures(capture, ablated)
        fig = make_figure("compare", capture, interactive=True, other=ablated)
    except ValueError as exc:  # CompareError included: nothing aligns
        st.error(f"Cannot compare: {md(str(exc))}")
        return
    if cmp.first_divergent_step is None:
        parted = "The ablated run generated the same tokens over the compared steps."
    else:
        a, b = cmp.first_divergent_labels or ("", "")
        parted = (f"The runs part at step {cmp.first_divergent_step}: A generated {md(repr(a))}, "
                  f"B {md(repr(b))}.")
    st.markdown(f"**A** (this capture): {md(repr(capture.generated_text))}  \n"
                f"**B** ({md(note)}; {md(origin)}): {md(repr(ablated.generated_text))}  \n"
                f"Top-1 agreement: {format_percent(cmp.agreement)} ({int(cmp.top1_agree.sum())} of "
                f"{cmp.num_steps} steps). {parted}")
    st.plotly_chart(fig, key="fig_why_compare", width="stretch")
    if st.button("Show the ablated run in every view", key="why_ablate_show", icon=":material/visibility:"):
        origin_line = st.session_state.get(state.CAPTURE_ORIGIN, "")
        state.set_capture(ablated, f"{origin_line} · {note}" if origin_line else note)
        st.rerun()
