"""``CaptureMeta.sequence_score``: each returned beam's score, against transformers' own ``generate`` and by hand."""

from __future__ import annotations

import pytest
import torch
from transformers import GenerationConfig

PROMPTS = ["Hi there", "The cat sat"]


def _reference(im, prompts, **kw):
    """transformers' ``sequences_scores`` and sequences for the same prompts, from a plain ``generate`` call."""
    tok = im.tokenizer
    tok.padding_side = "left"
    enc = tok(prompts, return_tensors="pt", padding=True)
    config = GenerationConfig(do_sample=False, early_stopping=True, length_penalty=1.0, output_scores=True,
                              return_dict_in_generate=True, eos_token_id=tok.eos_token_id,
                              pad_token_id=tok.pad_token_id, **kw)
    with torch.no_grad():
        out = im.model.generate(**enc, generation_config=config)
    return out, enc


@pytest.mark.parametrize(("num_return_sequences", "penalty"), [(1, 1.0), (3, 1.0), (2, 1.5)])
def test_beam_scores_equal_transformers_and_the_hand_sum(byte_tiny, num_return_sequences, penalty):
    caps = byte_tiny.generate(PROMPTS, max_new_tokens=6, num_beams=3, num_return_sequences=num_return_sequences,
                              keep_attention=False, repetition_penalty=penalty)
    out, enc = _reference(byte_tiny, PROMPTS, max_new_tokens=6, num_beams=3,
                          num_return_sequences=num_return_sequences, repetition_penalty=penalty)
    assert len(caps) == len(PROMPTS) * num_return_sequences == int(out.sequences_scores.shape[0])
    p_max = int(enc["input_ids"].shape[1])
    for j, cap in enumerate(caps):
        # the same beam: transformers' sequence j continues with the capture's generated tokens
        ref_gen = out.sequences[j, p_max:p_max + cap.num_steps]
        assert torch.equal(ref_gen, cap.generated_ids)
        assert cap.meta.sequence_score is not None
        assert cap.meta.sequence_score == pytest.approx(float(out.sequences_scores[j]), abs=1e-5)
        # by hand: the chosen tokens' processed log-probabilities summed, over length ** length_penalty (1.0);
        # a repetition penalty leaves beam search's processed log-probabilities unnormalised: not their sum then
        by_hand = float(cap.processed.chosen_logprob.double().sum()) / cap.num_steps ** 1.0
        if penalty == 1.0:
            assert cap.meta.sequence_score == pytest.approx(by_hand, abs=1e-4)
    # ranked: within one prompt the returned sequences come best first
    scores = [c.meta.sequence_score for c in caps[:num_return_sequences]]
    assert scores == sorted(scores, reverse=True)


def test_no_beam_score_without_beam_search(byte_tiny):
    cap = byte_tiny.generate("Hi there", max_new_tokens=3, keep_attention=False)
    assert cap.meta.sequence_score is None
