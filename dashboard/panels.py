"""Dashboard panels: one render function per panel; every figure comes from :mod:`inspector.plots`.

Each function draws one part of the page with Streamlit widgets (all keyed, so
tests can drive them) and never computes what the package can: figures come from
``inspector.plots``, captures from ``inspector.generate`` through :mod:`dashboard.state`.
"""

from __future__ import annotations

import json
import re
import tempfile
from pathlib import Path
from typing import Any

import streamlit as st

from dashboard import state

DEFAULT_PROMPT = "User: hey how are you? \nAgent:"
#: Most turns offered in the DailyDialog turn list at once (the filters narrow it).
TURN_OPTIONS_LIMIT = 400
EXPORT_FORMATS = ("png", "svg", "pdf", "html")
_MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "html": "text/html"}
STOP_LABELS = {"eos": "end of text", "stop_string": "stop string", "length": "token limit"}
_DECODING = {"greedy": "Greedy (most likely token)", "sample": "Sampling", "beam": "Beam search"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def md(text: str) -> str:
    """``text`` escaped for ``st.markdown`` (dialogue text must not turn into markup or LaTeX)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


# ============================================================================ sidebar
def sidebar_model(opts: state.LaunchOptions) -> state.ModelRequest:
    """Model, weights and device choices; returns what to load."""
    from inspector.model import available_devices

    st.header("Model")
    name = st.text_input(
        "Model (hub id or local folder)",
        value=opts.model,
        key="model_name",
        help="'gpt2' from the Hugging Face Hub or its local cache, a folder holding config.json, tokenizer "
        "files and weights, or 'builtin' for a tiny random model that needs no file at all.",
    )
    random_weights = st.toggle(
        "Random weights",
        value=opts.random_weights,
        key="random_weights",
        help="Build the architecture from the folder's config.json with random weights: every view works, "
        "but the text is meaningless.",
    )
    avail = available_devices()
    marks = ", ".join(f"**{d}**" if d in avail else f"~~{d}~~" for d in ("cpu", "cuda", "mps"))
    options = ["auto", *avail]
    if opts.device not in options:
        options.append(opts.device)
    device = st.selectbox(
        "Device",
        options,
        index=options.index(opts.device),
        key="device",
        help="'auto' picks cuda, then mps, then cpu.",
    )
    st.caption(f"Devices available here: {marks} (struck out: not available)")
    with st.expander("If the model cannot be loaded"):
        config_dir = st.text_input(
            "GPT-2 config folder for the random-weights fallback",
            value=opts.config_dir or "",
            key="config_dir",
            help="A folder with GPT-2's config.json and tokenizer files (no weights needed). Tried after the "
            "model above fails, before INSPECTOR_GPT2_OFFLINE_DIR and ../shared/models/gpt2-offline.",
        )
    return state.ModelRequest(name.strip() or "gpt2", device, bool(random_weights), config_dir.strip() or None)


def load_model(req: state.ModelRequest) -> Any:
    """Load (once per process) with a spinner; an unusable device falls back to ``auto`` with a message."""
    with st.spinner(f"Loading model {req.name!r} (once per process)…"):
        try:
            return state.load_model(req)
        except ValueError as exc:  # device not available here
            st.error(f"Device: {exc}. Using 'auto' instead.")
            return state.load_model(state.ModelRequest(req.name, "auto", req.random_weights, req.config_dir))


def sidebar_decoding() -> tuple[Any, str | None]:
    """Decoding settings; returns ``(GenerationSettings or None, error message or None)``."""
    from inspector.capture import GenerationSettings

    st.header("Decoding")
    mode = st.radio("Decoding", list(_DECODING), format_func=_DECODING.get, key="decoding",
                    label_visibility="collapsed")
    sample, beam = mode == "sample", mode == "beam"
    max_new = st.slider("Max new tokens", 1, state.MAX_NEW_TOKENS_CAP, 40, key="max_new_tokens",
                        help=f"Generation stops here at the latest (capped at {state.MAX_NEW_TOKENS_CAP} in the "
                        "dashboard; use `inspector capture` for longer ones).")
    temperature = st.slider("Temperature", 0.05, 2.0, 1.0, 0.05, key="temperature", disabled=not sample,
                            help="Sampling only: below 1 sharpens the distribution, above 1 flattens it.")
    top_k = st.number_input("Top-k (0 = off)", 0, 50000, 0, key="top_k", disabled=not sample,
                            help="Sampling only: keep the k most likely tokens.")
    top_p = st.slider("Top-p", 0.05, 1.0, 1.0, 0.05, key="top_p", disabled=not sample,
                      help="Sampling only: keep the smallest set of tokens whose probability reaches p.")
    num_beams = st.slider("Beams", 2, 8, 4, key="num_beams", disabled=not beam,
                          help="Beam search only: the best beam is captured.")
    with st.expander("More settings"):
        stops = st.text_input("Stop strings (comma-separated; \\n is a newline)", "", key="stop_strings",
                              help="Generation stops once the text ends with one of these, e.g. \\n or User:")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed", help="Makes sampling repeatable.")
        rep = st.slider("Repetition penalty", 1.0, 2.0, 1.0, 0.05, key="repetition_penalty")
        keep_k = st.slider("Candidates kept per step", 1, 50, 10, key="top_k_logits",
                           help="How many alternatives the top-k views can show.")
        truncate = st.checkbox("Drop prompt tokens from the left if it is too long", False, key="truncate_prompt")
    stop_strings = tuple(s.replace("\\n", "\n") for s in (x.strip() for x in stops.split(",")) if s)
    try:
        settings = GenerationSettings(
            max_new_tokens=int(max_new),
            do_sample=sample,
            temperature=float(temperature) if sample else 1.0,
            top_k=(int(top_k) or None) if sample else None,
            top_p=float(top_p) if sample else 1.0,
            num_beams=int(num_beams) if beam else 1,
            repetition_penalty=float(rep),
            stop_strings=stop_strings,
            seed=int(seed),
            top_k_logits=int(keep_k),
            truncate_prompt=bool(truncate),
        )
    except ValueError as exc:
        st.error(f"Settings: {exc}")
        return None, str(exc)
    return settings, None


def sidebar_loaded(load: Any) -> None:
    """What is actually loaded (after any fallback)."""
    m = load.model
    weights = "random weights" if m.random_weights else "pretrained weights"
    st.caption(f"Loaded: {md(m.name)} · {weights} · {m.num_layers} layers × {m.num_heads} "
               f"heads · context {m.context_length} tokens · on {m.device}")


# ============================================================================ header
def header(load: Any) -> None:
    """Title, what the page is, and the model banners (shown above every view)."""
    st.title("inspector: inside GPT-2 as it generates")
    st.caption(
        "Pick a prompt and press **Generate**; then see how sure the model was of every token (Generation) "
        "and where each token looked (Attention), or compare many dialogue turns from a corpus run (Corpus)."
    )
    m = load.model
    if load.fell_back:
        asked = st.session_state.get("model_name") or "the model"
        where = m.name if load.level == "local-config" else "the built-in tiny model"
        st.error(
            f"**Could not load {asked!r}, so the page uses a GPT-2 with random weights instead "
            f"({where}): every view works, but the generated text is meaningless.**",
            icon=":material/error:",
        )
        with st.expander("Why, and how to load real weights"):
            st.markdown(md_paragraphs(load.message))
    elif m.random_weights:
        st.warning("**Random weights: the generated text is meaningless.** The views still show the real "
                   "mechanics (probabilities, attention) of this untrained network.", icon=":material/warning:")


def md_paragraphs(text: str) -> str:
    """Plain text with blank-line paragraphs, escaped for markdown."""
    return "\n\n".join(md(p) for p in text.split("\n\n"))


def capture_line(settings: Any) -> None:
    """One line naming the capture every view shows (and whether the sidebar has changed since)."""
    cap = state.current_capture()
    if cap is None:
        st.info("No capture yet: choose a prompt in the **Prompt** tab and press **Generate**, or open a corpus "
                "run in the **Corpus** tab.", icon=":material/arrow_forward:")
        return
    origin = st.session_state.get(state.CAPTURE_ORIGIN, "")
    rnd = " · **random weights**" if cap.meta.random_weights else ""
    st.markdown(f"**Showing:** {md(origin)} · {cap.prompt_len} prompt + {cap.num_steps} generated tokens · "
                f"stopped at: {STOP_LABELS.get(cap.stop_reason, cap.stop_reason)}{rnd}")
    skey = st.session_state.get(state.CAPTURE_SETTINGS)
    if skey and settings is not None and skey != state.settings_key(settings):
        st.caption("The decoding settings have changed since this capture; press Generate to apply them.")


def flash() -> None:
    """The message the previous run left, and a note when it was stopped while generating."""
    msg = state.pop_flash()
    if msg:
        kind, text = msg
        getattr(st, kind, st.info)(text)
    stopped = st.session_state.pop(state.GENERATING, None)
    if stopped:  # the run that generated ended without finishing: Stop, or another click meanwhile
        st.warning(f"Generation stopped after {stopped['done']} of up to {stopped['total']} tokens (Stop, or "
                   "another change on the page while it ran); nothing was kept. Press **Generate** to start again.")


def open_launch_capture(opts: state.LaunchOptions) -> None:
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


# ============================================================================ prompt
def prompt_panel(load: Any, req: state.ModelRequest, settings: Any, settings_error: str | None) -> None:
    """DailyDialog turn picker or free text, and the Generate button."""
    st.subheader("1 · Choose a prompt")
    state.sticky("prompt_source", "DailyDialog turn")
    source_kind = st.radio("Prompt source", ["DailyDialog turn", "Free text"], key="prompt_source",
                           horizontal=True)
    prompt, source = None, {"kind": "text"}
    if source_kind == "DailyDialog turn":
        picked = dailydialog_picker(load, settings)
        if picked is not None:
            prompt, source = picked
    else:
        state.sticky("free_text", DEFAULT_PROMPT)
        prompt = st.text_area("Prompt", key="free_text", height=120,
                              help="The model continues this text. The DailyDialog prompts use 'User:' and "
                              "'Agent:' lines ending with 'Agent:'.")
    if prompt is not None:
        _token_budget(load, prompt, settings)
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
    state.flash(f"Generated {cap.num_steps} tokens{took} (stopped at: {STOP_LABELS.get(cap.stop_reason)}). "
                "Open **Attention** to see where each token looked.")
    st.rerun()


def _token_budget(load: Any, prompt: str, settings: Any) -> None:
    if not prompt.strip():
        return
    n = len(load.model.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"])
    ctx = load.model.context_length
    new = settings.max_new_tokens if settings is not None else 0
    note = f"{n} prompt tokens + up to {new} new ones; the model's context holds {ctx}."
    if n + new > ctx:
        truncate = settings is not None and settings.truncate_prompt
        st.warning(note + (" The oldest prompt tokens will be dropped." if truncate else
                           " Too long: shorten the prompt, lower Max new tokens, or allow dropping prompt tokens "
                           "under More settings."))
    else:
        st.caption(note)


def dailydialog_picker(load: Any, settings: Any) -> tuple[str, dict[str, Any]] | None:
    """Split, filters, a turn list, the dialogue with its labels and the reference response."""
    from inspector.data.dailydialog import ACT_NAMES, EMOTION_NAMES, filter_turns
    from inspector.data.prompts import build_prompt

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
        st.warning(
            f"**DailyDialog could not be loaded:** {exc}\n\n"
            "Point at a local copy: type its folder above, set `INSPECTOR_DAILYDIALOG_DIR=/path/to/dailydialog` "
            "before starting, or start with `inspector dashboard --dailydialog /path/to/dailydialog`. The folder "
            "holds the original release (`validation/dialogues_validation.txt` with its act and emotion files) or "
            "Parquet/CSV/JSONL files with dialog, act and emotion columns. Meanwhile, **Free text** prompts work.",
            icon=":material/folder_open:",
        )
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
                 f"{r.response_act or '–'}/{r.response_emotion or '–'} · {_short(r.utterance, 70)}"
              for k, r in zip(keys, shown.itertuples())}
    more = f" (the first {TURN_OPTIONS_LIMIT} are listed; narrow with the filters)" if len(found) > len(shown) else ""
    state.sticky("dd_turn", keys[0], keys)
    state.sticky("dd_context", 4)
    picked = st.selectbox(f"Turn: {len(found)} of {len(turns)} match{more}", keys, format_func=labels.get,
                          key="dd_turn")
    dial_id, turn = picked
    context = st.slider("Context turns in the prompt", 1, 10, key="dd_context",
                        help="How many dialogue turns, ending with the chosen one, go into the prompt.")
    dialogues = state.load_dialogues(split, where.strip() or None)
    budget = load.model.context_length - (settings.max_new_tokens if settings is not None else 0)
    try:
        prompt = build_prompt(dialogues[dial_id], turn, load.model.tokenizer, context_turns=context,
                              max_tokens=max(budget, 16), split=split, dial_id=dial_id)
    except ValueError as exc:  # a token budget too small for the template
        st.error(f"Could not build the prompt for this turn: {exc}. Lower Max new tokens.")
        return None
    _show_dialogue(turns, dial_id, turn, prompt.context_turns)
    with st.expander("Prompt sent to the model", expanded=True):
        dropped = f" ({prompt.dropped_turns} older turn(s) dropped to fit the context)" if prompt.dropped_turns else ""
        st.caption(f"The chosen turn is written as 'User', earlier turns alternate 'Agent'/'User'; the model "
                   f"writes what follows 'Agent:'{dropped}.")
        st.code(prompt.text, language=None, wrap_lines=True)
    source = prompt.source()
    source["label"] = f"DailyDialog {split}, dialogue {dial_id}, turn {turn}"
    return prompt.text, source


def _short(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _show_dialogue(turns: Any, dial_id: int, turn: int, context: tuple[int, ...]) -> None:
    rows = turns[turns["dial_id"] == dial_id].sort_values("turn")
    st.markdown(f"**Dialogue {dial_id}** ({len(rows)} turns, speakers A and B): **bold** turns are in the prompt, "
                "▶ marks the chosen turn, ↳ the reference response (what the real speaker said next).")
    lines = []
    for r in rows.itertuples():
        role = ""
        if r.turn in context:
            role = " (User)" if (turn - r.turn) % 2 == 0 else " (Agent)"
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


# ============================================================================ generation
def _plots() -> Any:
    from inspector.plots import interactive

    return interactive


def generation_panel(capture: Any) -> None:
    """Coloured text, summary numbers, top-k candidates per step and the entropy curve."""
    if capture is None:
        return
    raw = capture.raw
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Generated tokens", capture.num_steps)
    m2.metric("Stopped at", STOP_LABELS.get(capture.stop_reason, capture.stop_reason),
              help="end of text: the model chose its end-of-text token; token limit: Max new tokens was "
              "reached; stop string: the text ended with one of the stop strings.")
    if capture.num_steps:
        m3.metric("Mean entropy (nats)", f"{float(raw.entropy.mean()):.2f}",
                  help="How spread out the next-token distribution was, averaged over steps: 0 means certain; "
                  "the log of the vocabulary size means no preference at all.")
        m4.metric("Mean chosen probability", f"{float(capture.chosen_probs.mean()):.1%}",
                  help="The probability the model gave each token it actually produced, averaged over steps.")
    _coloured_text(capture)
    if not capture.num_steps:
        st.info("Nothing was generated (the model ended the text at once).")
        return
    _candidates(capture)


# Each view below is a fragment: changing one of its widgets reruns just that fragment (its
# figure), not the whole page, which keeps redraws on a 100-token 12 x 12-head capture short.
@st.fragment
def _coloured_text(capture: Any) -> None:
    st.subheader("Generated text")
    state.sticky("gen_color_by", "prob", ["prob", "entropy"])
    color_by = st.segmented_control(
        "Colour generated tokens by", ["prob", "entropy"], key="gen_color_by", required=True,
        format_func={"prob": "probability of the chosen token", "entropy": "entropy (uncertainty)"}.get,
    ) or "prob"
    st.html(_plots().text_html(capture, color_by=color_by))


@st.fragment
def _candidates(capture: Any) -> None:
    st.subheader("What the model almost chose, step by step")
    state.sticky("gen_topk", min(5, capture.raw.k), range(1, capture.raw.k + 1))
    k = st.slider("Candidates shown", 1, max(capture.raw.k, 2), key="gen_topk")
    st.plotly_chart(_plots().topk_steps(capture, k=k), key="fig_topk", width="stretch")
    # Built only while open: on a 100-step capture the table added to every redraw of this view.
    table = st.expander("Table of candidates per step", key="gen_table_open", on_change="rerun")
    if table.open:
        with table:
            st.dataframe(topk_table(capture, k), hide_index=True, key="topk_table", width="stretch")


def topk_table(capture: Any, k: int) -> Any:
    """One row per generated step: chosen token, its probability and rank, entropy, the top-k candidates."""
    import pandas as pd

    rows = []
    for s in capture.steps:
        row = {"step": s.step, "chosen": repr(s.token)[1:-1], "prob": round(s.prob, 4), "rank": s.rank,
               "entropy": round(s.entropy, 3)}
        for i, c in enumerate(s.top[:k], 1):
            row[f"#{i}"] = f"{repr(c.token)[1:-1]} {c.prob:.1%}"
        rows.append(row)
    return pd.DataFrame(rows)


# ============================================================================ attention
ALL = "all"


def attention_controls(capture: Any) -> tuple[int | None, int | None, str]:
    """Layer, head (``None`` = all, combined by the aggregate) and aggregate mode."""
    from inspector.aggregate import AGGREGATE_MODES

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
        "over heads.", disabled=layer is not None and head is not None,
    ) or "mean"
    return layer, head, agg


def _height(n_tokens: int) -> int | None:
    """A heatmap height that keeps the views below it within reach (the figure's own size otherwise)."""
    return 700 if n_tokens > 32 else None


def attention_panel(capture: Any) -> None:
    """Heatmap for a layer/head or aggregate, 'pick a token, see where it looks', and the head grid."""
    if capture is None:
        return
    if capture.attentions is None:
        st.warning("This capture kept no attention weights (e.g. a corpus run made with `--attention summary` or "
                   "`none`). Generate here, or run with `--attention full`.")
        return
    st.subheader("Attention heatmap")
    st.caption("Each row is a token (query) and shows how much it attended to each earlier token (key). Tokens "
               "after the dashed line were generated.")
    if (capture.meta.extra or {}).get("attention") == "summary":
        st.caption("This capture comes from a run that kept only the mean over heads (`--attention summary`): "
                   "'head 0' is that mean. Rerun with `--attention full` for every head.")
    _heatmap(capture)
    _token_view(capture)
    _head_grid(capture)


@st.fragment
def _heatmap(capture: Any) -> None:
    layer, head, agg = attention_controls(capture)
    st.plotly_chart(_plots().attention_heatmap(capture, layer=layer, head=head, agg=agg,
                                               height=_height(capture.seq_len)),
                    key="fig_heatmap", width="stretch")


@st.fragment
def _token_view(capture: Any) -> None:
    st.subheader("Pick a token, see where it looks")
    positions = list(range(capture.seq_len))
    state.sticky("att_token", capture.prompt_len if capture.num_steps else capture.seq_len - 1, positions)
    pos = st.selectbox("Token", positions, key="att_token",
                       format_func=lambda i: f"{i}: {capture.tokens[i]!r} "
                       f"({'generated' if i >= capture.prompt_len else 'prompt'})")
    st.plotly_chart(_plots().token_attention(capture, pos), key="fig_token", width="stretch")


# At most this many cells per side of each head-grid panel (a panel is ~80 px wide): on a
# 100-token capture 64 cells made the grid a 2.5 MB figure that took ~2 s to appear in
# Chromium here, 40 (34 cells after pooling) about 1.3 s (benchmarks/bench_dashboard.py).
GRID_MAX_CELLS = 40


@st.fragment
def _head_grid(capture: Any) -> None:
    st.subheader("All layers × heads")
    state.sticky("att_grid", False)  # off by default: the largest figure, drawn on request
    if st.toggle("Show the head grid", key="att_grid",
                 help="Every layer (rows) and head (columns) on one colour scale."):
        fig = _plots().head_grid(capture, max_cells=GRID_MAX_CELLS)
        if fig.layout.meta["factor"] > 1:
            st.caption(f"Each panel shows means over {fig.layout.meta['factor']}-token blocks so the grid draws "
                       "quickly; hover a cell for the positions it covers. **Export** writes a finer grid, "
                       "and choosing a layer and head above shows one head at full detail.")
        st.plotly_chart(fig, key="fig_grid", width="stretch")


# ============================================================================ corpus
def corpus_panel(opts: state.LaunchOptions) -> None:
    """Open a run folder; grouped statistics, distributions, a sortable table; open a turn's capture."""
    st.subheader("Open a corpus run")
    st.caption("A run folder is written by `inspector run --split validation --out runs/NAME`: one capture per "
               "turn plus a summary table.")
    c1, c2 = st.columns([4, 1])
    state.sticky("run_dir", opts.run or "")
    path = c1.text_input("Run folder", key="run_dir", placeholder="runs/NAME")
    c2.write("")
    opened = c2.button("Open run", key="open_run")
    if opened or (path and st.session_state.get(state.RUN_PATH) is None and path == (opts.run or "")
                  and not st.session_state.get("_run_autotried")):
        st.session_state["_run_autotried"] = True
        _open_run(path)
    run_path = st.session_state.get(state.RUN_PATH)
    if not run_path:
        _capture_file_opener()
        return
    try:
        run = state.open_run(run_path)
    except Exception as exc:  # noqa: BLE001 - the folder changed under us
        st.error(f"Could not read run {run_path!r}: {exc}")
        st.session_state[state.RUN_PATH] = None
        return
    summary = run.summary
    _run_info(run, run_path)
    if summary.empty:
        st.info("This run has no finished turns yet.")
        return
    _corpus_stats(run, summary)
    _corpus_table(run_path, summary)
    _capture_file_opener()


def _open_run(path: str) -> None:
    try:
        state.open_run(path)
    except Exception as exc:  # noqa: BLE001 - missing, not a run, corrupted: say so, keep going
        st.error(f"Could not open run {path!r}: {exc}")
        st.session_state[state.RUN_PATH] = None
        return
    st.session_state[state.RUN_PATH] = path
    state.forget("corpus_row")


def _run_info(run: Any, path: str) -> None:
    doc = getattr(run, "settings", None) or {}
    model = doc.get("model") or {}
    counts = doc.get("counts") or {}
    n = len(run.summary)
    what = f"{n} turns"
    if counts.get("turns") and counts.get("turns") != n:
        what += f" of {counts['turns']} planned (status: {doc.get('status', '?')})"
    name = model.get("name") if isinstance(model, dict) else model
    st.success(f"Opened **{md(path)}**: {what}" + (f" · model {md(str(name))}" if name else "")
               + (f" · attention kept: {doc['attention']}" if doc.get("attention") else ""))
    if isinstance(model, dict) and model.get("random_weights"):
        st.warning("This run used **random weights**: its generated texts are meaningless.", icon=":material/warning:")
    with st.expander("Run settings (run.json)"):
        st.json(doc, expanded=False)


def _corpus_stats(run: Any, summary: Any) -> None:
    from inspector.plots import GROUP_COLUMNS

    st.subheader("By dialogue act and emotion")
    state.sticky("corpus_by", "emotion", GROUP_COLUMNS)
    by = st.segmented_control("Group by", list(GROUP_COLUMNS), key="corpus_by", required=True,
                              format_func=lambda c: c.replace("_", " ")) or "emotion"
    table = _group_stats(summary, by)
    st.caption("Mean per group (count = turns). Hover a column header for what it measures.")
    st.dataframe(table, key="corpus_stats", width="stretch", column_config=_metric_columns(table.columns))
    st.plotly_chart(_plots().corpus_distributions(summary, by=by), key="fig_corpus", width="stretch")


def _metric_columns(columns: Any) -> dict[str, Any]:
    """Readable headers (the plots' metric labels) for summary columns, keeping their names as help."""
    from inspector.plots import METRIC_LABELS

    out: dict[str, Any] = {}
    for col in columns:
        label = METRIC_LABELS.get(col)
        if label:
            out[col] = st.column_config.NumberColumn(label, help=f"{label} (column {col})", format="%.3f")
    return out


def _group_stats(summary: Any, by: str) -> Any:
    from inspector.runs import stats

    return stats(summary, by)


TABLE_COLUMNS = ("dial_id", "turn", "act", "emotion", "response_act", "response_emotion", "entropy_mean",
                 "chosen_prob_mean", "attn_prompt_share", "attn_first_share", "generated_text", "prompt_text")


def _corpus_table(run_path: str, summary: Any) -> None:
    st.subheader("Turns")
    st.caption("Click a column header to sort; select a row (or use the list below) to open that turn's capture "
               "in the Generation, Attention and Export views.")
    cols = [c for c in TABLE_COLUMNS if c in summary.columns]
    table = summary[cols].reset_index(drop=True)
    keys = [(int(d), int(t)) for d, t in zip(table["dial_id"], table["turn"])]

    def on_select() -> None:
        sel = st.session_state.get("corpus_table")
        rows = (sel or {}).get("selection", {}).get("rows", []) if isinstance(sel, dict) else \
            getattr(getattr(sel, "selection", None), "rows", [])
        if rows:
            st.session_state["corpus_row"] = keys[rows[0]]
            st.session_state["_keep_corpus_row"] = keys[rows[0]]

    st.dataframe(table, key="corpus_table", on_select=on_select, selection_mode="single-row", hide_index=True,
                 width="stretch", height=320, column_config=_metric_columns(table.columns))
    labels = {k: f"dialogue {d} · turn {t} · {a}/{e}" for k, d, t, a, e in
              zip(keys, table["dial_id"], table["turn"], table.get("act", [""] * len(keys)),
                  table.get("emotion", [""] * len(keys)))}
    state.sticky("corpus_row", None, [None, *keys])
    picked = st.selectbox("Open turn", keys, key="corpus_row", format_func=labels.get,
                          placeholder="choose a turn (or select a row above) to open its capture")
    if picked is None:
        return
    current = st.session_state.get("_corpus_opened")
    if current == (run_path, picked):
        st.caption(f"Dialogue {picked[0]}, turn {picked[1]} is open in the other views.")
        return
    try:
        cap = state.run_capture(run_path, *picked)
    except Exception as exc:  # noqa: BLE001 - missing or corrupted capture file
        st.error(f"Could not open the capture of dialogue {picked[0]}, turn {picked[1]}: {exc}")
        return
    st.session_state["_corpus_opened"] = (run_path, picked)
    state.set_capture(cap, f"run {Path(run_path).name}, dialogue {picked[0]}, turn {picked[1]}")
    st.success(f"Opened dialogue {picked[0]}, turn {picked[1]}: see the **Generation** and **Attention** tabs.")


def _capture_file_opener() -> None:
    with st.expander("Open a single capture file (.safetensors)"):
        state.sticky("capture_path", "")
        path = st.text_input("Capture file", key="capture_path",
                             placeholder="captures/hi.safetensors")
        if st.button("Open capture", key="open_capture"):
            try:
                cap = state.capture_file(path)
            except Exception as exc:  # noqa: BLE001 - missing, truncated, not a capture
                st.error(f"Could not open capture {path!r}: {exc}")
                return
            state.set_capture(cap, f"file {Path(path).name}", switch_to="Generation")
            state.flash(f"Opened capture file {path}.")
            st.rerun()


# ============================================================================ export
FIGURES = {
    "heatmap": "Attention heatmap (current layer/head/aggregate)",
    "heads": "Head grid (all layers × heads)",
    "token": "Where the picked token looks",
    "topk": "Top-k candidates and entropy per step",
    "text": "Coloured text",
    "corpus": "Corpus distributions (open run)",
}


def figure_options(kind: str) -> dict[str, Any]:
    """The options the views currently show for ``kind`` (layer, head, aggregate, token, colouring, grouping)."""
    get = state.remembered
    if kind == "heatmap":
        layer, head = get("att_layer", ALL), get("att_head", ALL)
        return {"layer": None if layer == ALL else layer, "head": None if head == ALL else head,
                "agg": get("att_agg") or "mean"}
    if kind == "token":
        cap = state.current_capture()
        default = (cap.prompt_len if cap.num_steps else cap.seq_len - 1) if cap is not None else 0
        position = get("att_token", default)
        return {"position": position if cap is not None and 0 <= position < cap.seq_len else default}
    if kind == "topk":
        return {"k": get("gen_topk")}
    if kind == "text":
        return {"color_by": get("gen_color_by") or "prob"}
    if kind == "corpus":
        return {"by": get("corpus_by") or "emotion"}
    return {}


def figure_bytes(kind: str, source: Any, fmt: str, **opts: Any) -> bytes:
    """The figure ``kind`` of ``source`` (a capture, or a run summary for ``corpus``) as ``fmt`` bytes."""
    from inspector.plots import make_figure
    from inspector.plots.export import export_bytes

    fig = make_figure(kind, source, interactive=fmt == "html", **opts)
    return export_bytes(fig, fmt)


def capture_bytes(capture: Any) -> bytes:
    """The capture as a ``.safetensors`` file's bytes (what ``inspector.load_capture`` reads)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "capture.safetensors"
        capture.save(path)
        return path.read_bytes()


def export_panel(capture: Any) -> None:
    """Download the current figure (PNG, SVG, PDF, HTML) and the capture file."""
    run_path = st.session_state.get(state.RUN_PATH)
    kinds = [k for k in FIGURES if k != "corpus" or run_path]
    if capture is None:
        kinds = [k for k in kinds if k == "corpus"]
    if not kinds:
        st.info("Nothing to export yet: generate, or open a corpus run.")
        return
    st.subheader("Download a figure")
    state.sticky("export_kind", kinds[0], kinds)
    state.sticky("export_format", "png", EXPORT_FORMATS)
    c1, c2 = st.columns([3, 1])
    kind = c1.selectbox("Figure", kinds, key="export_kind", format_func=FIGURES.get)
    fmt = c2.selectbox("Format", EXPORT_FORMATS, key="export_format", format_func=str.upper,
                       help="PNG, SVG and PDF are drawn with matplotlib; HTML is the interactive plotly figure "
                       "(opens offline).")
    opts = figure_options(kind)
    if kind == "heatmap" and capture is not None and capture.attentions is None:
        st.warning("This capture kept no attention weights.")
        return
    described = ", ".join(f"{k}={'all' if v is None else v}" for k, v in opts.items())
    st.caption(f"With the settings of its view: {described or 'defaults'}.")
    try:
        if kind == "corpus":
            source = state.open_run(run_path).summary
            stem = f"corpus_{opts['by']}"
        else:
            source = capture
            stem = kind
        with st.spinner("Drawing…"):
            data = figure_bytes(kind, source, fmt, **opts)
    except Exception as exc:  # noqa: BLE001 - show the exporter's message (e.g. bad option, no attention)
        st.error(f"Could not export this figure: {exc}")
    else:
        st.download_button(f"Download {stem}.{fmt}", data, file_name=f"{stem}.{fmt}", mime=_MIME[fmt],
                           key="dl_figure", icon=":material/download:", on_click="ignore", type="primary")
        if fmt == "png":
            with st.expander("Preview", expanded=True):
                st.image(data)
    if capture is not None:
        st.subheader("Download the capture")
        st.caption("A .safetensors file with every token, score and attention weight, and its settings; open "
                   "it with `inspector.load_capture(path)` or `inspector plot`.")
        st.download_button("Download capture.safetensors", capture_bytes(capture),
                           file_name="capture.safetensors", mime="application/octet-stream", key="dl_capture",
                           icon=":material/download:", on_click="ignore")
        meta = {"model": capture.meta.model, "random_weights": capture.meta.random_weights,
                "generation": capture.meta.generation, "source": capture.meta.source}
        with st.expander("Capture metadata"):
            st.code(json.dumps(meta, indent=2, ensure_ascii=False, default=str), language="json")

