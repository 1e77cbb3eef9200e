"""The math of value-vector norms (Kobayashi et al. 2020, "Attention is not only a weight") and norm-weighted attention.

For head ``h`` of a layer, key token ``j`` contributes ``a[h, q, j] * f_h(x_j)`` to
query ``q``'s attention output, with the *transformed value*
``f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h`` (``x_j``: the layer's attention input, after
the pre-attention norm). Summed over heads and keys, this is the attention output
minus the output bias. ``||f_h(x_j)||`` is how much token ``j`` can move anything
through head ``h``; ``a * ||f||`` is what it actually moved.

Weights are read from the attention module as Hugging Face lays them out: GPT-2's
``Conv1D`` ``c_attn`` / ``c_proj``, GPT-NeoX's (and BLOOM's) fused ``query_key_value`` /
``dense``, Falcon's fused ``query_key_value`` in its three layouts (per-head q | k | v;
multi-query: all queries, one key, one value; ``new_decoder_architecture``: per kv group
its queries, a key and a value), and ``v_proj`` with ``o_proj`` or ``out_proj`` (Llama, Mistral, Qwen2, Gemma, OPT,
GPT-J), including grouped-query attention, where kv head ``g`` serves query heads
``g * n_rep .. (g + 1) * n_rep - 1`` (``repeat_kv``).

``||f_h(x_j)||`` depends on token ``j``'s own input only, so a cached generation can
compute it once per token, at the step that consumes the token (prefill for the
prompt): :func:`value_norms_from_weights` takes any ``[key, d_model]`` rows.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

__all__ = ["ValueWeights", "layer_value_norms", "norm_weighted_attention", "transformed_values",
           "value_norms_from_weights", "value_weights"]


@dataclass(frozen=True)
class ValueWeights:
    """The value and output projections of one attention layer, in ``x @ W`` convention.

    Attributes:
        w_v: ``[d_model, kv_head, head_dim]``.
        b_v: ``[kv_head, head_dim]`` or ``None`` (no value bias).
        w_o: ``[head, head_dim, d_model]``, head ``h``'s rows of the output projection.
    """

    w_v: torch.Tensor
    b_v: torch.Tensor | None
    w_o: torch.Tensor

    def __post_init__(self) -> None:
        if self.w_v.dim() != 3 or self.w_o.dim() != 3 or self.w_v.shape[2] != self.w_o.shape[1]:
            raise ValueError(f"w_v must be [d_model, kv_head, head_dim] and w_o [head, head_dim, d_model], got "
                             f"{tuple(self.w_v.shape)} and {tuple(self.w_o.shape)}")
        if self.num_heads % self.num_kv_heads:
            raise ValueError(f"{self.num_heads} query heads cannot share {self.num_kv_heads} kv heads evenly")
        if self.b_v is not None and tuple(self.b_v.shape) != tuple(self.w_v.shape[1:]):
            raise ValueError(
                f"b_v must be [kv_head, head_dim]={tuple(self.w_v.shape[1:])}, got {tuple(self.b_v.shape)}"
            )

    @property
    def num_heads(self) -> int:
        return int(self.w_o.shape[0])

    @property
    def num_kv_heads(self) -> int:
        return int(self.w_v.shape[1])

    @property
    def head_dim(self) -> int:
        return int(self.w_v.shape[2])


def _head_dim(attn: nn.Module) -> int:
    for attr in ("head_dim", "head_size"):
        value = getattr(attn, attr, None)
        if isinstance(value, int) and value > 0:
            return value
    raise ValueError(f"{type(attn).__name__} has no head_dim attribute; build ValueWeights by hand")


def _part(attn: nn.Module, name: str) -> Any:
    return getattr(attn, name)


def _gpt2(attn: nn.Module, dh: int) -> ValueWeights:
    # Conv1D stores weight as [in, out]: y = x @ W + b; c_attn's outputs are q | k | v.
    c_attn, c_proj = _part(attn, "c_attn"), _part(attn, "c_proj")
    w, b = c_attn.weight.detach(), c_attn.bias.detach()
    d = int(c_proj.weight.shape[1])
    w_v = w[:, 2 * d : 3 * d].reshape(w.shape[0], -1, dh)
    return ValueWeights(w_v, b[2 * d : 3 * d].reshape(-1, dh), c_proj.weight.detach().reshape(-1, dh, d))


def _neox(attn: nn.Module, dh: int) -> ValueWeights:
    # Fused Linear whose outputs are laid out per head as q | k | v (view(..., -1, 3 * dh).chunk(3)).
    qkv, dense = _part(attn, "query_key_value"), _part(attn, "dense")
    w = qkv.weight.detach().T.reshape(qkv.in_features, -1, 3, dh)[:, :, 2]
    b = None if qkv.bias is None else qkv.bias.detach().reshape(-1, 3, dh)[:, 2]
    return ValueWeights(w, b, dense.weight.detach().T.reshape(-1, dh, dense.out_features))


def _falcon(attn: nn.Module, dh: int) -> ValueWeights:
    # FalconAttention._split_heads: three layouts of the fused query_key_value outputs.
    qkv, dense = _part(attn, "query_key_value"), _part(attn, "dense")
    w, b = qkv.weight.detach().T, None if qkv.bias is None else qkv.bias.detach()
    heads = int(dense.in_features) // dh
    if _part(attn, "new_decoder_architecture"):
        # Per kv group g: heads/kv query heads, then one key, then one value (view(..., kv, heads/kv + 2, dh)).
        groups = int(_part(attn, "num_kv_heads"))
        slots = heads // groups + 2
        w_v = w.reshape(w.shape[0], groups, slots, dh)[:, :, -1]
        b_v = None if b is None else b.reshape(groups, slots, dh)[:, -1]
    elif _part(attn, "multi_query"):
        # All query heads, then the one shared key, then the one shared value (view(..., heads + 2, dh)).
        w_v = w.reshape(w.shape[0], heads + 2, dh)[:, -1:]
        b_v = None if b is None else b.reshape(heads + 2, dh)[-1:]
    else:
        return _neox(attn, dh)  # per head q | k | v, as GPT-NeoX
    return ValueWeights(w_v, b_v, dense.weight.detach().T.reshape(-1, dh, dense.out_features))


def _linear(attn: nn.Module, dh: int) -> ValueWeights:
    v = _part(attn, "v_proj")
    o = _part(attn, "o_proj" if hasattr(attn, "o_proj") else "out_proj")
    w_v = v.weight.detach().T.reshape(v.in_features, -1, dh)
    b_v = None if v.bias is None else v.bias.detach().reshape(-1, dh)
    return ValueWeights(w_v, b_v, o.weight.detach().T.reshape(-1, dh, o.out_features))


_LAYOUTS: tuple[tuple[tuple[str, ...], Callable[[nn.Module, int], ValueWeights]], ...] = (
    (("c_attn", "c_proj"), _gpt2),
    (("query_key_value", "dense"), _neox),
    (("v_proj", "o_proj"), _linear),
    (("v_proj", "out_proj"), _linear),
)


def value_weights(attn: nn.Module) -> ValueWeights:
    """The :class:`ValueWeights` of a Hugging Face attention module (see the module docstring for layouts).

    Raises:
        ValueError: naming the module class, for an unknown layout.
    """
    if all(hasattr(attn, a) for a in ("query_key_value", "dense", "multi_query", "new_decoder_architecture")):
        return _falcon(attn, _head_dim(attn))
    for names, build in _LAYOUTS:
        if all(isinstance(getattr(attn, n, None), nn.Module) for n in names):
            return build(attn, _head_dim(attn))
    raise ValueError(f"unknown attention layout {type(attn).__name__}: expected c_attn/c_proj (GPT-2), "
                     "query_key_value/dense (GPT-NeoX) or v_proj with o_proj/out_proj")


def transformed_values(x: torch.Tensor, weights: ValueWeights) -> torch.Tensor:
    """``f_h(x_j) = (x_j W_V^h + b_V^h) W_O^h`` for every head and key: ``[key, d_model]`` -> ``[head, key, d_model]``.

    Computed in float32. Query head ``h`` uses kv head ``h // (head / kv_head)``.
    """
    if x.dim() != 2 or x.shape[1] != weights.w_v.shape[0]:
        raise ValueError(f"x must be [key, d_model={weights.w_v.shape[0]}], got {tuple(x.shape)}")
    w_v = weights.w_v.float().to(x.device)
    v = torch.einsum("kd,dgc->gkc", x.float(), w_v)
    if weights.b_v is not None:
        v = v + weights.b_v.float().to(x.device)[:, None, :]
    v = v.repeat_interleave(weights.num_heads // weights.num_kv_heads, dim=0)
    return torch.einsum("hkc,hcd->hkd", v, weights.w_o.float().to(x.device))


def value_norms_from_weights(x: torch.Tensor, weights: ValueWeights) -> torch.Tensor:
    """``||f_h(x_j)||`` per head and key: ``[key, d_model]`` -> ``[head, key]`` float32."""
    norms: torch.Tensor = transformed_values(x, weights).norm(dim=-1)
    return norms


def layer_value_norms(x: torch.Tensor, attn: nn.Module) -> torch.Tensor:
    """Value norms with the weights of attention module ``attn``: ``[key, d_model]`` -> ``[head, key]``."""
    return value_norms_from_weights(x, value_weights(attn))


def norm_weighted_attention(att: torch.Tensor, norms: torch.Tensor, renormalise: bool = False) -> torch.Tensor:
    """``att[l, h, q, k] * norms[l, h, k]``: attention ``[layer, head, query, key]`` weighted by value norms.

    ``renormalise=False`` (default) gives Kobayashi's ``||a f(x)||``, the size of what
    each key moved, comparable across heads and layers (a head whose values are tiny
    scores low everywhere). ``renormalise=True`` divides each row by its sum, giving a
    distribution over keys again, the input rollout needs and comparable with raw
    attention maps; a row whose products are all zero stays zero.
    Returns float32 of ``att``'s shape.
    """
    if att.dim() != 4 or norms.dim() != 3 or tuple(norms.shape) != (att.shape[0], att.shape[1], att.shape[3]):
        raise ValueError(f"att must be [layer, head, query, key] and norms [layer, head, key]; got "
                         f"{tuple(att.shape)} and {tuple(norms.shape)}")
    out = att.float() * norms.float()[:, :, None, :]
    if renormalise:
        total = out.sum(-1, keepdim=True)
        out = torch.where(total > 0, out / total.clamp(min=torch.finfo(torch.float32).tiny), out)
    return out
