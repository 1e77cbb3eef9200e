"""Logit lens and readout discovery, against teacher-forced forward passes and a hand-built model."""

from __future__ import annotations

import math

import pytest
import torch
import transformers as tf
from analysis_models import ARCHS, V, forward_hidden, tiny_model

from inspector._lens_math import LensResult, logit_lens, next_token_targets
from inspector._readout import find_readout


@pytest.mark.parametrize("arch", ARCHS)
def test_last_entry_equals_model_logits(arch):
    model = tiny_model(arch)
    ids = torch.tensor([3, 17, 5, 42, 8, 8, 30])
    hidden, logits = forward_hidden(model, ids)
    stacked = hidden if arch == "opt_project" else torch.stack(hidden)
    res = logit_lens(stacked, model, targets=next_token_targets(ids), k=V)
    ref = torch.log_softmax(logits, -1)
    probs, order = ref.exp().sort(-1, descending=True)
    torch.testing.assert_close(res.topk_probs[-1], probs, atol=1e-4, rtol=0)
    assert torch.equal(res.topk_ids[-1, :, 0], order[:, 0])
    torch.testing.assert_close(res.entropy[-1], -(ref.exp() * ref).sum(-1), atol=1e-4, rtol=0)
    tgt = ids[1:]
    ref_t = ref[:-1].gather(1, tgt[:, None])[:, 0]
    torch.testing.assert_close(res.target_prob[-1, :-1], ref_t.exp(), atol=1e-4, rtol=0)
    assert torch.equal(res.target_rank[-1, :-1], (ref[:-1] > ref_t[:, None]).sum(-1) + 1)
    assert res.target_rank[-1, -1] == 0 and math.isnan(float(res.target_prob[-1, -1]))


def test_intermediate_entries_go_through_final_norm_gpt2():
    model = tiny_model("gpt2")
    ids = torch.tensor([1, 2, 3, 4, 5])
    hidden, _ = forward_hidden(model, ids)
    res = logit_lens(torch.stack(hidden), model, k=5)
    for e in (0, 1):
        ref = torch.softmax(model.lm_head(model.transformer.ln_f(hidden[e])), -1)
        torch.testing.assert_close(res.topk_probs[e], ref.topk(5, -1).values, atol=1e-5, rtol=0)


def test_llama_untied_rmsnorm_intermediate_entries():
    model = tiny_model("llama")
    assert model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr()
    ids = torch.tensor([7, 9, 11, 13])
    hidden, _ = forward_hidden(model, ids)
    res = logit_lens(torch.stack(hidden), model, k=3)
    readout = find_readout(model)
    assert readout.norm is not None
    assert readout.norm is model.model.norm and readout.head is model.lm_head
    h = hidden[1]
    normed = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + model.config.rms_norm_eps) * model.model.norm.weight
    ref = torch.softmax(normed @ model.lm_head.weight.T, -1)
    torch.testing.assert_close(res.topk_probs[1], ref.topk(3, -1).values, atol=1e-5, rtol=0)


def test_hand_built_one_layer_model():
    """LayerNorm of [3, 1, 1, -1] is [sqrt2, 0, 0, -sqrt2]; an identity unembedding makes those the logits."""
    config = tf.GPT2Config(n_layer=1, n_head=1, n_embd=4, vocab_size=4, layer_norm_epsilon=0.0)
    config._attn_implementation = "eager"
    model = tf.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.wte.weight.copy_(torch.eye(4))  # tied: the head is the identity
        model.transformer.ln_f.weight.fill_(1.0)
        model.transformer.ln_f.bias.zero_()
    assert model.lm_head.weight.data_ptr() == model.transformer.wte.weight.data_ptr()
    embeddings = torch.tensor([[3.0, 1.0, 1.0, -1.0]])
    final = torch.tensor([[1.0, 2.0, 3.0, 4.0]])  # already normed: decoded by the head alone
    res = logit_lens(torch.stack([embeddings, final]), model, targets=torch.tensor([0]), k=4)
    s = math.sqrt(2.0)
    z = math.exp(s) + 2 + math.exp(-s)
    assert res.topk_ids[0, 0].tolist()[0] == 0 and res.topk_ids[0, 0].tolist()[-1] == 3
    torch.testing.assert_close(res.topk_probs[0, 0], torch.tensor([math.exp(s) / z, 1 / z, 1 / z, math.exp(-s) / z]))
    assert res.target_rank[0, 0] == 1
    z2 = sum(math.exp(v) for v in (1, 2, 3, 4))
    assert res.topk_ids[1, 0].tolist() == [3, 2, 1, 0]
    torch.testing.assert_close(res.target_prob[1, 0], torch.tensor(math.exp(1) / z2))
    assert res.target_rank[1, 0] == 4
    ent = -sum(math.exp(v) / z2 * (v - math.log(z2)) for v in (1, 2, 3, 4))
    torch.testing.assert_close(res.entropy[1, 0], torch.tensor(ent, dtype=torch.float32))
    # last_is_final=False runs the final entry through ln_f too: [1,2,3,4] -> symmetric logits.
    res2 = logit_lens(torch.stack([embeddings, final]), model, last_is_final=False, k=4)
    assert res2.topk_ids[1, 0].tolist() == [3, 2, 1, 0]
    assert not torch.allclose(res2.topk_probs[1, 0], res.topk_probs[1, 0])


def test_positions_chunks_and_storage_round_trip(byte_tiny):
    ids = torch.tensor(list(b"hello there, how are you?"))
    hidden, _ = forward_hidden(byte_tiny.model, ids)
    stacked = torch.stack(hidden)
    full = logit_lens(stacked, byte_tiny, targets=next_token_targets(ids), k=4)
    part = logit_lens(stacked, byte_tiny, targets=next_token_targets(ids), k=4, positions=[2, 5, 20], chunk_rows=2)
    assert part.positions.tolist() == [2, 5, 20]
    for name in ("topk_ids", "target_rank"):
        assert torch.equal(getattr(part, name), getattr(full, name)[:, [2, 5, 20]])
    torch.testing.assert_close(part.topk_probs, full.topk_probs[:, [2, 5, 20]])
    again = LensResult.from_tensors(full.tensors("lens"), "lens")
    assert torch.equal(again.topk_ids, full.topk_ids) and again.num_entries == 3 and again.k == 4


def test_bad_input_is_a_clear_error(byte_tiny):
    hs = torch.zeros(3, 5, 32)
    with pytest.raises(ValueError, match="3 entries"):
        logit_lens(hs[:2], byte_tiny)
    with pytest.raises(ValueError, match="layer \\+ 1, seq, d_model"):
        logit_lens(hs[0], byte_tiny)
    with pytest.raises(ValueError, match="targets must be"):
        logit_lens(hs, byte_tiny, targets=torch.zeros(4, dtype=torch.int64))
    with pytest.raises(ValueError, match="within 0..256"):
        logit_lens(hs, byte_tiny, targets=torch.full((5,), 999))
    with pytest.raises(ValueError, match="positions"):
        logit_lens(hs, byte_tiny, positions=[5])


def test_model_without_final_norm_names_its_class():
    model = tiny_model("opt", do_layer_norm_before=False)
    with pytest.raises(ValueError, match="OPTForCausalLM"):
        find_readout(model)


@pytest.mark.slow
def test_full_size_gpt2_lens_matches_forward(gpt2_random):
    """Full-size GPT-2 (tied 50257-token head): last entry = logits, entry 6 = lm_head(ln_f(h))."""
    ids = torch.randint(0, 50257, (48,), generator=torch.Generator().manual_seed(0))
    hidden, logits = forward_hidden(gpt2_random.model, ids)
    res = logit_lens(torch.stack(hidden), gpt2_random, targets=next_token_targets(ids), k=5)
    assert tuple(res.topk_ids.shape) == (13, 48, 5)
    ref = torch.log_softmax(logits, -1)
    torch.testing.assert_close(res.topk_probs[-1], ref.exp().topk(5, -1).values, atol=1e-4, rtol=0)
    torch.testing.assert_close(res.entropy[-1], -(ref.exp() * ref).sum(-1), atol=1e-4, rtol=1e-5)
    tr = gpt2_random.model.transformer
    with torch.no_grad():
        raw = gpt2_random.model.lm_head(tr.ln_f(hidden[6]))
    mid = torch.log_softmax(raw, -1)
    t = mid[:-1].gather(1, ids[1:, None])[:, 0]
    torch.testing.assert_close(res.target_prob[6, :-1], t.exp(), atol=1e-5, rtol=1e-4)
    # The rank counts larger raw logits: log-softmax's subtraction rounds some near-ties together.
    t_raw = raw[:-1].gather(1, ids[1:, None])
    assert torch.equal(res.target_rank[6, :-1], (raw[:-1] > t_raw).sum(-1) + 1)


@pytest.mark.parametrize("k", [1, 2, 4])
def test_target_rank_ties_in_targets_favour_whether_or_not_in_top_k(k):
    """Final logits [1, 2, 2, 0] (identity head): ranks of ids 0..3 are 3, 1, 1, 4 for any k."""
    config = tf.GPT2Config(n_layer=1, n_head=1, n_embd=4, vocab_size=4)
    config._attn_implementation = "eager"
    model = tf.GPT2LMHeadModel(config).eval()
    with torch.no_grad():
        model.transformer.wte.weight.copy_(torch.eye(4))
    final = torch.tensor([[1.0, 2.0, 2.0, 0.0]]).expand(4, 4)
    hidden = torch.stack([torch.zeros(4, 4), final])
    res = logit_lens(hidden, model, targets=torch.arange(4), k=k)
    assert res.target_rank[1].tolist() == [3, 1, 1, 4]


def test_capture_lens_teacher_forced_matches_the_capture(byte_tiny):
    """A greedy capture's steps are the lens's last-entry top-1 at positions prompt_len - 1 .. seq - 2."""
    from inspector.analysis.lens import capture_lens

    cap = byte_tiny.generate("The cat sat", max_new_tokens=5)
    res = capture_lens(cap, byte_tiny, k=3)
    p = cap.prompt_len
    assert res.top1_ids[-1, p - 1 : -1].tolist() == cap.generated_ids.tolist()
    torch.testing.assert_close(res.topk_probs[-1, p - 1 : -1], cap.raw.topk_logprobs[:, :3].exp(), atol=1e-5, rtol=0)
    assert torch.all(res.target_rank[-1, p - 1 : -1] == cap.raw.chosen_rank)
