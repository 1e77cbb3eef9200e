"""The Prompt view: a DailyDialog turn or free text, its token budget, and the Generate button."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import job_view, state
from .dailydialog_picker import dailydialog_picker, dailydialog_problem, dailydialog_unavailable

DEFAULT_PROMPT = "User: hey how are you? \nAgent:"


def prompt_panel(load: Any, req: state.ModelRequest, settings: Any, settings_error: str | None) -> None:
    """DailyDialog turn picker or free text, and the Generate button."""
    st.subheader("1 · Choose a prompt")
    if "prompt_source" not in st.session_state and not state.remembered("prompt_source"):
        # A page that cannot load DailyDialog opens on free text (with a prompt), so Generate works at once.
        problem = dailydialog_problem()
        if problem is not None:
            dailydialog_unavailable(problem)
        state.sticky("prompt_source", "DailyDialog turn" if problem is None else "Free text")
    state.sticky("prompt_source", "DailyDialog turn")
    source_kind = st.radio("Prompt source", ["DailyDialog turn", "Free text"], key="prompt_source",
                           horizontal=True)
    prompt, source = None, {"kind": "text"}
    if source_kind == "DailyDialog turn":
        picked = dailydialog_picker(load, settings)
        if picked is not None:
            prompt, source = picked
    else:
        prompt, source = _free_text(load)
    if prompt is not None:
        token_budget(load, prompt, settings)
    st.subheader("2 · Generate")
    busy = job_view.running()
    clicked = st.button("Generate", type="primary", key="generate", disabled=settings is None or busy,
                        help="Runs the model once and captures every step; views then redraw without "
                        "generating again.")
    if busy:
        st.caption("A generation is running (its progress is at the top of the page).")
    if settings_error:
        st.caption(f"Fix the decoding settings first: {settings_error}")
    if not clicked:
        return
    if prompt is None or not prompt.strip():
        st.error("The prompt is empty: pick a DailyDialog turn or type some text.")
        return
    _generate(load, req, prompt, settings, source)


def _free_text(load: Any) -> tuple[str | None, dict[str, Any]]:
    """The free-text box and, for a model with a chat template, the choice to send it as one user message."""
    from inspector.data.chat import has_chat_template
    from inspector.data.prompts import chat_text_prompt

    state.sticky("free_text", DEFAULT_PROMPT)
    text = st.text_area("Prompt", key="free_text", height=120,
                        help="The model continues this text. The DailyDialog prompts use 'User:' and "
                        "'Agent:' lines ending with 'Agent:', or the model's chat template.")
    tokenizer = load.model.tokenizer
    state.sticky("free_chat", False)
    chat = st.checkbox("Send as one chat message", key="free_chat", disabled=not has_chat_template(tokenizer),
                       help="Write the text as one user message in the model's chat template (with the "
                       "generation prompt after it), instead of continuing it as it is. Only for models with "
                       "a chat template.")
    if not chat or not has_chat_template(tokenizer) or not text.strip():
        return text, {"kind": "text"}
    prompt = chat_text_prompt(text, tokenizer)
    with st.expander("Prompt sent to the model", expanded=False):
        st.code(prompt.text, language=None, wrap_lines=True)
    return prompt.text, prompt.source()


def _generate(load: Any, req: state.ModelRequest, prompt: str, settings: Any, source: dict[str, Any]) -> None:
    """Start the generation in the background (see :mod:`dashboard.job_view`): other tabs stay usable."""
    job_view.start(load, req, prompt, settings, source)


def token_budget(load: Any, prompt: str, settings: Any) -> None:
    """How the prompt fits the model's context with room for the new tokens (nothing while settings are invalid)."""
    from inspector._capture.encode import prompt_budget

    if not prompt.strip() or settings is None:
        return
    budget = prompt_budget(load.model, prompt, settings)
    note = (f"{budget.prompt_tokens} prompt tokens + up to {budget.max_new_tokens} new ones; the model's context "
            f"holds {budget.context_length}.")
    if budget.fits:
        st.caption(note)
    elif budget.truncate:
        st.warning(note + " The oldest prompt tokens will be dropped.")
    else:
        st.warning(note + " Too long: shorten the prompt, lower Max new tokens, or allow dropping prompt tokens "
                   "under More settings.")
