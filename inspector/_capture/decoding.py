"""Decoding settings -> what ``generate`` gets: a complete ``GenerationConfig`` and the sampling warpers.

``generate`` fills every ``GenerationConfig`` field left ``None`` from the model's own
``generation_config`` and then from transformers' defaults (``top_k=50`` among them), and
applies the sampling warpers it builds *after* every custom processor, where the recorder
cannot see them. So here every field that can switch a processor or warper on is set to its
"off" value, the sampling warpers are built by us and run as custom processors before the
recorder, and a model ``generation_config`` that sets a filter whose only "off" value is
``None`` is refused with a ``ValueError`` naming it. The result: every decoding filter comes
from the settings alone, and the recorded ``processed`` scores are what decoding picked from.

Generation stops at the model's end-of-sequence id(s) and, for a tokenizer with a chat template,
also at the template's end-of-turn token where that differs (:func:`stop_token_ids`).
"""

from __future__ import annotations

from typing import Any

#: Processors ``generate`` adds in every decoding mode, switched off explicitly (a ``None`` would be
#: filled from the model's ``generation_config``, then from transformers' defaults).
FILTERS_OFF: dict[str, Any] = {
    "no_repeat_ngram_size": 0,
    "encoder_no_repeat_ngram_size": 0,
    "encoder_repetition_penalty": 1.0,
    "min_length": 0,
    "remove_invalid_values": False,
    "renormalize_logits": False,
    "guidance_scale": 1.0,
    "penalty_alpha": 0.0,
    "num_beam_groups": 1,
    "diversity_penalty": 0.0,
    "token_healing": False,
}
#: Sampling warpers ``generate`` would append after the recorder; ours run before it instead
#: (:func:`build_warpers`). ``top_k=0`` is off; transformers' default is 50.
WARPERS_OFF: dict[str, Any] = {
    "temperature": 1.0,
    "top_k": 0,
    "top_p": 1.0,
    "typical_p": 1.0,
    "epsilon_cutoff": 0.0,
    "eta_cutoff": 0.0,
}
#: What ``generate`` would accumulate step by step, switched off explicitly: the recorder reads each step
#: as it comes (and keeps the logits itself when asked), and a model's own ``generation_config`` that
#: asks for these would otherwise fill them in (per-step copies of the logits, say, beside the kept ones).
NOT_ACCUMULATED: dict[str, Any] = {
    "output_logits": False,
    "output_scores": False,
    "output_attentions": False,
    "output_hidden_states": False,
}
#: ``generation_config`` fields whose only "off" value is ``None``: a model that sets one is refused.
NONE_ONLY_FILTERS = (
    "min_new_tokens",  # 0 would still add a processor (min_length becomes the prompt length)
    "min_p",
    "top_h",
    "bad_words_ids",
    "suppress_tokens",
    "begin_suppress_tokens",
    "forced_bos_token_id",
    "forced_eos_token_id",
    "exponential_decay_length_penalty",
    "sequence_bias",
    "constraints",
    "force_words_ids",
    "watermarking_config",
    "max_time",
    "stop_strings",
    "dola_layers",
    "prompt_lookup_num_tokens",
    "assistant_early_exit",
)


def end_of_turn_id(tokenizer: Any) -> int | None:
    """The special token the tokenizer's chat template writes right after a message's content, if any.

    Read from the template itself: an assistant message is rendered and the first token after its
    content is taken when it is a special (or added special) token, e.g. ``<|im_end|>`` or ``<|eot_id|>``.
    ``None`` without a chat template, or where the template ends a message with ordinary text.
    """
    if not getattr(tokenizer, "chat_template", None):
        return None
    mark = "\u27ea1\u27eb"  # not whitespace: survives a template that strips content
    messages = [{"role": "user", "content": "\u27ea0\u27eb"}, {"role": "assistant", "content": mark}]
    try:
        text = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=False)
    except Exception:  # noqa: BLE001 - a template that refuses this exchange has no end-of-turn to find
        return None
    if not isinstance(text, str) or mark not in text:
        return None
    after = list(tokenizer(text[text.index(mark) + len(mark) :], add_special_tokens=False)["input_ids"])
    if not after:
        return None
    first = int(after[0])
    added = getattr(tokenizer, "added_tokens_decoder", {}).get(first)
    special = first in set(tokenizer.all_special_ids) or bool(getattr(added, "special", False))
    return first if special else None


def stop_token_ids(model: Any, tokenizer: Any) -> list[int]:
    """The ids generation stops at: the model's eos id(s) (the tokenizer's where the model has none), then
    the chat template's end-of-turn token (:func:`end_of_turn_id`) when it is not among them."""
    eos = model.config.eos_token_id if model.config.eos_token_id is not None else tokenizer.eos_token_id
    ids = [int(e) for e in (eos if isinstance(eos, list) else [eos]) if e is not None]
    eot = end_of_turn_id(tokenizer)
    return ids if eot is None or eot in ids else [*ids, eot]


def refuse_implicit_filters(model: Any) -> None:
    """``ValueError`` when the model's own ``generation_config`` sets a filter the settings cannot switch off."""
    own = getattr(model, "generation_config", None)
    if own is None:
        return
    found = {name: getattr(own, name, None) for name in NONE_ONLY_FILTERS}
    found = {name: value for name, value in found.items() if value is not None}
    if found:
        listed = ", ".join(f"{name}={value!r}" for name, value in found.items())
        raise ValueError(
            f"the model's generation_config sets {listed}, which would change decoding outside inspector's "
            f"settings (and unseen by the capture); set it to None first, e.g. "
            f"model.model.generation_config.{next(iter(found))} = None"
        )


def build_generation_config(
    model: Any,
    tokenizer: Any,
    *,
    max_new_tokens: int,
    do_sample: bool,
    num_beams: int,
    num_return_sequences: int,
    repetition_penalty: float,
) -> Any:
    """A ``GenerationConfig`` with every decoding filter given explicitly (sampling warpers off: ours run)."""
    from transformers import GenerationConfig

    refuse_implicit_filters(model)
    stops = stop_token_ids(model, tokenizer)
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "num_beams": num_beams,
        "num_return_sequences": num_return_sequences,
        "eos_token_id": (stops[0] if len(stops) == 1 else stops) if stops else None,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": getattr(model.config, "bos_token_id", None),
        "use_cache": True,
        # a growing cache whatever the model's own default (a static one pads keys to a fixed size)
        "cache_implementation": "dynamic",
        "return_dict_in_generate": True,
        "repetition_penalty": repetition_penalty,
        **FILTERS_OFF,
        **NOT_ACCUMULATED,
    }
    if do_sample:
        kwargs.update(WARPERS_OFF)
    if num_beams > 1:
        kwargs.update(early_stopping=True, length_penalty=1.0)
    return GenerationConfig(**kwargs)


def build_warpers(temperature: float, top_k: int | None, top_p: float) -> list[Any]:
    """Hugging Face's sampling warpers for these values, in ``generate``'s order (temperature, top-k, top-p).

    ``top_k`` of ``None`` or 0 and ``top_p`` of 1.0 are off; a temperature of 1.0 needs no warper.
    """
    from inspector._compat import sampling_warpers  # imports transformers: only where warpers are built

    return sampling_warpers(temperature, top_k, top_p)
