"""Per-turn research columns against direct teacher-forced forward passes (difficulty, condition effect, share)."""

from __future__ import annotations

import math

import pytest
import torch

from inspector.data.prompts import build_prompt
from inspector.research.condition import condition_positions, condition_prompt
from inspector.research.turns import RESEARCH_COLUMNS, research_columns

DIALOGUE = ["Hey, how are you?", "Fine, and you? I got the job!", "That is wonderful news.", "Thanks!"]


@torch.no_grad()
def forward(im, prompt: str, reply: str):
    """(log-probs of the reply's predictions [r, vocab] float64, reply ids [r], attentions [l, h, s, s], prompt_len)."""
    tok = im.tokenizer
    p = tok(prompt, add_special_tokens=False)["input_ids"]
    r = tok(reply, add_special_tokens=False)["input_ids"]
    out = im.model(input_ids=torch.tensor([p + r]), output_attentions=True, use_cache=False)
    logp = torch.log_softmax(out.logits[0, len(p) - 1 : -1].double(), dim=-1)
    return logp, torch.tensor(r), torch.stack([a[0] for a in out.attentions]).double(), len(p)


def test_columns_match_direct_computation(byte_tiny):
    tok = byte_tiny.tokenizer
    prompts = [build_prompt(DIALOGUE, t, tok, context_turns=2) for t in range(3)]
    responses = [DIALOGUE[1], None, DIALOGUE[3]]
    rows = research_columns(byte_tiny, prompts, responses, ["happiness", "inform", None])
    assert [list(r) for r in rows] == [list(RESEARCH_COLUMNS)] * 3

    reply = " " + DIALOGUE[1]
    lp_plain, ids, _, _ = forward(byte_tiny, prompts[0].text, reply)
    cond_text = prompts[0].text[:-1] + " (happiness):"
    lp_cond, _, att, plen = forward(byte_tiny, cond_text, reply)
    at = torch.arange(len(ids))
    nll = -float(lp_plain[at, ids].sum())
    r0 = rows[0]
    assert r0["ref_tokens"] == len(ids)
    assert r0["ref_nll"] == pytest.approx(nll, abs=1e-3)
    assert r0["ref_ppl"] == pytest.approx(math.exp(nll / len(ids)), rel=1e-4)
    assert r0["cond_delta_loglik"] == pytest.approx(float(lp_cond[at, ids].sum()) + nll, abs=1e-3)
    kl = (lp_cond.exp() * (lp_cond - lp_plain)).sum(-1)
    assert r0["cond_kl_mean"] == pytest.approx(float(kl.mean()), abs=1e-5)
    assert r0["cond_kl_max"] == pytest.approx(float(kl.max()), abs=1e-5)
    pos = condition_positions(condition_prompt(prompts[0], "happiness", tok).segments)
    share = att[:, :, plen:, pos].sum(-1).mean()  # mean over layers, heads and reply rows
    assert r0["attn_condition"] == pytest.approx(float(share), abs=1e-3)  # stored attention is float16

    assert all(math.isnan(v) for v in rows[1].values())  # no reference reply
    assert not math.isnan(rows[2]["ref_nll"]) and math.isnan(rows[2]["cond_kl_mean"])  # no target


def test_without_targets_only_difficulty(byte_tiny):
    prompts = [build_prompt(DIALOGUE, 0, byte_tiny.tokenizer)]
    row = research_columns(byte_tiny, prompts, [DIALOGUE[1]])[0]
    assert row["ref_tokens"] == len(" " + DIALOGUE[1]) and math.isnan(row["attn_condition"])
    assert all(math.isnan(v) for v in research_columns(byte_tiny, prompts, ["  "])[0].values())
    with pytest.raises(ValueError, match="one response"):
        research_columns(byte_tiny, prompts, [DIALOGUE[1], DIALOGUE[2]])


def test_turns_that_do_not_fit_the_context_get_nan(byte_tiny):
    tok = byte_tiny.tokenizer
    prompts = [build_prompt(DIALOGUE, 0, tok), build_prompt(DIALOGUE, 1, tok)]
    room = byte_tiny.context_length - len(prompts[1])
    just_fits = "x" * (room - 1)  # forced as " " + text: exactly `room` byte tokens
    rows = research_columns(byte_tiny, prompts, ["y" * 1100, just_fits], ["joy", "joy"])
    assert all(math.isnan(v) for v in rows[0].values())  # reply longer than the context
    assert rows[1]["ref_tokens"] == room  # the plain prompt and reply fill the context exactly
    assert math.isnan(rows[1]["cond_kl_mean"])  # " (joy)" makes the conditioned prompt too long
