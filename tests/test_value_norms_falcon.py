"""Falcon's value norms in its three fused ``query_key_value`` layouts, against explicit per-head computations.

Falcon fuses q, k and v in one Linear, laid out three ways (``FalconAttention._split_heads``):
per head q | k | v (``multi_query=False``), all queries then one shared key and value
(``multi_query=True``), and per kv group its queries, a key and a value
(``new_decoder_architecture=True``). The references below take the value rows by
hand from the weights, by each layout's own indexing, one head at a time.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
import torch
import transformers as tf
from test_analysis_value_norms import IDS, _layer_io

from inspector.analysis.value_norms import layer_value_norms, transformed_values, value_weights

HEADS, DH = 4, 8
D = HEADS * DH
LAYOUTS: dict[str, dict[str, Any]] = {
    "multi_query": dict(multi_query=True, new_decoder_architecture=False),
    "per_head": dict(multi_query=False, new_decoder_architecture=False, num_kv_heads=HEADS),
    "grouped": dict(multi_query=False, new_decoder_architecture=True, num_kv_heads=2),
}


def _falcon(layout: str, bias: bool = True):
    config = tf.FalconConfig(hidden_size=D, ffn_hidden_size=2 * D, num_hidden_layers=2, num_attention_heads=HEADS,
                             alibi=False, bias=bias, vocab_size=64, bos_token_id=0, eos_token_id=0, pad_token_id=0,
                             initializer_range=0.3, **LAYOUTS[layout])
    config._attn_implementation = "eager"
    torch.manual_seed(0)
    model = tf.FalconForCausalLM(config).eval()
    assert model.config.hidden_size == D and len(model.transformer.h) == 2
    return model


def _value_rows(layout: str, head: int) -> list[int]:
    """Rows of query_key_value's weight holding the value that query head ``head`` reads."""
    if layout == "multi_query":  # [q_0 .. q_{H-1}, k, v]
        start = (HEADS + 1) * DH
    elif layout == "per_head":  # [q_0, k_0, v_0, q_1, k_1, v_1, ...]
        start = (3 * head + 2) * DH
    else:  # 2 groups of [q, q, k, v]: head h is in group h // 2, whose value is its 4th slot
        group, slots = head // (HEADS // 2), HEADS // 2 + 2
        start = (group * slots + slots - 1) * DH
    return list(range(start, start + DH))


def _reference(x: torch.Tensor, attn, layout: str) -> torch.Tensor:
    out = torch.empty(HEADS, x.shape[0])
    w, b = attn.query_key_value.weight, attn.query_key_value.bias
    for h in range(HEADS):
        rows = _value_rows(layout, h)
        v = x @ w[rows].T + (b[rows] if b is not None else 0.0)
        f = v @ attn.dense.weight[:, h * DH : (h + 1) * DH].T
        out[h] = f.pow(2).sum(-1).sqrt()
    return out


@pytest.mark.parametrize("layout", list(LAYOUTS))
@pytest.mark.parametrize("bias", [True, False])
def test_falcon_value_norms_match_per_head_reference(layout, bias):
    model = _falcon(layout, bias)
    attn, x, _, _ = _layer_io(model, IDS, 1)
    weights = value_weights(attn)
    assert weights.num_heads == HEADS
    assert weights.num_kv_heads == {"multi_query": 1, "per_head": HEADS, "grouped": 2}[layout]
    with torch.no_grad():
        torch.testing.assert_close(layer_value_norms(x, attn), _reference(x, attn, layout), atol=1e-5, rtol=0)


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_falcon_weighted_transformed_values_sum_to_attention_output(layout):
    """sum_h sum_k a[h, q, k] f_h(x_k) = the attention module's output minus the dense bias."""
    model = _falcon(layout)
    attn, x, out, att = _layer_io(model, IDS, 0)
    with torch.no_grad():
        got = torch.einsum("hqk,hkd->qd", att.float(), transformed_values(x, value_weights(attn)))
    torch.testing.assert_close(got, out - attn.dense.bias.detach(), atol=1e-5, rtol=1e-4)


def test_falcon_capture_keeps_value_norms():
    """keep_value_norms=True is accepted for Falcon now; the norms equal the per-head reference of each layer."""
    from test_architectures import BY_NAME, SHORT, build
    from transformers.models.falcon.modeling_falcon import FalconAttention

    from inspector._architectures import find_attention_modules

    im = build(BY_NAME["falcon"])
    cap = im.generate(SHORT, max_new_tokens=3, keep_value_norms=True)
    mods = [cast(FalconAttention, m) for m, _ in find_attention_modules(im.model)]
    inputs: dict[int, torch.Tensor] = {}

    def grab(i):
        def hook(_m, args, kwargs):
            inputs[i] = (kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])[0]
        return hook

    handles = [m.register_forward_pre_hook(grab(i), with_kwargs=True) for i, m in enumerate(mods)]
    try:
        with torch.no_grad():
            im.model(input_ids=cap.token_ids[None], use_cache=False)
    finally:
        for h in handles:
            h.remove()
    assert im.model.config.multi_query and not im.model.config.new_decoder_architecture
    assert cap.value_norms is not None
    heads, dh = im.model.config.num_attention_heads, mods[0].head_dim
    for layer, attn in enumerate(mods):
        x, w = inputs[layer], attn.query_key_value.weight
        rows = slice((heads + 1) * dh, (heads + 2) * dh)  # multi-query: the one value after all queries and the key
        bias = attn.query_key_value.bias[rows] if attn.query_key_value.bias is not None else 0.0
        v = x @ w[rows].T + bias
        with torch.no_grad():
            ref = torch.stack([(v @ attn.dense.weight[:, h * dh : (h + 1) * dh].T).norm(dim=-1) for h in range(heads)])
        torch.testing.assert_close(cap.value_norms[layer], ref, atol=1e-5, rtol=0)
