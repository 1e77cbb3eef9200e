"""The Prompt view: a DailyDialog turn or free text, its token budget, and the Generate (and Stop) button."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import state
from .dailydialog_picker import dailydialog_picker, dailydialog_problem, dailydialog_unavailable
from .text import stop_label

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
    clicked = st.button("Generate", type="primary", key="generate", disabled=settings is None,
                        help="Runs the model once and captures every step; views then redraw without "
                        "generating again.")
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
    calls = state.generate_calls()
    total = settings.max_new_tokens
    st.session_state[state.GENERATING] = {"done": 0, "total": total}
    st.button("Stop", key="stop_generation", icon=":material/stop_circle:",
              help="Stops this generation at once; nothing is kept.")
    bar = st.progress(0.0, text=f"Generating up to {total} tokens (other sessions wait their turn)…")

    def on_step(done: int, total: int) -> None:
        # Drawing into the page each step is also where Streamlit stops this run when the user
        # clicks Stop (or changes anything): its rerun request is raised from here.
        st.session_state[state.GENERATING] = {"done": done, "total": total}
        bar.progress(min(done / max(total, 1), 1.0), text=f"Generated {done} of up to {total} tokens…")

    try:
        cap = state.generate(load, req, prompt, settings, source, on_step=on_step)
    except Exception as exc:  # noqa: BLE001 - say so, keep the page (a Stop is not an Exception: it passes)
        st.session_state.pop(state.GENERATING, None)
        bar.empty()
        if isinstance(exc, ValueError):  # empty, too long, bad settings; CaptureError is a ValueError
            st.error(f"Could not generate: {exc}")
        else:  # e.g. out of memory on the device
            st.error(f"Generation failed ({type(exc).__name__}): {exc}. Try fewer new tokens, a shorter prompt "
                     "or the CPU.")
        return
    st.session_state.pop(state.GENERATING, None)
    origin = source.get("label") or "free-text prompt"
    secs = cap.meta.extra.get("dashboard_seconds")
    state.set_capture(cap, origin, state.settings_key(settings), switch_to="Generation")
    took = f" in {secs:.1f} s" if isinstance(secs, (int, float)) else ""
    if state.generate_calls() == calls:
        took += ", from the cache (same model, prompt and settings)"
    state.flash(f"Generated {cap.num_steps} tokens{took} (stopped at: {stop_label(cap.stop_reason)}). "
                "Open **Attention** to see where each token looked.")
    st.rerun()


def token_budget(load: Any, prompt: str, settings: Any) -> None:
    """How the prompt fits the model's context with room for the new tokens (nothing while settings are invalid)."""
    from inspector.capture import prompt_budget

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
