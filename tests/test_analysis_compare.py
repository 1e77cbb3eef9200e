"""Comparing captures: hand-built captures with known distributions, and a real tiny model against itself."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import example, given, settings, strategies as st

from inspector._records.capture import Capture, TokenScores
from inspector.analysis.compare import CompareError, compare_beams, compare_captures


def _capture(ids, prompt_len, logits, k=2, attentions=None, keep_logits=True) -> Capture:
    """A Capture whose raw scores come from the given ``[step, vocab]`` logits."""
    ids = torch.tensor(ids)
    logits = torch.tensor(logits, dtype=torch.float32)
    logp = torch.log_softmax(logits, -1)
    chosen = ids[prompt_len:]
    top_lp, top_ids = logp.topk(k, -1)
    scores = TokenScores(
        entropy=-(logp.exp() * logp).sum(-1),
        chosen_logprob=logp.gather(1, chosen[:, None])[:, 0],
        chosen_rank=(logp > logp.gather(1, chosen[:, None])).sum(-1) + 1,
        topk_ids=top_ids,
        topk_logprobs=top_lp,
    )
    return Capture(token_ids=ids, tokens=[str(int(i)) for i in ids], prompt_len=prompt_len, prompt_text="",
                   generated_text="", stop_reason="length", raw=scores, processed=scores,
                   attentions=attentions, logits=logits if keep_logits else None)


def _kl(p, q) -> float:
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q, strict=True) if pi > 0)


def _probs(row):
    z = sum(math.exp(v) for v in row)
    return [math.exp(v) / z for v in row]


LA = [[0.0, 1.0, 2.0, 0.5], [1.0, 0.0, 0.0, 3.0]]
LB = [[0.0, 1.0, 1.5, 0.0], [0.0, 2.0, 0.0, 1.0]]


def test_exact_kl_agreement_and_divergence_by_hand():
    a = _capture([0, 1, 2, 3], 2, LA)  # prompt [0, 1], generates 2 then 3
    b = _capture([0, 1, 2, 1], 2, LB)  # same prompt, generates 2 then 1
    c = compare_captures(a, b, distributions="raw")
    assert c.align == "prefix" and c.kl_method == "exact" and c.shared_len == 3
    assert c.steps_a.tolist() == [0, 1] and c.steps_b.tolist() == [0, 1]
    expected = [_kl(_probs(ra), _probs(rb)) for ra, rb in zip(LA, LB, strict=True)]
    torch.testing.assert_close(c.kl, torch.tensor(expected, dtype=torch.float32))
    assert c.top1_agree.tolist() == [True, False]  # argmax 2/2, then 3/1
    assert c.first_divergence == 1 and c.agreement == 0.5
    assert c.chosen_a.tolist() == [2, 3] and c.chosen_b.tolist() == [2, 1]
    frame = c.to_frame()
    assert frame["same_token"].tolist() == [True, False]


def test_topk_bound_by_hand_and_below_exact():
    a = _capture([0, 1, 2, 3], 2, LA)
    b = _capture([0, 1, 2, 1], 2, LB)
    c = compare_captures(a, b, kl="topk", distributions="raw")
    assert c.kl_method == "topk-bound"
    # Step 0: top-2 of a = {2, 1}, of b = {2, 1}: partition {2}, {1}, rest.
    pa, pb = _probs(LA[0]), _probs(LB[0])
    slack = 3 * float(torch.finfo(torch.float32).eps)  # (k + 1) float32 epsilons on b's remainder, documented
    coarse_a = [pa[2], pa[1], 1 - pa[2] - pa[1]]
    coarse_b = [pb[2], pb[1], 1 - pb[2] - pb[1] + slack]
    assert float(c.kl[0]) == pytest.approx(_kl(coarse_a, coarse_b), rel=1e-5)
    # Step 1: top-2 of a = {3, 0}, of b = {1, 3}: partition {3}, rest.
    pa, pb = _probs(LA[1]), _probs(LB[1])
    assert float(c.kl[1]) == pytest.approx(_kl([pa[3], 1 - pa[3]], [pb[3], 1 - pb[3] + slack]), rel=1e-5)
    exact = compare_captures(a, b, kl="exact", distributions="raw")
    assert torch.all(c.kl <= exact.kl + 1e-6)
    # With the whole vocabulary as top-k the bound is the exact KL.
    full = compare_captures(_capture([0, 1, 2, 3], 2, LA, k=4), _capture([0, 1, 2, 1], 2, LB, k=4), kl="topk")
    torch.testing.assert_close(full.kl, exact.kl, atol=1e-5, rtol=0)


def test_auto_kl_falls_back_without_logits_and_exact_demands_them():
    a = _capture([0, 1, 2, 3], 2, LA, keep_logits=False)
    b = _capture([0, 1, 2, 1], 2, LB)
    assert compare_captures(a, b).kl_method == "topk-bound"
    with pytest.raises(ValueError, match="keep_logits=True"):
        compare_captures(a, b, kl="exact")


def test_prompts_of_different_length_align_on_context():
    a = _capture([0, 1, 2, 3], 2, LA)  # context [0, 1, 2] is a's step 1
    b = _capture([0, 1, 2, 3], 3, LA[1:])  # ... and b's step 0
    c = compare_captures(a, b)
    assert c.align == "prefix" and c.steps_a.tolist() == [1] and c.steps_b.tolist() == [0]
    assert float(c.kl[0]) == pytest.approx(0.0, abs=1e-7) and c.first_divergence is None


def test_different_prompts_align_on_generated_tokens_or_fail_clearly():
    a = _capture([0, 1, 2, 3], 2, LA)
    b = _capture([3, 1, 2, 3], 2, LB)  # another prompt, same generated tokens
    with pytest.raises(CompareError, match="align='generated'"):
        compare_captures(a, b, align="prefix")
    c = compare_captures(a, b)
    assert c.align == "generated" and c.steps_a.tolist() == [0, 1] and c.shared_len == 2
    assert c.attention_diff is None and c.first_divergence is None
    with pytest.raises(ValueError, match="align must be"):
        compare_captures(a, b, align="tokens")


def test_attention_difference_over_shared_tokens():
    att_a = torch.tril(torch.ones(4, 4)).div(torch.arange(1, 5)[:, None]).expand(1, 2, 4, 4).clone()
    att_b = torch.eye(4).expand(1, 2, 4, 4).clone()
    a = _capture([0, 1, 2, 3], 2, LA, attentions=att_a)
    b = _capture([0, 1, 2, 1], 2, LB, attentions=att_b)
    c = compare_captures(a, b)
    assert c.attention_diff is not None and tuple(c.attention_diff.shape) == (1, 2, 3, 3)
    torch.testing.assert_close(c.attention_diff, att_a[:, :, :3, :3] - att_b[:, :, :3, :3])


def test_beams():
    a = _capture([0, 1, 2, 3], 2, LA)
    b = _capture([0, 1, 2, 1], 2, LB)
    out = compare_beams([a, b, a])
    assert len(out) == 2 and out[0].first_divergence == 1 and out[1].first_divergence is None
    torch.testing.assert_close(out[1].kl, torch.zeros(2))
    with pytest.raises(CompareError, match="another prompt"):
        compare_beams([a, _capture([3, 1, 2, 3], 2, LB)])
    with pytest.raises(CompareError, match="at least two"):
        compare_beams([a])


def test_real_tiny_model_greedy_against_itself(byte_tiny):
    a = byte_tiny.generate("Hello, how are", max_new_tokens=6, keep_logits=True)
    b = byte_tiny.generate("Hello, how are", max_new_tokens=6, keep_logits=True)
    c = compare_captures(a, b)
    assert c.kl_method == "exact" and c.num_steps == 6 and c.first_divergence is None
    torch.testing.assert_close(c.kl, torch.zeros(6), atol=1e-6, rtol=0)
    assert c.agreement == 1.0
    assert c.attention_diff is not None and float(c.attention_diff.abs().max()) == 0.0
    # Sampling at a high temperature from the same prompt parts from greedy at some step; before it, KL is 0.
    s = byte_tiny.generate("Hello, how are", max_new_tokens=6, keep_logits=True, do_sample=True,
                           temperature=5.0, seed=1)
    raw = compare_captures(a, s, distributions="raw")
    assert raw.align == "prefix" and raw.first_divergence is not None
    torch.testing.assert_close(raw.kl, torch.zeros(raw.num_steps), atol=1e-6, rtol=0)
    # ... while what the two runs decoded from differs: softmax(l) against softmax(l / 5), from the same logits.
    cs = compare_captures(a, s)
    assert cs.distributions == "processed" and cs.kl_method == "exact"
    la = a.logits[cs.steps_a].double()
    pa, ps = torch.log_softmax(la, -1), torch.log_softmax(la / 5.0, -1)
    torch.testing.assert_close(cs.kl.double(), (pa.exp() * (pa - ps)).sum(-1), atol=1e-5, rtol=1e-5)
    assert bool((cs.kl > 0).all())
    assert ("generation.do_sample", False, True) in cs.setting_differences


def test_real_tiny_model_beams(byte_tiny):
    beams = byte_tiny.generate(["Hi there"], max_new_tokens=4, num_beams=3, num_return_sequences=3)
    out = compare_beams(beams)
    assert len(out) == 2
    for c in out:
        assert c.align == "prefix" and c.num_steps >= 1 and c.kl_method == "topk-bound"


@settings(max_examples=60, deadline=None, database=None)
@given(st.integers(0, 2**31 - 1), st.integers(1, 8), st.integers(1, 8), st.floats(0.1, 6.0))
# Found by this test: b's top-k held almost all of its mass, so 1 - sum(p) rounded to 0 in float32 and the
# "rest" term became rest_a * log(rest_a / tiny) (674 nats against an exact KL of 21).
@example(seed=522843, ka=8, kb=5, scale=6.0)
def test_topk_bound_never_exceeds_exact_kl(seed, ka, kb, scale):
    """Coarse-graining never increases KL: the top-k estimate is a lower bound, for any k and logits.

    The slack covers float32 rounding of the stored top-k log-probs, which the rest bucket's
    mass (1 - top-k mass) magnifies when that mass is tiny.
    """
    gen = torch.Generator().manual_seed(seed)
    la = (torch.randn(3, 8, generator=gen) * scale).tolist()
    lb = (torch.randn(3, 8, generator=gen) * scale).tolist()
    a = _capture([0, 1, 2, 3, 4], 2, la, k=ka)
    b = _capture([0, 1, 2, 3, 4], 2, lb, k=kb)
    exact = compare_captures(a, b, kl="exact", distributions="raw").kl
    bound = compare_captures(a, b, kl="topk", distributions="raw").kl
    assert torch.all(bound >= 0) and torch.all(bound <= exact + 1e-3)
