"""Reply difficulty and condition effects against direct teacher-forced computations from the model."""

from __future__ import annotations

import math

import pytest
import torch

from inspector import Capture
from inspector._capture.forced import score
from inspector.research.difficulty import (
    CONDITION_COLUMNS,
    DIFFICULTY_COLUMNS,
    condition_effect,
    condition_effects,
    kl_divergence,
    reply_difficulty,
)

PLAIN = ["User: I got the job!\nAgent:", "User: where is the station?\nAgent:"]
COND = ["User: I got the job!\nAgent (happiness):", "User: where is the station?\nAgent [inform]:"]
REPLIES = [" That is wonderful news.", " Two blocks north."]


@torch.no_grad()
def direct_logprobs(im, prompt: str, reply: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward pass over prompt + reply alone: (log-probs [reply_len, vocab] float64, reply ids [reply_len])."""
    tok = im.tokenizer
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(reply, add_special_tokens=False)["input_ids"]
    logits = im.model(input_ids=torch.tensor([p + r]), use_cache=False).logits[0].double()
    return torch.log_softmax(logits[len(p) - 1 : -1], dim=-1), torch.tensor(r)


def test_difficulty_matches_direct_computation(byte_tiny):
    caps = score(byte_tiny, PLAIN, REPLIES)
    assert isinstance(caps, list)
    for cap, prompt, reply in zip(caps, PLAIN, REPLIES, strict=True):
        logp, ids = direct_logprobs(byte_tiny, prompt, reply)
        nll = -float(logp[torch.arange(len(ids)), ids].sum())
        d = reply_difficulty(cap)
        assert d.tokens == len(ids) == len(reply.encode())  # byte-level: one token per byte
        assert d.nll == pytest.approx(nll, abs=1e-3)
        assert d.nll_mean == pytest.approx(nll / len(ids), abs=1e-4)
        assert d.ppl == pytest.approx(math.exp(nll / len(ids)), rel=1e-4)
        assert list(d.columns()) == list(DIFFICULTY_COLUMNS)


def test_difficulty_refuses_a_generated_capture_unless_asked(byte_tiny):
    gen = byte_tiny.generate("Hello", max_new_tokens=4)
    with pytest.raises(ValueError, match="not teacher-forced"):
        reply_difficulty(gen)
    assert reply_difficulty(gen, require_forced=False).nll == pytest.approx(-float(gen.raw.chosen_logprob.sum()))


def test_condition_effect_matches_direct_computation(byte_tiny):
    results = condition_effects(byte_tiny, PLAIN, COND, REPLIES)
    for res, plain, cond, reply in zip(results, PLAIN, COND, REPLIES, strict=True):
        lp_plain, ids = direct_logprobs(byte_tiny, plain, reply)
        lp_cond, _ = direct_logprobs(byte_tiny, cond, reply)
        rows = torch.arange(len(ids))
        delta = float(lp_cond[rows, ids].sum() - lp_plain[rows, ids].sum())
        kl = (lp_cond.exp() * (lp_cond - lp_plain)).sum(-1)
        assert res.effect.delta_loglik == pytest.approx(delta, abs=1e-3)
        assert torch.allclose(res.effect.kl, kl, atol=1e-5)
        assert res.effect.kl_mean == pytest.approx(float(kl.mean()), abs=1e-5)
        assert res.effect.kl_max == pytest.approx(float(kl.max()), abs=1e-5)
        assert res.effect.kl_mean > 0  # the prompts differ, so the predictions do
        assert list(res.effect.columns()) == list(CONDITION_COLUMNS)
        assert res.plain.logits is None and res.conditioned.logits is None  # reduced, then dropped
        assert res.plain.generated_text == reply


def test_same_prompt_has_no_effect(byte_tiny):
    a = score(byte_tiny, PLAIN[0], REPLIES[0], keep_logits=True)
    b = score(byte_tiny, PLAIN[0], REPLIES[0], keep_logits=True)
    assert isinstance(a, Capture) and isinstance(b, Capture)
    eff = condition_effect(a, b)
    assert eff.delta_loglik == 0.0 and eff.kl_max == pytest.approx(0.0, abs=1e-12)


def test_kl_divergence_by_hand():
    p = torch.tensor([[0.0, math.log(3.0)]], dtype=torch.float64)  # probabilities 1/4, 3/4
    q = torch.tensor([[0.0, 0.0]], dtype=torch.float64)  # 1/2, 1/2
    expected = 0.25 * math.log(0.25 / 0.5) + 0.75 * math.log(0.75 / 0.5)
    assert float(kl_divergence(p, q)[0]) == pytest.approx(expected, abs=1e-12)
    with pytest.raises(ValueError, match="both be"):
        kl_divergence(p, q[:, :1])


def test_condition_effect_needs_logits_and_the_same_reply(byte_tiny):
    no_logits = score(byte_tiny, PLAIN[0], REPLIES[0])
    with_logits = score(byte_tiny, COND[0], REPLIES[0], keep_logits=True)
    assert isinstance(no_logits, Capture) and isinstance(with_logits, Capture)
    with pytest.raises(ValueError, match="keep_logits=True"):
        condition_effect(no_logits, with_logits)
    other = score(byte_tiny, COND[0], REPLIES[1], keep_logits=True)
    plain = score(byte_tiny, PLAIN[0], REPLIES[0], keep_logits=True)
    assert isinstance(other, Capture) and isinstance(plain, Capture)
    with pytest.raises(ValueError, match="different replies"):
        condition_effect(plain, other)
    with pytest.raises(ValueError, match="equal length"):
        condition_effects(byte_tiny, PLAIN, COND[:1], REPLIES)
