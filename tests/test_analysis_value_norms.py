"""Value norms against per-head matmuls from the weights and against the attention layer's own output."""

from __future__ import annotations

import pytest
import torch
from analysis_models import forward_hidden, tiny_model

from inspector.analysis.value_norms import (
    attention_modules,
    layer_value_norms,
    model_value_norms,
    norm_weighted_attention,
    transformed_values,
    value_weights,
)


def _reference_gpt2(x, attn):
    """Per head, with plain matmuls: Conv1D c_attn columns 2d.. are the values, c_proj rows h*dh.. head h."""
    d = attn.c_proj.weight.shape[0]
    heads = attn.num_heads
    dh = d // heads
    out = torch.empty(heads, x.shape[0])
    for h in range(heads):
        cols = slice(2 * d + h * dh, 2 * d + (h + 1) * dh)
        v = x @ attn.c_attn.weight[:, cols] + attn.c_attn.bias[cols]
        f = v @ attn.c_proj.weight[h * dh : (h + 1) * dh, :]
        for j in range(x.shape[0]):
            out[h, j] = f[j].pow(2).sum().sqrt()
    return out


def _reference_gqa(x, attn, heads, kv_heads):
    """Per query head h, kv head h // (heads / kv_heads); nn.Linear weights are [out, in]."""
    dh = attn.head_dim
    out = torch.empty(heads, x.shape[0])
    for h in range(heads):
        g = h // (heads // kv_heads)
        w_v = attn.v_proj.weight[g * dh : (g + 1) * dh, :]
        v = x @ w_v.T
        if attn.v_proj.bias is not None:
            v = v + attn.v_proj.bias[g * dh : (g + 1) * dh]
        f = v @ attn.o_proj.weight[:, h * dh : (h + 1) * dh].T
        out[h] = f.pow(2).sum(-1).sqrt()
    return out


def _layer_io(model, ids, layer):
    """The attention module's input, output and weights for one forward pass (hooks removed after)."""
    attn = attention_modules(model)[layer]
    seen = {}

    def pre(_m, args, kwargs):
        seen["x"] = (kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])[0].detach()

    def post(_m, _args, output):
        seen["out"], seen["att"] = output[0][0].detach(), output[1][0].detach()

    handles = [attn.register_forward_pre_hook(pre, with_kwargs=True), attn.register_forward_hook(post)]
    try:
        with torch.no_grad():
            model(ids.unsqueeze(0), output_attentions=True)
    finally:
        for h in handles:
            h.remove()
    return attn, seen["x"], seen["out"], seen["att"]


IDS = torch.tensor([3, 17, 5, 42, 8, 8, 30, 1])


def test_gpt2_matches_per_head_reference():
    model = tiny_model("gpt2")
    attn, x, _, _ = _layer_io(model, IDS, 1)
    with torch.no_grad():
        torch.testing.assert_close(layer_value_norms(x, attn), _reference_gpt2(x, attn), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_grouped_query_attention_matches_per_head_reference(arch):
    model = tiny_model(arch)  # 4 query heads share 2 kv heads; qwen2 has a value bias
    attn, x, _, _ = _layer_io(model, IDS, 0)
    assert value_weights(attn).num_kv_heads == 2 and value_weights(attn).num_heads == 4
    assert (attn.v_proj.bias is not None) == (arch == "qwen2")
    with torch.no_grad():
        torch.testing.assert_close(layer_value_norms(x, attn), _reference_gqa(x, attn, 4, 2), atol=1e-5, rtol=0)


@pytest.mark.parametrize("arch", ["gpt2", "llama", "qwen2", "neox", "opt", "gptj", "gemma"])
def test_weighted_transformed_values_sum_to_attention_output(arch):
    """sum_h sum_k a[h, q, k] f_h(x_k) = attention output - output bias."""
    model = tiny_model(arch)
    attn, x, out, att = _layer_io(model, IDS, 1)
    f = transformed_values(x, value_weights(attn))  # [head, key, d]
    got = torch.einsum("hqk,hkd->qd", att.float(), f)
    proj = next(getattr(attn, n) for n in ("c_proj", "o_proj", "out_proj", "dense") if hasattr(attn, n))
    bias = proj.bias if proj.bias is not None else torch.zeros(out.shape[-1])
    torch.testing.assert_close(got, out - bias.detach(), atol=1e-5, rtol=1e-4)


def test_model_value_norms_uses_each_layers_normed_input():
    model = tiny_model("gpt2")
    hidden, _ = forward_hidden(model, IDS)
    norms = model_value_norms(model, IDS)
    assert tuple(norms.shape) == (2, 2, len(IDS))
    with torch.no_grad():
        for layer, block in enumerate(model.transformer.h):
            x = block.ln_1(hidden[layer])
            torch.testing.assert_close(norms[layer], _reference_gpt2(x, block.attn), atol=1e-5, rtol=0)
    assert not any(m._forward_pre_hooks for m in attention_modules(model))


def test_norm_weighted_attention_by_hand():
    att = torch.tensor([[[[1.0, 0.0], [0.25, 0.75]]]])  # [1, 1, 2, 2]
    norms = torch.tensor([[[2.0, 4.0]]])
    raw = norm_weighted_attention(att, norms)
    torch.testing.assert_close(raw, torch.tensor([[[[2.0, 0.0], [0.5, 3.0]]]]))
    ren = norm_weighted_attention(att, norms, renormalise=True)
    torch.testing.assert_close(ren, torch.tensor([[[[1.0, 0.0], [0.5 / 3.5, 3.0 / 3.5]]]]))
    zero = norm_weighted_attention(att, torch.zeros(1, 1, 2), renormalise=True)
    assert torch.equal(zero, torch.zeros_like(att))
    with pytest.raises(ValueError, match="norms"):
        norm_weighted_attention(att, torch.ones(1, 1, 3))


def test_bad_layout_and_input_are_clear_errors():
    with pytest.raises(ValueError, match="Linear"):
        value_weights(torch.nn.Linear(2, 2))
    attn = attention_modules(tiny_model("gpt2"))[0]
    with pytest.raises(ValueError, match="d_model=16"):
        layer_value_norms(torch.zeros(3, 8), attn)
