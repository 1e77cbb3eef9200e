"""Decoding settings -> what ``generate`` gets: a complete ``GenerationConfig`` and the sampling warpers.

``generate`` fills every ``GenerationConfig`` field left ``None`` from the model's own
``generation_config`` and then from transformers' defaults (``top_k=50`` among them), and
applies the sampling warpers it builds *after* every custom processor, where the recorder
cannot see them. So here every field that can switch a processor or warper on is set to its
"off" value, the sampling warpers are built by us and run as custom processors before the
recorder, and a model ``generation_config`` that sets a filter whose only "off" value is
``None`` is refused with a ``ValueError`` naming it. The result: every decoding filter comes
from the settings alone, and the recorded ``processed`` scores are what decoding picked from.
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
            f"im.model.generation_config.{next(iter(found))} = None"
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
    eos = model.config.eos_token_id if model.config.eos_token_id is not None else tokenizer.eos_token_id
    kwargs: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": do_sample,
        "num_beams": num_beams,
        "num_return_sequences": num_return_sequences,
        "eos_token_id": eos,
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": getattr(model.config, "bos_token_id", None),
        "use_cache": True,
        # a growing cache whatever the model's own default (a static one pads keys to a fixed size)
        "cache_implementation": "dynamic",
        "return_dict_in_generate": True,
        "repetition_penalty": repetition_penalty,
        **FILTERS_OFF,
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
    from transformers.generation.logits_process import (
        TemperatureLogitsWarper,
        TopKLogitsWarper,
        TopPLogitsWarper,
    )

    out: list[Any] = []
    if temperature != 1.0:
        out.append(TemperatureLogitsWarper(temperature))
    if top_k:
        out.append(TopKLogitsWarper(top_k=top_k, min_tokens_to_keep=1))
    if top_p < 1.0:
        out.append(TopPLogitsWarper(top_p=top_p, min_tokens_to_keep=1))
    return out
