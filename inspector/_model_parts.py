"""Where a decoder's parts are: each layer's attention, output projection and MLP, the embeddings, the final
norm and the unembedding, for every architecture in :data:`inspector._architectures.TESTED_MODEL_TYPES`.

Logit attribution reads these parts through hooks, and ablation and patching write through them, so one table
says, per ``config.model_type``, which module is which. What every architecture shares:

* ``out_proj``'s input is ``[batch, seq, num_heads * head_dim]``, the heads' outputs concatenated in head order
  (query heads, for grouped-query attention); its output ``[batch, seq, width]`` is what the attention block
  adds to the residual stream (before a post-norm, Gemma 2). GPT-2's ``Conv1D`` stores its weight transposed:
  :func:`projection_weight` gives ``[width, num_heads * head_dim]`` for both kinds.
* ``mlp``'s output ``[batch, seq, width]`` is what the MLP adds (before a post-norm). For OPT that is ``fc2``,
  which sees the positions flattened (``[batch * seq, width]``), and for BLOOM ``mlp.dense_4h_to_h``: their MLP
  code adds the residual itself. Falcon adds the attention
  output into the MLP's output tensor in place, so a hook that keeps that tensor must copy it.
* ``block``'s output (or ``output[0]``) is the residual stream after the layer; its ``hidden_states`` argument
  (or first positional argument) the residual stream before it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import torch
from torch import nn

from inspector._architectures import UnsupportedModelError, describe_architecture, find_attention_modules


@dataclass(frozen=True)
class LayerParts:
    """The modules of one decoder layer.

    Attributes:
        block: the decoder layer; its output (or ``output[0]``) is the residual stream ``[batch, seq, width]``
            after the layer.
        attention: the self-attention module (the one :func:`inspector._architectures.find_attention_modules`
            finds). BLOOM's adds the residual to its own output; use ``out_proj`` for what attention adds.
        out_proj: the attention output projection; its input is ``[batch, seq, num_heads * head_dim]``, heads
            concatenated in head order; its output ``[batch, seq, width]`` what attention adds.
        mlp: the MLP, or its last projection (OPT, BLOOM); its output ``[batch, seq, width]`` is what the MLP
            adds (before any post-norm); OPT's is ``[batch * seq, width]``.
        num_heads: query heads of the layer.
        head_dim: width of one head's slice of ``out_proj``'s input.
        attention_post_norm: a norm applied to ``out_proj``'s output before it joins the residual (Gemma 2),
            else ``None``.
        mlp_post_norm: a norm applied to the MLP's output before it joins the residual (Gemma 2), else ``None``.
        parallel: attention and MLP read the same layer input (GPT-J, GPT-NeoX, Falcon): the MLP does not see
            what attention added.
    """

    block: nn.Module
    attention: nn.Module
    out_proj: nn.Module
    mlp: nn.Module
    num_heads: int
    head_dim: int
    attention_post_norm: nn.Module | None = None
    mlp_post_norm: nn.Module | None = None
    parallel: bool = False


@dataclass(frozen=True)
class ModelParts:
    """A causal LM's decoder, part by part.

    Attributes:
        layers: one :class:`LayerParts` per layer, in order.
        embed: the token embedding (``model.get_input_embeddings()``). The residual stream entering layer 0 is
            its output plus ``position``'s (BLOOM normalises it and Gemma scales it first: read the stream at
            layer 0's input).
        position: learned position embeddings (GPT-2, OPT), whose output ``[batch or 1, seq, width]`` is added
            to the stream; ``None`` for rotary and ALiBi models.
        final_norm: the norm between the last layer and the unembedding.
        unembed: the output layer (``model.get_output_embeddings()``), weight ``[vocab, width]``.
        softcap: ``c`` of ``c * tanh(logits / c)`` applied after the unembedding (Gemma 2), or ``None``.
    """

    layers: tuple[LayerParts, ...]
    embed: nn.Module
    position: nn.Module | None
    final_norm: nn.Module
    unembed: nn.Module
    softcap: float | None = None


@dataclass(frozen=True)
class NormParts:
    """A norm as ``y = (x - mean(x)) * gain / sqrt(var(x) + eps) + bias`` (``"layer"``) or
    ``y = x * gain / sqrt(mean(x**2) + eps)`` (``"rms"``), all float32, ``gain`` and ``bias`` ``[width]``.

    ``gain`` is the effective one (Gemma's ``1 + weight``), read by applying the norm to a vector of ones.
    """

    kind: Literal["layer", "rms"]
    gain: torch.Tensor
    bias: torch.Tensor | None
    eps: float

    def scale(self, x: torch.Tensor) -> torch.Tensor:
        """``1 / std`` (or ``1 / rms``) of states ``[..., width]``, float32 ``[...]``: the norm's actual scale."""
        x = x.float()
        spread = x.var(dim=-1, unbiased=False) if self.kind == "layer" else x.pow(2).mean(dim=-1)
        return torch.rsqrt(spread + self.eps)

    def pull_back(self, direction: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """``w [..., width]`` such that ``c @ w`` is what a part ``c`` of the norm's input ``x [..., width]``
        contributes to ``norm(x) @ direction``, the scale frozen at ``x``'s (bias left out)."""
        w = direction.float() * self.gain
        if self.kind == "layer":
            w = w - w.mean(dim=-1, keepdim=True)
        return w * self.scale(x).unsqueeze(-1)


#: Per ``config.model_type``: out_proj (under the attention module), mlp (under the block), learned positions
#: (from the model), final norm (from the model), post-norms (under the block).
@dataclass(frozen=True)
class _Layout:
    out_proj: str
    mlp: str
    final_norm: str
    position: str | None = None
    post_norms: tuple[str, str] | None = None


_LLAMA = _Layout("o_proj", "mlp", "model.norm")
_LAYOUTS: dict[str, _Layout] = {
    "gpt2": _Layout("c_proj", "mlp", "transformer.ln_f", position="transformer.wpe"),
    "llama": _LLAMA, "qwen2": _LLAMA, "mistral": _LLAMA, "gemma": _LLAMA,
    "gemma2": _Layout("o_proj", "mlp", "model.norm",
                      post_norms=("post_attention_layernorm", "post_feedforward_layernorm")),
    "gpt_neox": _Layout("dense", "mlp", "gpt_neox.final_layer_norm"),
    "opt": _Layout("out_proj", "fc2", "model.decoder.final_layer_norm", position="model.decoder.embed_positions"),
    "gptj": _Layout("out_proj", "mlp", "transformer.ln_f"),
    "falcon": _Layout("dense", "mlp", "transformer.ln_f"),
    "bloom": _Layout("dense", "mlp.dense_4h_to_h", "transformer.ln_f"),
}


def _refuse(model: nn.Module, why: str) -> UnsupportedModelError:
    return UnsupportedModelError(
        f"{describe_architecture(model)}: {why}; the parts of a model are known for "
        f"{', '.join(sorted(_LAYOUTS))}")


def _check_config(model: nn.Module, config: Any) -> None:
    model_type = getattr(config, "model_type", None)
    if model_type == "opt" and (not getattr(config, "do_layer_norm_before", True)
                                or getattr(config, "word_embed_proj_dim", None) not in (None, config.hidden_size)):
        raise _refuse(model, "post-norm OPT and OPT with a projection around the layers are not decomposed")
    if model_type == "bloom" and (getattr(config, "apply_residual_connection_post_layernorm", False)
                                  or (getattr(config, "pretraining_tp", 1) > 1
                                      and getattr(config, "slow_but_exact", False))):
        raise _refuse(model, "BLOOM with a post-layernorm residual or slow_but_exact tensor parallelism is not "
                             "decomposed")


def _parallel(config: Any) -> bool:
    model_type = getattr(config, "model_type", None)
    if model_type == "gptj":
        return True
    if model_type == "gpt_neox":
        return bool(getattr(config, "use_parallel_residual", True))
    if model_type == "falcon":
        return bool(getattr(config, "parallel_attn", True) or getattr(config, "new_decoder_architecture", False))
    return False


def projection_weight(module: nn.Module) -> torch.Tensor:
    """The weight of a projection as ``[out_features, in_features]`` (``nn.Linear``'s layout; GPT-2's
    ``Conv1D`` stores ``[in, out]``)."""
    weight = getattr(module, "weight", None)
    if not isinstance(weight, torch.Tensor) or weight.dim() != 2:
        raise ValueError(f"{type(module).__name__} has no 2-d weight")
    return weight if isinstance(module, nn.Linear) or type(module).__name__ != "Conv1D" else weight.t()


def projection_bias(module: nn.Module) -> torch.Tensor | None:
    """The projection's bias ``[out_features]``, or ``None``."""
    bias = getattr(module, "bias", None)
    return bias if isinstance(bias, torch.Tensor) else None


def model_parts(model: nn.Module) -> ModelParts:
    """The parts of ``model`` (a Hugging Face causal LM, or what :func:`inspector.load_model` returns).

    Raises:
        UnsupportedModelError: an architecture whose parts are not known; the message names it.
    """
    module = model if isinstance(model, nn.Module) else getattr(model, "model", None)
    if not isinstance(module, nn.Module):
        raise ValueError(f"expected a Hugging Face model or an InspectorModel, got {type(model).__name__}")
    config = getattr(module, "config", None)
    layout = _LAYOUTS.get(str(getattr(config, "model_type", "")))
    if layout is None:
        raise _refuse(module, "its parts (attention output projection, MLP, final norm) are not known")
    _check_config(module, config)
    names = {m: n for n, m in module.named_modules()}
    num_heads = int(getattr(config, "num_attention_heads", 0) or getattr(config, "n_head", 0))
    parallel = _parallel(config)
    layers: list[LayerParts] = []
    try:
        for attention, _index in find_attention_modules(module):
            block = module.get_submodule(names[attention].rpartition(".")[0])
            out_proj = attention.get_submodule(layout.out_proj)
            inner = int(projection_weight(out_proj).shape[1])
            if num_heads <= 0 or inner % num_heads:
                raise _refuse(module, f"its output projection takes {inner} features, not a multiple of "
                                      f"{num_heads} heads")
            post = (None, None) if layout.post_norms is None else tuple(
                block.get_submodule(n) for n in layout.post_norms)
            layers.append(LayerParts(block, attention, out_proj, block.get_submodule(layout.mlp), num_heads,
                                     inner // num_heads, post[0], post[1], parallel))
        final_norm = module.get_submodule(layout.final_norm)
        position = None if layout.position is None else module.get_submodule(layout.position)
    except AttributeError as exc:
        raise _refuse(module, f"a part is missing ({exc})") from exc
    accessors: Any = module  # a transformers PreTrainedModel
    embed, unembed = accessors.get_input_embeddings(), accessors.get_output_embeddings()
    if not isinstance(embed, nn.Module) or not isinstance(unembed, nn.Module):
        raise _refuse(module, "it has no input or output embeddings")
    softcap = getattr(config, "final_logit_softcapping", None)
    return ModelParts(tuple(layers), embed, position, final_norm, unembed, float(softcap) if softcap else None)


def layer_parts(model: nn.Module) -> list[LayerParts]:
    """:attr:`ModelParts.layers` of ``model``, as a list.

    Raises:
        UnsupportedModelError: an architecture whose parts are not known; the message names it.
    """
    return list(model_parts(model).layers)


def norm_parts(norm: nn.Module) -> NormParts:
    """``norm`` (``nn.LayerNorm`` or an RMS norm with ``eps`` or ``variance_epsilon``) as :class:`NormParts`.

    Raises:
        ValueError: a norm of another form.
    """
    if isinstance(norm, nn.LayerNorm):
        if not norm.elementwise_affine or norm.weight is None or len(norm.normalized_shape) != 1:
            raise ValueError("a LayerNorm without a per-feature affine is not decomposed")
        bias = None if norm.bias is None else norm.bias.detach().float()
        return NormParts("layer", norm.weight.detach().float(), bias, float(norm.eps))
    eps = getattr(norm, "variance_epsilon", getattr(norm, "eps", None))
    weight = getattr(norm, "weight", None)
    if not isinstance(eps, float) or not isinstance(weight, torch.Tensor) or weight.dim() != 1:
        raise ValueError(f"{type(norm).__name__} is neither a LayerNorm nor an RMS norm with a weight and eps")
    with torch.no_grad():
        ones = torch.ones(1, int(weight.shape[0]), dtype=weight.dtype, device=weight.device)
        gain = norm(ones)[0].float() * math.sqrt(1.0 + eps)
    return NormParts("rms", gain, None, eps)
