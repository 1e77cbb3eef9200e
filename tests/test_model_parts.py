"""The located parts of every tested architecture, checked against the model's own forward pass.

For each tiny model of ``test_architectures.py``, one forward pass with hooks records each layer's input and
output (the residual stream), ``out_proj``'s input and output, the MLP's output and the post-norms' inputs;
the checks are that the heads' slices through their slices of the projection add up to the projection's
output, that the residual stream after each layer is the one before plus what the parts say attention and the
MLP add, and that the final norm's decomposition (:class:`NormParts`) reproduces the norm.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch
from test_architectures import ARCHS, BY_NAME, HEADS, LAYERS, build
from torch import nn

import inspector
from inspector._architectures import TESTED_MODEL_TYPES, UnsupportedModelError, find_attention_modules
from inspector._model_parts import (
    layer_parts,
    model_parts,
    norm_parts,
    projection_bias,
    projection_weight,
)

TOL = 1e-4
_MODELS: dict[str, inspector.InspectorModel] = {}


def _model(name: str) -> inspector.InspectorModel:
    if name not in _MODELS:
        _MODELS[name] = build(BY_NAME[name])
    return _MODELS[name]


def _tiny_gpt2() -> inspector.InspectorModel:
    from conftest import make_byte_tiny

    if "gpt2" not in _MODELS:
        _MODELS["gpt2"] = make_byte_tiny(n_layer=LAYERS, n_head=HEADS)
    return _MODELS["gpt2"]


def _any(name: str) -> inspector.InspectorModel:
    return _tiny_gpt2() if name == "gpt2" else _model(name)


def test_every_tested_architecture_is_covered():
    assert {a.name for a in ARCHS} | {"gpt2"} == set(TESTED_MODEL_TYPES)


def _first(out: Any) -> torch.Tensor:
    return out[0] if isinstance(out, tuple) else out


@pytest.mark.parametrize("name", TESTED_MODEL_TYPES)
def test_parts_add_up_to_each_layers_residual_update(name):
    im = _any(name)
    parts = model_parts(im.model)
    # an InspectorModel is accepted as documented; the parameter is annotated nn.Module only
    assert layer_parts(im) == list(parts.layers)  # type: ignore[arg-type]
    assert len(parts.layers) == LAYERS
    assert [p.attention for p in parts.layers] == [m for m, _ in find_attention_modules(im.model)]
    seen: dict[str, torch.Tensor] = {}
    handles = []

    def keep(key: str, take_input: bool) -> Any:
        def hook(_m: nn.Module, args: tuple[Any, ...], kwargs: dict[str, Any], out: Any) -> None:
            value = (kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]) if take_input else _first(out)
            seen[key] = value.detach().clone()
        return hook

    for i, p in enumerate(parts.layers):
        handles += [p.block.register_forward_hook(keep(f"in{i}", True), with_kwargs=True),
                    p.block.register_forward_hook(keep(f"out{i}", False), with_kwargs=True),
                    p.out_proj.register_forward_hook(keep(f"z{i}", True), with_kwargs=True),
                    p.out_proj.register_forward_hook(keep(f"o{i}", False), with_kwargs=True),
                    p.mlp.register_forward_hook(keep(f"m{i}", False), with_kwargs=True)]
    handles.append(parts.final_norm.register_forward_hook(keep("fin", True), with_kwargs=True))
    handles.append(parts.final_norm.register_forward_hook(keep("fout", False), with_kwargs=True))
    ids = torch.tensor([[72, 105, 32, 116, 104, 101, 114, 101, 46, 10, 66, 58],
                        [85, 115, 101, 114, 58, 32, 119, 104, 97, 116, 32, 116]])
    try:
        with torch.no_grad():
            im.model(input_ids=ids, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    for i, p in enumerate(parts.layers):
        z, o = seen[f"z{i}"], seen[f"o{i}"]
        assert z.shape[-1] == p.num_heads * p.head_dim and p.num_heads == HEADS
        w = projection_weight(p.out_proj)
        heads = sum(z[..., h * p.head_dim:(h + 1) * p.head_dim] @ w[:, h * p.head_dim:(h + 1) * p.head_dim].T
                    for h in range(p.num_heads))
        bias = projection_bias(p.out_proj)
        assert isinstance(heads, torch.Tensor)
        torch.testing.assert_close(heads + (0 if bias is None else bias), o, atol=TOL, rtol=0)
        attn_add, mlp_add = o, seen[f"m{i}"].reshape(o.shape)  # OPT's MLP sees [batch * seq, width]
        assert seen[f"m{i}"].shape == (o.shape if name != "opt" else (o.shape[0] * o.shape[1], o.shape[2]))
        if p.attention_post_norm is not None and p.mlp_post_norm is not None:
            attn_add, mlp_add = p.attention_post_norm(attn_add), p.mlp_post_norm(mlp_add)
        torch.testing.assert_close(seen[f"in{i}"] + attn_add + mlp_add, seen[f"out{i}"], atol=TOL, rtol=0)
        assert p.parallel == (name in ("gptj", "gpt_neox", "falcon"))
        assert (p.attention_post_norm is not None) == (name == "gemma2")
    torch.testing.assert_close(seen[f"out{LAYERS - 1}"], seen["fin"], atol=TOL, rtol=0)
    norm = norm_parts(parts.final_norm)
    x = seen["fin"].float()
    centred = x - x.mean(-1, keepdim=True) if norm.kind == "layer" else x
    rebuilt = centred * norm.scale(x).unsqueeze(-1) * norm.gain + (0 if norm.bias is None else norm.bias)
    torch.testing.assert_close(rebuilt, seen["fout"].float(), atol=TOL, rtol=0)
    assert parts.unembed is im.model.get_output_embeddings() and parts.embed is im.model.get_input_embeddings()
    assert (parts.position is not None) == (name in ("gpt2", "opt"))
    assert (parts.softcap is not None) == (name == "gemma2")


def test_an_unknown_architecture_is_refused_by_name():
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(hidden_size=16, intermediate_size=32, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=40)
    model = LlamaForCausalLM(config)
    # transformers declares model_type a class variable; the test overrides it on this one instance
    model.config.model_type = "llama_like_unknown"  # type: ignore[misc]
    with pytest.raises(UnsupportedModelError, match=r"LlamaForCausalLM \(model_type 'llama_like_unknown'\).*not known"):
        layer_parts(model)


def test_a_post_norm_opt_is_refused():
    from transformers import OPTConfig, OPTForCausalLM

    config = OPTConfig(hidden_size=16, ffn_dim=32, word_embed_proj_dim=16, num_hidden_layers=1,
                       num_attention_heads=2, vocab_size=40, do_layer_norm_before=False)
    with pytest.raises(UnsupportedModelError, match="post-norm OPT"):
        model_parts(OPTForCausalLM(config))
