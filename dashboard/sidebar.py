"""Sidebar, model part: which model to load (name, weights, device, fallback config) and what was loaded."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import state
from .access import PathNotAllowed, check_model, check_path
from .launch import LaunchOptions
from .text import md, short


def sidebar_model(opts: LaunchOptions) -> state.ModelRequest:
    """Model, weights and device choices; returns what to load."""
    from inspector._devices import available_devices

    st.header("Model")
    ss = st.session_state
    pending = ss.pop(state.PENDING_MODEL, None)
    if pending is not None:  # what a fallback loaded: the box and switch show it (see reflect_loaded)
        ss["model_name"], ss["random_weights"] = pending
    ss.setdefault("model_name", opts.model)
    ss.setdefault("random_weights", opts.random_weights)
    name = st.text_input(
        "Model (hub id, folder, .gguf file or smollm2)",
        key="model_name",
        help="'gpt2' from the Hugging Face Hub or its local cache, a folder holding config.json, tokenizer "
        "files and weights, a .gguf file (de-quantised, converted once and cached), 'smollm2' for the offline "
        "demo model (SmolLM2-135M-Instruct, trained), or 'builtin' for a tiny random model that needs no file.",
    )
    random_weights = st.toggle(
        "Random weights",
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
    name, config = name.strip() or "gpt2", config_dir.strip() or None
    aliases = ss.get(state.MODEL_ALIASES) or {}
    shown = state.ModelRequest(name, device, bool(random_weights), config)
    if shown.key in aliases:  # the box shows what a fallback loaded: load what was asked (cached), say both
        return aliases[shown.key]  # type: ignore[no-any-return]
    try:
        check_model(name, opts)
    except PathNotAllowed as exc:
        st.error(f"Model: {exc}. Using {opts.model!r}.")
        name = opts.model
    if config:
        try:
            check_path(config, opts)
        except PathNotAllowed as exc:
            st.error(f"Config folder: {exc}.")
            config = opts.config_dir
    return state.ModelRequest(name, device, bool(random_weights), config)


def load_model(req: state.ModelRequest) -> Any:
    """Load (once per process), saying so on the page meanwhile; an unusable device falls back to ``auto``
    with a message. The page above is drawn first: the first visit shows what it waits for."""
    if state.model_loaded(req):
        result, problem = _load(req)
    else:
        box = st.empty()
        with box.status(f"Loading the model {req.name!r}…", expanded=True) as status:
            st.write("The model loads once per server process: this first visit can take half a minute on a "
                     "small CPU; later visits do not wait.")
            result, problem = _load(req)
            status.update(label=f"Loaded {result.model.name!r}", state="complete", expanded=False)
        box.empty()
    if problem:
        st.error(problem)
    return result


def _load(req: state.ModelRequest) -> tuple[Any, str | None]:
    """The loaded model, and what to say when the device asked for is not available here."""
    try:
        return state.load_model(req), None
    except PathNotAllowed:  # sidebar_model lets only allowed names through
        raise
    except ValueError as exc:  # device not available here
        auto = state.ModelRequest(req.name, "auto", req.random_weights, req.config_dir)
        return state.load_model(auto), f"Device: {exc}. Using 'auto' instead."


def reflect_loaded(req: state.ModelRequest, load: Any) -> None:
    """After a fallback, make the model box and Random-weights switch show what is loaded (rerunning once);
    that shown request keeps meaning the one asked for, so nothing loads again."""
    if not load.fell_back:
        return
    m = load.model
    shown = state.ModelRequest(str(m.name), req.device, bool(m.random_weights), req.config_dir)
    ss = st.session_state
    aliases = dict(ss.get(state.MODEL_ALIASES) or {})
    if aliases.get(shown.key) != req:
        aliases[shown.key] = req
        ss[state.MODEL_ALIASES] = aliases
    if (ss.get("model_name"), bool(ss.get("random_weights"))) != (shown.name, shown.random_weights):
        ss[state.PENDING_MODEL] = (shown.name, shown.random_weights)
        st.rerun()


def sidebar_loaded(load: Any, req: state.ModelRequest) -> None:
    """What is actually loaded (after any fallback): name, real or random weights, quantisation, size; and,
    after a fallback, what was asked and why it could not load."""
    from inspector._devices import dtype_name

    m = load.model
    weights = "**random weights**" if m.random_weights else "real (pretrained) weights"
    quant = m.model_file.get("quantization")
    dtype = dtype_name(m.dtype)
    stored = f"{quant} GGUF, de-quantised to {dtype}" if quant else f"not quantised ({dtype})"
    st.caption(f"Loaded: {md(str(m.name))} · {weights} · {stored} · {m.num_layers} layers × {m.num_heads} "
               f"heads · context {m.context_length} tokens · on {m.device}")
    if load.fell_back:
        why = load.message.split("\n\n", 1)[0]
        st.warning(f"Asked for {md(req.name)}{' with random weights' if req.random_weights else ''}, which did "
                   f"not load, so the box shows the model used instead. {md(short(why, 400))}",
                   icon=":material/swap_horiz:")
