"""Which model architectures attention capture supports: finding the attention modules, refusing the rest.

Capture reads every layer's attention weights from a forward hook on its
self-attention module, so a model qualifies when each of its
``num_hidden_layers`` layers has one self-attention module that returns its
weights under eager attention. State-space and recurrent models (Mamba,
RecurrentGemma, RWKV) and hybrids with attention in only some layers (Jamba)
do not; they are refused when the model is loaded or wrapped, with a message
that names the architecture, rather than failing in the middle of a capture.
"""

from __future__ import annotations

from typing import Any

from torch import nn

#: Attribute names of self-attention modules, for models that do not declare them (Falcon, BLOOM: ``self_attention``).
ATTENTION_NAMES = ("attn", "self_attn", "self_attention")
#: Architectures covered by the exactness tests (tests/test_architectures.py), by ``config.model_type``.
TESTED_MODEL_TYPES = (
    "gpt2", "llama", "qwen2", "mistral", "gpt_neox", "opt", "gemma", "gemma2", "gptj", "falcon", "bloom",
)


class UnsupportedModelError(ValueError):
    """The model's architecture cannot be captured; the message names it and says why."""


def describe_architecture(model: nn.Module) -> str:
    """``"MambaForCausalLM (model_type 'mamba')"``: how messages name an architecture."""
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    return f"{type(model).__name__} (model_type {model_type!r})" if model_type else type(model).__name__


def find_attention_modules(model: nn.Module) -> list[tuple[nn.Module, int]]:
    """``[(module, output_index)]`` for every self-attention module, in layer order.

    Uses the model's own ``_can_record_outputs["attentions"]`` declaration (what
    ``output_attentions`` uses in transformers 5), else modules named ``attn``,
    ``self_attn`` or ``self_attention`` whose class name ends with ``Attention``.

    Raises:
        UnsupportedModelError: not exactly one such module per layer; the message names the architecture.
    """
    from inspector._compat import declared_attention_output  # imports transformers (loaded with any model)

    declared = declared_attention_output(model)
    found: list[tuple[nn.Module, int]] = []
    if declared is not None:
        target, index, layer_name = declared
        for name, module in model.named_modules():
            if isinstance(module, target) and (layer_name is None or name.endswith(layer_name)):
                found.append((module, index))
    if not found:
        for name, module in model.named_modules():
            if name.rsplit(".", 1)[-1] in ATTENTION_NAMES and type(module).__name__.endswith("Attention"):
                found.append((module, 1))
    expected = getattr(model.config, "num_hidden_layers", None)
    if not found or (expected is not None and len(found) != expected):
        what = "no self-attention module" if not found else f"self-attention modules in {len(found)} of its layers"
        raise UnsupportedModelError(
            f"{describe_architecture(model)} is not supported for attention capture: found {what}, but capture "
            f"needs one in each of its {expected} layers (state-space, recurrent and hybrid models have no "
            f"attention weights to capture in every layer). Tested architectures: {', '.join(TESTED_MODEL_TYPES)}"
        )
    return found


def check_supported(model: nn.Module) -> None:
    """Refuse a model whose attention cannot be captured (:class:`UnsupportedModelError`), before any model work.

    Works on a model built on the ``meta`` device, so :func:`inspector.load_model` can
    check the architecture before it loads any weights.
    """
    config: Any = getattr(model, "config", None)
    if config is not None and getattr(config, "is_encoder_decoder", False):
        raise UnsupportedModelError(
            f"{describe_architecture(model)} is an encoder-decoder model; attention capture needs a decoder-only "
            "causal LM"
        )
    find_attention_modules(model)
