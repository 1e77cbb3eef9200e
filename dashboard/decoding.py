"""Sidebar, decoding part: one widget per generation setting, and the settings they make.

:data:`SETTING_WIDGETS` and :data:`NOT_IN_DASHBOARD` together name every field of
:class:`inspector._capture.GenerationSettings` (a test holds them to
``dataclasses.fields``), so a new setting cannot be left out of the page unnoticed.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from inspector._capture.settings import MAX_STOP_STRING_CHARS, MAX_STOP_STRINGS

from . import state

#: Settings field -> the key of the widget that sets it.
SETTING_WIDGETS = {
    "max_new_tokens": "max_new_tokens",
    "do_sample": "decoding",
    "temperature": "temperature",
    "top_k": "top_k",
    "top_p": "top_p",
    "num_beams": "num_beams",
    "repetition_penalty": "repetition_penalty",
    "stop_strings": "stop_strings",
    "seed": "seed",
    "top_k_logits": "top_k_logits",
    "truncate_prompt": "truncate_prompt",
    "keep_value_norms": "keep_value_norms",
}
#: Settings field -> how the page names it when it says what changed ("stopped: the temperature changed").
SETTING_LABELS = {
    "max_new_tokens": "Max new tokens",
    "do_sample": "the decoding method",
    "temperature": "the temperature",
    "top_k": "Top-k",
    "top_p": "Top-p",
    "num_beams": "the number of beams",
    "repetition_penalty": "the repetition penalty",
    "stop_strings": "the stop strings",
    "seed": "the seed",
    "top_k_logits": "Candidates kept per step",
    "truncate_prompt": "the choice to drop prompt tokens",
    "keep_value_norms": "Keep value-vector norms",
}
#: Settings the page leaves at their defaults, and why.
NOT_IN_DASHBOARD = {
    # Interventions change the model's computation; the page shows the model as it is (Python API and CLI).
    "ablate": "interventions: Python API and CLI",
    "ablate_mode": "interventions: Python API and CLI",
    "patch": "interventions: Python API and CLI",
    "patch_from": "interventions: Python API and CLI",
    # The views show one sequence (beam search captures the best beam).
    "num_return_sequences": "one sequence per capture",
    # No view shows full [step, vocab] logits; every cached capture would hold them.
    "keep_logits": "not shown, costs memory",
    # The Attention views need the weights.
    "keep_attention": "always kept",
    # float16 halves cached captures; the views cannot show the difference.
    "attention_dtype": "the default (float16)",
    # The Analysis view's lens runs on the loaded model; cached captures stay small without the residual stream.
    "keep_hidden_states": "the lens uses the loaded model",
    "hidden_dtype": "follows keep_hidden_states",
    "lens_k": "the lens uses the loaded model",
    # Selective capture is for long contexts and large models (CLI and API); the page's views (head grid,
    # every token's row, rollout, head statistics) need every layer, head and row of a short capture.
    "layers": "the views need every layer",
    "heads": "the views need every head",
    "attention_rows": "the views need every row",
    "head_reduce": "the head grid needs every head",
    # Dashboard captures are capped at 256 new tokens; the default budget (half the free memory) applies.
    "memory_budget": "the default (half the free memory)",
}

_DECODING = {"greedy": "Greedy (most likely token)", "sample": "Sampling", "beam": "Beam search"}
#: The stop-string box holds at most this many characters: the most strings, each at its longest, with commas.
STOP_BOX_CHARS = MAX_STOP_STRINGS * (MAX_STOP_STRING_CHARS + 1)


def parse_stop_strings(text: str) -> tuple[str, ...]:
    """The stop strings typed in the box (comma-separated, ``\\n`` for a newline).

    ``ValueError`` beyond the package's bounds (:data:`inspector._capture.MAX_STOP_STRINGS` strings of at most
    :data:`inspector._capture.MAX_STOP_STRING_CHARS` characters), before any model work.
    """
    strings = tuple(s.replace("\\n", "\n") for s in (x.strip() for x in text.split(",")) if s)
    if len(strings) > MAX_STOP_STRINGS:
        raise ValueError(f"at most {MAX_STOP_STRINGS} stop strings, got {len(strings)}; remove some")
    for i, s in enumerate(strings, 1):
        if len(s) > MAX_STOP_STRING_CHARS:
            raise ValueError(f"stop string {i} has {len(s)} characters, at most {MAX_STOP_STRING_CHARS} are "
                             "allowed; shorten it")
    return strings


def sidebar_decoding() -> tuple[Any, str | None]:
    """Decoding settings; returns ``(GenerationSettings or None, error message or None)``."""
    from inspector._capture.settings import GenerationSettings

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
                              max_chars=STOP_BOX_CHARS,
                              help="Generation stops once the text ends with one of these, e.g. \\n or User: "
                              f"(at most {MAX_STOP_STRINGS} strings of {MAX_STOP_STRING_CHARS} characters).")
        seed = st.number_input("Seed", 0, 2**31 - 1, 0, key="seed", help="Makes sampling repeatable.")
        rep = st.slider("Repetition penalty", 1.0, 2.0, 1.0, 0.05, key="repetition_penalty")
        keep_k = st.slider("Candidates kept per step", 1, 50, 10, key="top_k_logits",
                           help="How many alternatives the top-k views can show.")
        truncate = st.checkbox("Drop prompt tokens from the left if it is too long", False, key="truncate_prompt")
        norms = st.checkbox("Keep value-vector norms (for the norm-weighted aggregate)", False, key="keep_value_norms",
                            help="Kobayashi et al. (2020): attention weight times the norm of what each key "
                            "contributes; needed by 'norm-weighted' in the Attention view.")
    try:
        settings = GenerationSettings(
            max_new_tokens=int(max_new),
            do_sample=sample,
            temperature=float(temperature) if sample else 1.0,
            top_k=(int(top_k) or None) if sample else None,
            top_p=float(top_p) if sample else 1.0,
            num_beams=int(num_beams) if beam else 1,
            repetition_penalty=float(rep),
            stop_strings=parse_stop_strings(stops),
            seed=int(seed),
            top_k_logits=int(keep_k),
            truncate_prompt=bool(truncate),
            keep_value_norms=bool(norms),
        )
    except ValueError as exc:
        st.error(f"Settings: {exc}")
        return None, str(exc)
    return settings, None
