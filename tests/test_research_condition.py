"""Conditioned prompts (their condition segment) and the attention share on it, against hand computations."""

from __future__ import annotations

import pytest
import torch

from inspector import Capture
from inspector._capture.forced import score
from inspector.data.prompts import build_prompt
from inspector.research.condition import (
    capture_condition_share,
    condition_attention_share,
    condition_positions,
    condition_prompt,
)

TURNS = ["Hey, how are you?", "Fine, and you? I got the job!", "That is wonderful news."]


def check_conditioned(tokenizer, style: str, target: str, inserted: str) -> None:
    plain = build_prompt(TURNS, 1, tokenizer, context_turns=2)
    cond = condition_prompt(plain, target, tokenizer, style=style)
    assert plain.text.endswith("Agent:")
    assert cond.text == plain.text[: -len(":")] + inserted + ":"
    assert list(cond.token_ids) == tokenizer(cond.text, add_special_tokens=False)["input_ids"]
    assert cond.segments[0].start == 0 and cond.segments[-1].end == len(cond.token_ids)
    assert all(a.end == b.start for a, b in zip(cond.segments, cond.segments[1:], strict=False))
    # everything before the cue is untouched, token for token and segment for segment
    cue_start = plain.segments[-1].start
    assert cond.token_ids[:cue_start] == plain.token_ids[:cue_start]
    assert cond.segments[:-3] == plain.segments[:-1]
    pos = condition_positions(cond.segments)
    text = tokenizer.decode([cond.token_ids[i] for i in pos])
    assert target in text and text in inserted  # the condition's tokens spell (most of) the inserted text
    roles = [s.role for s in cond.segments[-3:]]
    assert roles == ["cue", "condition", "cue"]
    assert {(s.turn, s.speaker) for s in cond.segments[-3:]} == {(2, "Agent")}
    assert cond.extra["condition"] == target and cond.source()["condition"] == target


def test_condition_segment_byte_tokenizer(byte_tiny):
    check_conditioned(byte_tiny.tokenizer, "paren", "happiness", " (happiness)")
    check_conditioned(byte_tiny.tokenizer, "bracket", "inform", " [inform]")


def test_condition_segment_gpt2_tokenizer(tokenizer, byte_tiny):
    check_conditioned(tokenizer, "paren", "happiness", " (happiness)")
    check_conditioned(tokenizer, "bracket", "inform", " [inform]")
    with pytest.raises(ValueError, match="the one it was built with"):
        condition_prompt(build_prompt(TURNS, 1, byte_tiny.tokenizer), "joy", tokenizer)


def hand_share(att: torch.Tensor, prompt_len: int, positions: list[int]) -> torch.Tensor:
    layers, heads, seq, _ = att.shape
    out = torch.zeros(layers, heads, dtype=torch.float64)
    for layer in range(layers):
        for head in range(heads):
            total = 0.0
            for q in range(prompt_len, seq):
                total += sum(float(att[layer, head, q, k]) for k in positions)
            out[layer, head] = total / (seq - prompt_len)
    return out


def test_share_by_hand_on_a_made_up_tensor():
    g = torch.Generator().manual_seed(0)
    att = torch.rand(3, 2, 7, 7, generator=g).tril()
    att = att / att.sum(-1, keepdim=True)
    share = condition_attention_share(att, 4, [1, 2])
    assert share.shape == (3, 2)
    assert torch.allclose(share, hand_share(att, 4, [1, 2]), atol=1e-12)
    assert torch.equal(condition_attention_share(att, 4, []), torch.zeros(3, 2, dtype=torch.float64))
    with pytest.raises(ValueError, match="not prompt positions"):
        condition_attention_share(att, 4, [5])
    with pytest.raises(ValueError, match="prompt_len"):
        condition_attention_share(att, 7, [1])


def test_share_on_a_forced_capture(byte_tiny):
    tok = byte_tiny.tokenizer
    cond = condition_prompt(build_prompt(TURNS, 1, tok, context_turns=2), "happiness", tok)
    cap = score(byte_tiny, cond.text, " " + TURNS[2], sources=cond.source(), attention_dtype=torch.float32)
    assert isinstance(cap, Capture) and cap.attentions is not None
    assert cap.token_ids[: cap.prompt_len].tolist() == list(cond.token_ids)
    share = capture_condition_share(cap)
    pos = condition_positions(cond.segments)
    assert share.shape == (2, 2) and bool((share > 0).all())
    assert torch.allclose(share, hand_share(cap.attentions, cap.prompt_len, pos), atol=1e-9)


def test_bad_input_is_refused(byte_tiny):
    tok = byte_tiny.tokenizer
    plain = build_prompt(TURNS, 1, tok)
    with pytest.raises(ValueError, match="style"):
        condition_prompt(plain, "joy", tok, style="curly")
    with pytest.raises(ValueError, match="single-line"):
        condition_prompt(plain, " ", tok)
    cond = condition_prompt(plain, "joy", tok)
    with pytest.raises(ValueError, match="already conditioned"):
        condition_prompt(cond, "joy", tok)
    cap = score(byte_tiny, plain.text, " ok", sources=plain.source())
    assert isinstance(cap, Capture)
    with pytest.raises(ValueError, match="no condition segment"):
        capture_condition_share(cap)
