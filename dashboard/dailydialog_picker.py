"""The DailyDialog turn picker: split, folder, label filters, a turn list, the dialogue and the prompt built."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import state
from .text import md, short

#: Most turns offered in the DailyDialog turn list at once (the filters narrow it).
TURN_OPTIONS_LIMIT = 400


def dailydialog_unavailable(exc: BaseException) -> None:
    """Say why DailyDialog could not be loaded and how to point at a local copy."""
    st.warning(
        f"**DailyDialog could not be loaded:** {exc}\n\n"
        "Point at a local copy: type its folder under **DailyDialog turn**, set "
        "`INSPECTOR_DAILYDIALOG_DIR=/path/to/dailydialog` before starting, or start with "
        "`inspector dashboard --dailydialog /path/to/dailydialog`. The folder holds the original release "
        "(`validation/dialogues_validation.txt` with its act and emotion files) or Parquet/CSV/JSONL files with "
        "dialog, act and emotion columns. Meanwhile, **Free text** prompts work.",
        icon=":material/folder_open:",
    )


def dailydialog_problem() -> BaseException | None:
    """Why the default DailyDialog split cannot be loaded, or ``None`` when it can (the load is cached)."""
    try:
        state.load_turns("validation", None)
    except Exception as exc:  # noqa: BLE001 - any failure is shown to the user, not raised
        return exc
    return None


def dailydialog_picker(load: Any, settings: Any) -> tuple[str, dict[str, Any]] | None:
    """Split, filters, a turn list, the dialogue with its labels and the reference response."""
    from inspector.data.dailydialog import ACT_NAMES, EMOTION_NAMES, filter_turns
    from inspector.data.prompts import DEFAULT_CONTEXT_TURNS, build_prompt
    from inspector.data.schema import NO_LABEL

    c1, c2 = st.columns([1, 3])
    splits = ["validation", "test", "train"]
    state.sticky("dd_split", "validation", splits)
    state.sticky("dd_dir", state.dailydialog_source() or "")
    split = c1.selectbox("Split", splits, key="dd_split")
    where = c2.text_input("DailyDialog folder (empty: INSPECTOR_DAILYDIALOG_DIR, else the Hugging Face Hub)",
                          key="dd_dir")
    try:
        with st.spinner("Loading DailyDialog…"):
            turns = state.load_turns(split, where.strip() or None)
    except Exception as exc:  # noqa: BLE001 - any failure: say how to fix, keep free text working
        dailydialog_unavailable(exc)
        return None
    acts, emotions = list(ACT_NAMES.values()), list(EMOTION_NAMES.values())
    for key in ("f_act", "f_emotion", "f_response_act", "f_response_emotion"):
        state.sticky(key, [])
    state.sticky("f_text", "")
    state.sticky("f_has_response", True)
    f1, f2, f3, f4 = st.columns(4)
    act = f1.multiselect("Turn act", acts, key="f_act", placeholder="any")
    emotion = f2.multiselect("Turn emotion", emotions, key="f_emotion", placeholder="any")
    r_act = f3.multiselect("Response act", acts, key="f_response_act", placeholder="any")
    r_emotion = f4.multiselect("Response emotion", emotions, key="f_response_emotion", placeholder="any")
    s1, s2 = st.columns([3, 1])
    text = s1.text_input("Search the turn's text", key="f_text", placeholder="e.g. dinner")
    need_response = s2.checkbox("Has a reference response", key="f_has_response",
                                help="The last turn of a dialogue has no reference reply to compare with.")
    found = filter_turns(turns, act=act or None, emotion=emotion or None, response_act=r_act or None,
                         response_emotion=r_emotion or None, text=text.strip() or None,
                         has_response=True if need_response else None)
    if found.empty:
        st.info(f"No turn of the {len(turns)} in {split} matches these filters; loosen them.")
        return None
    shown = found.head(TURN_OPTIONS_LIMIT)
    keys = [(int(r.dial_id), int(r.turn)) for r in shown.itertuples()]
    labels = {k: f"dialogue {r.dial_id} · turn {r.turn} · {r.act}/{r.emotion} → "
                 f"{_label(r.response_act, NO_LABEL)}/{_label(r.response_emotion, NO_LABEL)} · {short(r.utterance, 70)}"
              for k, r in zip(keys, shown.itertuples(), strict=True)}
    more = f" (the first {TURN_OPTIONS_LIMIT} are listed; narrow with the filters)" if len(found) > len(shown) else ""
    state.sticky("dd_turn", keys[0], keys)
    state.sticky("dd_context", DEFAULT_CONTEXT_TURNS)
    picked = st.selectbox(f"Turn: {len(found)} of {len(turns)} match{more}", keys,
                          format_func=lambda k: labels[k], key="dd_turn")
    if picked is None:
        return None
    dial_id, turn = picked
    tokenizer = load.model.tokenizer
    c1, c2 = st.columns([2, 1])
    context = c1.slider("Context turns in the prompt", 1, 10, key="dd_context",
                        help="How many dialogue turns, ending with the chosen one, go into the prompt.")
    form = prompt_form(c2, "dd_template", tokenizer,
                       "chat: the model's chat template (turns as user/assistant messages); notebook: 'User:'/"
                       "'Agent:' lines ending with 'Agent:'; auto: chat where the model has a chat template, else "
                       "notebook.")
    dialogues = state.load_dialogues(split, where.strip() or None)
    try:
        # Invalid settings (the sidebar says why) leave the whole context to the prompt.
        budget = load.model.context_length if settings is None else settings.prompt_token_budget(
            load.model.context_length)
        prompt = build_prompt(dialogues[dial_id], turn, tokenizer, context_turns=context, template=str(form),
                              max_tokens=budget, split=split, dial_id=dial_id)
    except ValueError as exc:  # a token budget too small for the template, a template refusing the turns
        st.error(f"Could not build the prompt for this turn: {exc}. Lower Max new tokens, or change the "
                 "context turns or the prompt form.")
        return None
    _show_dialogue(turns, dial_id, turn, prompt.context_turns)
    with st.expander("Prompt sent to the model", expanded=True):
        dropped = f" ({prompt.dropped_turns} older turn(s) dropped to fit the context)" if prompt.dropped_turns else ""
        if prompt.template == "chat":
            st.caption(f"The chosen turn is the last user message, earlier turns alternate assistant/user "
                       f"messages; the model writes the assistant's reply{dropped}.")
        else:
            st.caption(f"The chosen turn is written as 'User', earlier turns alternate 'Agent'/'User'; the model "
                       f"writes what follows 'Agent:'{dropped}.")
        st.code(prompt.text, language=None, wrap_lines=True)
    source = prompt.source()
    source["label"] = f"DailyDialog {split}, dialogue {dial_id}, turn {turn}"
    return prompt.text, source


def _label(value: Any, missing: str) -> str:
    """A label cell as text; the turn table holds NaN where there is none (the last turn has no response)."""
    return value if isinstance(value, str) and value else missing


def _show_dialogue(turns: Any, dial_id: int, turn: int, context: tuple[int, ...]) -> None:
    from inspector.data.prompts import speaker_for

    rows = turns[turns["dial_id"] == dial_id].sort_values("turn")
    st.markdown(f"**Dialogue {dial_id}** ({len(rows)} turns, speakers A and B): **bold** turns are in the prompt, "
                "▶ marks the chosen turn, ↳ the reference response (what the real speaker said next).")
    lines = []
    for r in rows.itertuples():
        role = f" ({speaker_for(r.turn, turn)})" if r.turn in context else ""
        label = f"`{r.turn}` {r.speaker}{role} · *{r.act}, {r.emotion}*: {md(r.utterance)}"
        if r.turn == turn:
            lines.append(f"▶ **{label}**")
        elif r.turn in context:
            lines.append(f"**{label}**")
        elif r.turn == turn + 1:
            lines.append(f"↳ reference response · {label}")
        else:
            lines.append(f"<span style='color:#888'>{label}</span>")
    with st.container(border=True, height=min(60 + 34 * len(lines), 320)):
        st.markdown("  \n".join(lines), unsafe_allow_html=True)


def prompt_form(column: Any, key: str, tokenizer: Any, help_text: str) -> str:
    """The "Prompt form" choice (the package's template names; ``auto`` shows what it resolves to here)."""
    from inspector.data.prompts import DEFAULT_TEMPLATE, template_choices, template_identity

    choices = template_choices(tokenizer)
    state.sticky(key, DEFAULT_TEMPLATE, choices)
    auto = template_identity(DEFAULT_TEMPLATE, tokenizer)["name"]
    return str(column.selectbox("Prompt form", choices, key=key,
                                format_func=lambda n: f"{n} ({auto})" if n == DEFAULT_TEMPLATE else n,
                                help=help_text))
