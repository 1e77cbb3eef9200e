"""Hidden states, value norms and the stored logit lens of a capture, against independent references.

The references are one teacher-forced forward pass over each final sequence:
``output_hidden_states=True`` for the residual stream, and
:func:`inspector.analysis.value_norms.model_value_norms` (each layer's attention input taken
from that pass) for the value norms. The captured values come from the prefill and from
each cached decoding step, so agreement checks that every position was recorded at the
step that consumed it, in the right row, for greedy, a left-padded batch and beam search.
"""

from __future__ import annotations

import pytest
import torch

import inspector
from inspector._records.capture import CaptureError
from inspector._store import load_capture
from inspector.analysis.lens import capture_lens
from inspector.analysis.value_norms import model_value_norms

PROMPT = "User: hey how are you? \nAgent:"
BATCH = [PROMPT, "Hi", "User: what time does the train leave tomorrow morning?\nAgent:"]
FULL = {"keep_hidden_states": True, "keep_value_norms": True, "hidden_dtype": torch.float32,
        "attention_dtype": torch.float32, "keep_logits": True}


@torch.no_grad()
def teacher_forced(im, ids: torch.Tensor):
    """``([layer + 1, seq, d], [layer, head, seq])`` of one forward pass over ``ids``."""
    out = im.model(input_ids=ids[None].to(im.device), output_hidden_states=True, use_cache=False)
    hidden = torch.stack([h[0].float().cpu() for h in out.hidden_states])
    return hidden, model_value_norms(im.model, ids)


def assert_layers_match(im, cap, hidden_tol=1e-4, norm_tol=1e-5):
    ref_hidden, ref_norms = teacher_forced(im, cap.token_ids)
    assert isinstance(cap.hidden_states, torch.Tensor) and cap.hidden_states.dtype == torch.float32
    assert cap.hidden_states.shape == ref_hidden.shape == (im.num_layers + 1, cap.seq_len, ref_hidden.shape[-1])
    assert (cap.hidden_states - ref_hidden).abs().max().item() <= hidden_tol
    assert cap.value_norms is not None and cap.value_norms.shape == (im.num_layers, im.num_heads, cap.seq_len)
    assert (cap.value_norms - ref_norms).abs().max().item() <= norm_tol


def test_greedy_hidden_states_and_value_norms_exact(byte_tiny):
    cap = byte_tiny.generate(PROMPT, max_new_tokens=8, **FULL)
    assert cap.num_steps == 8
    assert_layers_match(byte_tiny, cap)
    # the residual stream is not constant across positions or layers (a real check of the positions)
    assert cap.hidden_states[1].std(0).max() > 1e-2 and cap.value_norms.std(-1).max() > 1e-3


@pytest.mark.slow
def test_full_size_gpt2_hidden_states_exact(gpt2_random):
    cap = gpt2_random.generate(PROMPT, max_new_tokens=5, **FULL)
    assert_layers_match(gpt2_random, cap, hidden_tol=1e-3)


def test_left_padded_batch_each_row_exact(byte_tiny):
    caps = byte_tiny.generate(BATCH, max_new_tokens=6, **FULL)
    assert len({c.prompt_len for c in caps}) == 3
    for cap in caps:
        assert_layers_match(byte_tiny, cap)


def test_sampling_rows_exact(byte_tiny):
    caps = byte_tiny.generate([PROMPT], max_new_tokens=6, do_sample=True, num_return_sequences=2, seed=3, **FULL)
    for cap in caps:
        assert_layers_match(byte_tiny, cap)


def test_beam_search_every_returned_beam_exact(byte_tiny):
    caps = byte_tiny.generate([PROMPT, "Hi"], max_new_tokens=6, num_beams=3, num_return_sequences=3, **FULL)
    assert len(caps) == 6 and len({tuple(c.token_ids.tolist()) for c in caps[:3]}) == 3
    for cap in caps:
        assert_layers_match(byte_tiny, cap)


def test_beam_search_layers_without_attention(byte_tiny):
    caps = byte_tiny.generate([PROMPT], max_new_tokens=4, num_beams=2, num_return_sequences=2,
                              keep_attention=False, **{k: v for k, v in FULL.items() if k != "attention_dtype"})
    for cap in caps:
        assert cap.attentions is None
        assert_layers_match(byte_tiny, cap)


def test_default_float16_and_off_by_default(byte_tiny):
    plain = byte_tiny.generate(PROMPT, max_new_tokens=3)
    assert plain.hidden_states is None and plain.value_norms is None and plain.lens is None
    cap = byte_tiny.generate(PROMPT, max_new_tokens=3, keep_hidden_states=True)
    assert cap.hidden_states.dtype == torch.float16
    ref, _ = teacher_forced(byte_tiny, cap.token_ids)
    assert torch.allclose(cap.hidden_states.float(), ref, atol=1e-2, rtol=1e-3)
    assert cap.meta.generation["keep_hidden_states"] is True and cap.meta.generation["hidden_dtype"] == "float16"


def test_stored_lens_last_entry_equals_captured_logits(byte_tiny):
    cap = byte_tiny.generate(PROMPT, max_new_tokens=6, lens_k=5, **FULL)
    lens = cap.lens
    assert lens is not None and lens.topk_ids.shape == (byte_tiny.num_layers + 1, cap.seq_len, 5)
    p = cap.prompt_len
    probs = torch.softmax(cap.logits, dim=-1)  # row i: position p - 1 + i
    top = probs.topk(5, dim=-1)
    assert torch.equal(lens.topk_ids[-1, p - 1 : -1], top.indices)
    assert (lens.topk_probs[-1, p - 1 : -1] - top.values).abs().max().item() <= 1e-4
    assert torch.equal(lens.target_rank[-1, p - 1 : -1], cap.raw.chosen_rank)
    assert (lens.target_prob[-1, p - 1 : -1] - cap.chosen_probs).abs().max().item() <= 1e-4
    assert int(lens.target_rank[0, -1]) == 0 and torch.isnan(lens.target_prob[:, -1]).all()
    # the lens computed later from the model agrees with the stored one
    later = capture_lens(cap, byte_tiny, k=5)
    assert torch.equal(later.topk_ids, lens.topk_ids)


def test_lens_without_keeping_hidden_states(byte_tiny):
    cap = byte_tiny.generate(PROMPT, max_new_tokens=4, lens_k=3, hidden_dtype=torch.float32)
    assert cap.hidden_states is None and cap.lens is not None and cap.lens.k == 3


def test_round_trip_through_a_file(byte_tiny, tmp_path):
    cap = byte_tiny.generate(PROMPT, max_new_tokens=4, keep_hidden_states=True, keep_value_norms=True, lens_k=4)
    back = load_capture(cap.save(tmp_path / "cap.safetensors"))
    assert isinstance(back.hidden_states, torch.Tensor) and isinstance(cap.hidden_states, torch.Tensor)
    assert back.value_norms is not None and cap.value_norms is not None
    assert back.lens is not None and cap.lens is not None
    assert torch.equal(back.hidden_states, cap.hidden_states) and back.hidden_states.dtype == torch.float16
    assert torch.equal(back.value_norms, cap.value_norms)
    for name, t in cap.lens.tensors().items():
        assert torch.equal(back.lens.tensors()[name], t, ) or name == "lens.target_prob"
    assert torch.equal(back.lens.target_prob.nan_to_num(-1.0), cap.lens.target_prob.nan_to_num(-1.0))


def test_checksum_covers_hidden_states(byte_tiny, tmp_path):
    import inspector._fileformat as fileformat
    from inspector._store import CaptureFileError

    cap = byte_tiny.generate(PROMPT, max_new_tokens=2, keep_hidden_states=True)
    path = cap.save(tmp_path / "cap.safetensors")
    raw = bytearray(path.read_bytes())
    tensors, _, _ = fileformat.read(path)
    needle = tensors["hidden_states"].contiguous().view(torch.uint8).numpy().tobytes()[:64]
    at = bytes(raw).find(needle)
    assert at > 0
    raw[at + 1] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(CaptureFileError, match="hidden_states"):
        load_capture(path)


def test_wrong_shapes_refused(byte_tiny):
    import dataclasses

    cap = byte_tiny.generate(PROMPT, max_new_tokens=2, keep_hidden_states=True, keep_value_norms=True)
    with pytest.raises(CaptureError, match="hidden_states"):
        dataclasses.replace(cap, hidden_states=cap.hidden_states[:, :-1])
    with pytest.raises(CaptureError, match="layer \\+ 1"):
        dataclasses.replace(cap, hidden_states=cap.hidden_states[:-1])
    with pytest.raises(CaptureError, match="value_norms"):
        dataclasses.replace(cap, value_norms=cap.value_norms[:, :1])


def test_bad_settings_refused_before_model_work(byte_tiny):
    with pytest.raises(ValueError, match="lens_k"):
        byte_tiny.generate(PROMPT, lens_k=-1)
    with pytest.raises(ValueError, match="hidden_dtype"):
        byte_tiny.generate(PROMPT, hidden_dtype="int8")


def test_norm_weighted_aggregation(byte_tiny):
    from inspector._aggregate import AGGREGATE_MODES, aggregate_by_mode

    assert "norm-weighted" in AGGREGATE_MODES
    cap = byte_tiny.generate(PROMPT, max_new_tokens=4, keep_value_norms=True, attention_dtype=torch.float32)
    att, norms = cap.attentions, cap.value_norms
    # by hand: weight every key by its norm, renormalise each row, mean over layers and heads
    w = att * norms[:, :, None, :]
    w = w / w.sum(-1, keepdim=True)
    expected = w.mean(dim=(0, 1))
    got = aggregate_by_mode(att, "norm-weighted", value_norms=norms)
    assert got.shape == (cap.seq_len, cap.seq_len)
    assert torch.allclose(got, expected, atol=1e-6)
    assert torch.allclose(got.sum(-1), torch.ones(cap.seq_len), atol=1e-5)
    assert torch.allclose(aggregate_by_mode(att, "norm-weighted", layer=1, head=0, value_norms=norms), w[1, 0],
                          atol=1e-6)
    with pytest.raises(ValueError, match="keep_value_norms=True"):
        aggregate_by_mode(att, "norm-weighted")


def test_hooks_removed_after_layer_capture(byte_tiny):
    model = byte_tiny.model
    before = [len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules()]
    byte_tiny.generate(PROMPT, max_new_tokens=2, keep_hidden_states=True, keep_value_norms=True)
    byte_tiny.generate(PROMPT, max_new_tokens=2, num_beams=2, keep_hidden_states=True, keep_value_norms=True)
    assert [len(m._forward_pre_hooks) + len(m._forward_hooks) for m in model.modules()] == before
    assert inspector.GenerationSettings().keep_hidden_states is False


def test_norm_weighted_heatmap_from_a_capture(byte_tiny):
    from inspector.plots.attention_data import heatmap_data

    cap = byte_tiny.generate(PROMPT, max_new_tokens=3, keep_value_norms=True, attention_dtype=torch.float32)
    data = heatmap_data(cap, agg="norm-weighted")
    w = cap.attentions * cap.value_norms[:, :, None, :]
    expected = (w / w.sum(-1, keepdim=True)).mean(dim=(0, 1))
    assert torch.allclose(torch.as_tensor(data.matrix, dtype=torch.float32), expected, atol=1e-5)
    with pytest.raises(ValueError, match="keep_value_norms"):
        heatmap_data(byte_tiny.generate(PROMPT, max_new_tokens=2), agg="norm-weighted")
