"""The trained demo model (SmolLM2-135M-Instruct: Llama, 30 layers, 9 query and 3 key/value heads) captured
exactly: attention rows, raw logits and hidden states against one teacher-forced pass over the final sequence,
for greedy decoding, seeded sampling, a left-padded batch and beam search, on chat-formatted prompts."""

from __future__ import annotations

import pytest
import torch

pytestmark = pytest.mark.slow

TURNS = [
    "Say, Jim, how about going for a few beers after dinner?",
    "What time does the train leave tomorrow morning?",
    "Hi",
]


def chat(tokenizer, text: str) -> str:
    """``text`` as one user message in the tokenizer's own chat template, with the generation prompt."""
    return tokenizer.apply_chat_template([{"role": "user", "content": text}], tokenize=False,
                                         add_generation_prompt=True)


@pytest.fixture(scope="module")
def prompts(smollm2):
    return [chat(smollm2.tokenizer, t) for t in TURNS]


@torch.no_grad()
def reference(im, ids: torch.Tensor):
    """One teacher-forced pass: ``([layer, head, seq, seq], [seq, vocab], [layer + 1, seq, d])``."""
    out = im.model(input_ids=ids[None], output_attentions=True, output_hidden_states=True, use_cache=False)
    return (torch.stack([a[0] for a in out.attentions]).float(), out.logits[0].float(),
            torch.stack([h[0] for h in out.hidden_states]).float())


def check(im, cap, hidden: bool = False):
    ref_att, ref_logits, ref_hidden = reference(im, cap.token_ids)
    p = cap.prompt_len
    assert cap.attentions.shape == (30, 9, cap.seq_len, cap.seq_len)
    assert (cap.attentions.float() - ref_att).abs().max().item() <= 1e-4
    rows = ref_logits[p - 1 : -1]  # row i produced generated token i
    assert (cap.logits - rows).abs().max().item() <= 2e-3  # logits of a trained model reach about 30
    logp = torch.log_softmax(rows.double(), dim=-1)
    exp_lp = logp.gather(1, cap.generated_ids[:, None])[:, 0]
    assert torch.allclose(cap.raw.chosen_logprob.double(), exp_lp, atol=1e-3)
    if hidden:
        assert cap.hidden_states is not None
        got = torch.stack(list(cap.hidden_states)) if isinstance(cap.hidden_states, tuple) else cap.hidden_states
        scale = ref_hidden.abs().amax(dim=-1, keepdim=True).clamp_min(1.0)
        assert ((got.float() - ref_hidden).abs() / scale).max().item() <= 1e-4
    return rows


def test_greedy_chat_reply_matches_teacher_forced(smollm2, prompts):
    cap = smollm2.generate(prompts[0], max_new_tokens=16, attention_dtype=torch.float32, keep_logits=True,
                           keep_hidden_states=True, hidden_dtype="float32")
    rows = check(smollm2, cap, hidden=True)
    assert torch.equal(cap.generated_ids, rows.argmax(-1))
    # a trained model: sure of its reply, and the reply is English words about the question
    assert cap.raw.chosen_logprob.exp().mean().item() > 0.3
    assert cap.meta.model == "smollm2" and cap.meta.model_file["quantization"] == "Q4_1"
    assert not cap.meta.random_weights


def test_seeded_sampling_is_reproducible_and_exact(smollm2, prompts):
    kw = dict(max_new_tokens=8, do_sample=True, temperature=0.8, top_k=40, seed=7,
              attention_dtype=torch.float32, keep_logits=True)
    a = smollm2.generate(prompts[:2], **kw)
    b = smollm2.generate(prompts[:2], **kw)
    for ca, cb in zip(a, b, strict=True):
        assert torch.equal(ca.token_ids, cb.token_ids)
        check(smollm2, ca)
        assert bool(torch.isfinite(ca.processed.chosen_logprob).all())  # never sampled a filtered token


def test_left_padded_batch_equals_each_prompt_alone(smollm2, prompts):
    caps = smollm2.generate(prompts, max_new_tokens=6, attention_dtype=torch.float32, keep_logits=True)
    lengths = {c.prompt_len for c in caps}
    assert len(lengths) == 3  # the batch really is padded
    for prompt, cap in zip(prompts, caps, strict=True):
        assert cap.token_ids[: cap.prompt_len].tolist() == smollm2.tokenizer(prompt, add_special_tokens=False)[
            "input_ids"]
        check(smollm2, cap)
        alone = smollm2.generate(prompt, max_new_tokens=6, attention_dtype=torch.float32, keep_logits=True)
        assert torch.equal(alone.token_ids, cap.token_ids)
        assert (alone.attentions - cap.attentions).abs().max().item() <= 1e-4


def test_beams_each_match_their_own_forward_pass(smollm2, prompts):
    caps = smollm2.generate([prompts[2]], max_new_tokens=5, num_beams=3, num_return_sequences=3,
                            attention_dtype=torch.float32, keep_logits=True)
    assert len(caps) == 3 and len({tuple(c.token_ids.tolist()) for c in caps}) == 3
    for cap in caps:
        check(smollm2, cap)


def test_generation_stops_at_the_end_of_turn_token(smollm2, prompts):
    cap = smollm2.generate(prompts[2], max_new_tokens=60)
    end = smollm2.tokenizer.convert_tokens_to_ids("<|im_end|>")
    assert cap.stop_reason == "eos" and int(cap.generated_ids[-1]) == end
    assert "<|im_end|>" not in cap.generated_text and cap.generated_text.strip()
