"""Sidebar, model part: which model to load (name, weights, device, fallback config) and what was loaded."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import state
from .access import PathNotAllowed, check_model, check_path
from .launch import LaunchOptions
from .text import md


def sidebar_model(opts: LaunchOptions) -> state.ModelRequest:
    """Model, weights and device choices; returns what to load."""
    from inspector.model import available_devices

    st.header("Model")
    name = st.text_input(
        "Model (hub id, folder, .gguf file or smollm2)",
        value=opts.model,
        key="model_name",
        help="'gpt2' from the Hugging Face Hub or its local cache, a folder holding config.json, tokenizer "
        "files and weights, a .gguf file (de-quantised, converted once and cached), 'smollm2' for the offline "
        "demo model (SmolLM2-135M-Instruct, trained), or 'builtin' for a tiny random model that needs no file.",
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
    name, config = name.strip() or "gpt2", config_dir.strip() or None
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
    """Load (once per process) with a spinner; an unusable device falls back to ``auto`` with a message."""
    with st.spinner(f"Loading model {req.name!r} (once per process)…"):
        try:
            return state.load_model(req)
        except PathNotAllowed:  # sidebar_model lets only allowed names through
            raise
        except ValueError as exc:  # device not available here
            st.error(f"Device: {exc}. Using 'auto' instead.")
            return state.load_model(state.ModelRequest(req.name, "auto", req.random_weights, req.config_dir))


def sidebar_loaded(load: Any) -> None:
    """What is actually loaded (after any fallback)."""
    m = load.model
    weights = "random weights" if m.random_weights else "pretrained weights"
    st.caption(f"Loaded: {md(m.name)} · {weights} · {m.num_layers} layers × {m.num_heads} "
               f"heads · context {m.context_length} tokens · on {m.device}")
