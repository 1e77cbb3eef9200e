"""Hidden states, value norms and the stored lens on every tested architecture, against a teacher-forced pass.

The tiny models are those of ``test_architectures.py`` (grouped-query attention, sliding windows
crossed by the generation, rotary and ALiBi positions, OPT's learned positions). Each row of a
left-padded batch is compared with one teacher-forced pass over its final sequence:
``output_hidden_states=True`` for the residual stream, and each attention module's input in
that pass, through :func:`~inspector.analysis.value_norms.value_norms_from_weights`, for the
value norms.
"""

from __future__ import annotations

import pytest
import torch
from test_architectures import ARCHS, BY_NAME, LAYERS, LONG, NEW, SHORT, build

import inspector
from inspector._architectures import find_attention_modules
from inspector.analysis.value_norms import value_norms_from_weights, value_weights

HIDDEN_TOL, NORM_TOL, LOGIT_TOL = 1e-4, 1e-5, 1e-4
SUPPORTED = [a.name for a in ARCHS]  # Falcon too since its fused layouts are read (test_value_norms_falcon.py)
_MODELS: dict[str, inspector.InspectorModel] = {}


def _model(name: str) -> inspector.InspectorModel:
    if name not in _MODELS:
        _MODELS[name] = build(BY_NAME[name])
    return _MODELS[name]


@torch.no_grad()
def teacher_forced(im, ids: torch.Tensor) -> tuple[list[torch.Tensor], torch.Tensor]:
    """(``layer + 1`` states ``[seq, d]``, value norms ``[layer, head, seq]``) of one pass over ``ids``."""
    mods = [m for m, _ in find_attention_modules(im.model)]
    inputs: dict[int, torch.Tensor] = {}

    def grab(i):
        def hook(module, args, kwargs):
            inputs[i] = (kwargs["hidden_states"] if "hidden_states" in kwargs else args[0])[0]
        return hook

    handles = [m.register_forward_pre_hook(grab(i), with_kwargs=True) for i, m in enumerate(mods)]
    try:
        out = im.model(input_ids=ids[None], output_hidden_states=True, use_cache=False)
    finally:
        for h in handles:
            h.remove()
    norms = torch.stack([value_norms_from_weights(inputs[i], value_weights(m)) for i, m in enumerate(mods)])
    return [h[0].float() for h in out.hidden_states], norms


def _entries(hidden) -> list[torch.Tensor]:
    return list(hidden.unbind(0)) if isinstance(hidden, torch.Tensor) else list(hidden)


def assert_layers_exact(im, cap) -> None:
    ref_hidden, ref_norms = teacher_forced(im, cap.token_ids)
    got = _entries(cap.hidden_states)
    assert len(got) == len(ref_hidden) == LAYERS + 1
    for e, (g, r) in enumerate(zip(got, ref_hidden, strict=True)):
        assert g.shape == r.shape, f"{im.name}: entry {e} is {tuple(g.shape)}, expected {tuple(r.shape)}"
        err = (g.float() - r).abs().amax(-1)
        bad = (err > HIDDEN_TOL).nonzero().flatten().tolist()
        assert not bad, f"{im.name}: entry {e} positions {bad} (prompt {cap.prompt_len}) differ: {err.max():.2e}"
    assert cap.value_norms.shape == ref_norms.shape
    assert (cap.value_norms - ref_norms).abs().max().item() <= NORM_TOL


@pytest.mark.parametrize("name", SUPPORTED)
def test_batch_layers_exact(name):
    im = _model(name)
    caps = im.generate([SHORT, LONG], max_new_tokens=NEW, keep_hidden_states=True, keep_value_norms=True,
                       hidden_dtype=torch.float32, attention_dtype=torch.float32, keep_logits=True, lens_k=3)
    for cap in caps:
        assert_layers_exact(im, cap)
        # the last entry of the stored lens is the model's own next-token distribution
        p = cap.prompt_len
        assert cap.logits is not None and cap.lens is not None
        probs = torch.softmax(cap.logits, dim=-1)
        assert (cap.lens.topk_probs[-1, p - 1 : -1, 0] - probs.max(-1).values).abs().max().item() <= LOGIT_TOL
        assert torch.equal(cap.lens.target_rank[-1, p - 1 : -1], cap.raw.chosen_rank)


def test_beam_search_layers_exact_on_sliding_window():
    im = _model("gemma2")
    caps = im.generate([LONG], max_new_tokens=NEW, num_beams=2, num_return_sequences=2, keep_hidden_states=True,
                       keep_value_norms=True, hidden_dtype=torch.float32)
    for cap in caps:
        assert_layers_exact(im, cap)


def test_opt_with_a_projection_keeps_the_narrower_last_entry():
    """OPT-350m's layout: the last entry (after ``project_out``) is narrower than the others."""
    from transformers import AutoModelForCausalLM, OPTConfig

    from inspector._fallback import builtin_tokenizer

    cfg = OPTConfig(hidden_size=32, ffn_dim=64, word_embed_proj_dim=16, num_hidden_layers=LAYERS,
                    num_attention_heads=4, max_position_embeddings=256, init_std=0.3, vocab_size=257,
                    bos_token_id=256, eos_token_id=256, pad_token_id=256)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(0)
        model = AutoModelForCausalLM.from_config(cfg, attn_implementation="eager", dtype=torch.float32)
    im = inspector.InspectorModel.from_model(model, builtin_tokenizer(), name="tiny-opt-proj", random_weights=True)
    cap = im.generate(SHORT, max_new_tokens=5, keep_hidden_states=True, keep_value_norms=True,
                      hidden_dtype=torch.float32, lens_k=2)
    assert isinstance(cap.hidden_states, tuple)
    assert [int(t.shape[-1]) for t in cap.hidden_states] == [32] * LAYERS + [16]
    assert_layers_exact(im, cap)


def test_round_trip_of_per_entry_hidden_states(tmp_path):
    import dataclasses

    from inspector._store import load_capture

    im = _model("opt")
    cap = im.generate(SHORT, max_new_tokens=3, keep_hidden_states=True)
    assert isinstance(cap.hidden_states, torch.Tensor)
    entries = (*cap.hidden_states[:-1].unbind(0), cap.hidden_states[-1][:, :16].clone())
    narrow = dataclasses.replace(cap, hidden_states=entries)
    back = load_capture(narrow.save(tmp_path / "c.safetensors"))
    assert isinstance(back.hidden_states, tuple) and len(back.hidden_states) == len(entries)
    assert all(torch.equal(a, b) for a, b in zip(back.hidden_states, entries, strict=True))


def test_value_norms_refused_where_the_layout_is_unknown(monkeypatch):
    """The refusal stays for an architecture listed as unsupported (no tested architecture is listed now)."""
    from inspector._capture import layers

    monkeypatch.setattr(layers, "VALUE_NORMS_UNSUPPORTED", ("falcon",))
    im = _model("falcon")
    with pytest.raises(ValueError, match="falcon"):
        im.generate(SHORT, max_new_tokens=2, keep_value_norms=True)
    cap = im.generate(SHORT, max_new_tokens=3, keep_hidden_states=True, hidden_dtype=torch.float32)
    with torch.no_grad():
        out = im.model(input_ids=cap.token_ids[None], output_hidden_states=True, use_cache=False)
    ref = torch.stack([h[0] for h in out.hidden_states])
    assert isinstance(cap.hidden_states, torch.Tensor)
    assert (cap.hidden_states - ref).abs().max().item() <= HIDDEN_TOL
