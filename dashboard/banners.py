"""Above every view: the title, the model banners, one-off messages and the line naming the shown capture."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from . import state
from .launch import LaunchOptions
from .text import md, md_paragraphs, stop_label


def title() -> None:
    """Title and what the page is: drawn first, before the model loads."""
    st.title("inspector: inside a language model as it generates")
    st.caption(
        "Pick a prompt and press **Generate**; then see how sure the model was of every token (Generation) "
        "and where each token looked (Attention), or compare many dialogue turns from a corpus run (Corpus)."
    )


def header(load: Any, req: state.ModelRequest) -> None:
    """The model banners (shown above every view); ``req`` is what was asked for."""
    m = load.model
    asked = req.name or "the model"
    if load.level == "demo":
        from inspector._fallback import demo_text

        st.info(f"**{asked!r} could not be loaded here.** {demo_text(m)}", icon=":material/school:")
        with st.expander("Why"):
            st.markdown(md_paragraphs(load.message))
    elif load.fell_back:
        where = m.name if load.level == "local-config" else "the built-in tiny model"
        st.error(
            f"**Could not load {asked!r}, so the page uses a GPT-2 with random weights instead "
            f"({where}): every view works, but the generated text is meaningless.**",
            icon=":material/error:",
        )
        with st.expander("Why, and how to load real weights"):
            # The package's message is worded for Python callers; say first what to do on this page.
            st.markdown("On this page: type a local folder holding GPT-2's config.json, tokenizer files and weights "
                        "in the sidebar's **Model** field, or switch on **Random weights** for a folder with only "
                        "config.json and the tokenizer.")
            st.markdown(md_paragraphs(load.message))
    elif m.random_weights:
        st.warning("**Random weights: the generated text is meaningless.** The views still show the real "
                   "mechanics (probabilities, attention) of this untrained network.", icon=":material/warning:")


def capture_line(settings: Any) -> None:
    """One line naming the capture every view shows (and whether the sidebar has changed since)."""
    cap = state.current_capture()
    if cap is None:
        st.info("No capture yet: choose a prompt in the **Prompt** tab and press **Generate**, or open a corpus "
                "run in the **Corpus** tab.", icon=":material/arrow_forward:")
        return
    origin = st.session_state.get(state.CAPTURE_ORIGIN, "")
    rnd = " · **random weights**" if cap.meta.random_weights else ""
    made = "forced (teacher-forced continuation)" if cap.meta.generation.get("mode") == "forced" else "generated"
    from inspector.plots.labels import intervention_note

    note = intervention_note(cap.meta.interventions)
    changed = f" · **{md(note)}**" if note else ""
    st.markdown(f"**Showing:** {md(origin)} · {cap.prompt_len} prompt + {cap.num_steps} {made} tokens · "
                f"stopped at: {stop_label(cap.stop_reason)}{rnd}{changed}")
    skey = st.session_state.get(state.CAPTURE_SETTINGS)
    if skey and settings is not None and skey != state.settings_key(settings):
        st.caption("The decoding settings have changed since this capture; press Generate to apply them.")


def flash() -> None:
    """The message the previous run left (a generation's end among them)."""
    msg = state.pop_flash()
    if msg:
        kind, text = msg
        getattr(st, kind, st.info)(text)


def open_launch_capture(opts: LaunchOptions) -> None:
    """Open the capture file the dashboard was launched with (``--capture``), once per browser session."""
    if not opts.capture or st.session_state.get("_launch_capture_tried"):
        return
    st.session_state["_launch_capture_tried"] = True
    try:
        cap = state.capture_file(opts.capture)
    except Exception as exc:  # noqa: BLE001 - missing, truncated, not a capture: say so, keep the page
        state.flash(f"Could not open the capture file given at launch ({opts.capture!r}): {exc}", "error")
        return
    state.set_capture(cap, f"file {Path(opts.capture).name}", switch_to="Generation")
    state.flash(f"Opened capture file {opts.capture}.")
