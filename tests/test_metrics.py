"""Per-turn metrics against independent references (explicit loops, a teacher-forced forward pass)."""

from __future__ import annotations

import math

import pytest
import torch

from inspector._metrics import SHARE_COLUMNS, attention_metrics, turn_metrics
from inspector.data import build_prompt
from inspector.data.prompts import Segment


def causal_attention(layers: int, heads: int, seq: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    scores = torch.randn(layers, heads, seq, seq, generator=g) * 2
    scores = scores.masked_fill(torch.ones(seq, seq).triu(1).bool(), float("-inf"))
    return scores.softmax(-1)


SEGMENTS = [
    Segment(0, 2, 1, "Agent", "marker"),
    Segment(2, 5, 1, "Agent", "text"),
    Segment(5, 6, 2, "User", "marker"),
    Segment(6, 8, 2, "User", "text"),
    Segment(8, 10, 3, "Agent", "cue"),
]


def test_shares_match_an_explicit_loop():
    att = causal_attention(3, 2, 14)
    prompt_len, turn = 10, 2
    got = attention_metrics(att, prompt_len, SEGMENTS, turn)
    owner = {}
    for s in SEGMENTS:
        for k in range(s.start, s.end):
            owner[k] = s
    sets = {
        "attn_prompt_share": lambda k: k < prompt_len,
        "attn_generated_share": lambda k: k >= prompt_len,
        "attn_first_share": lambda k: k == 0,
        "attn_last_user_turn": lambda k: k in owner and owner[k].turn == turn and owner[k].role != "cue",
        "attn_earlier_turns": lambda k: k in owner and (t := owner[k].turn) is not None and t < turn,
        "attn_reply_cue": lambda k: k in owner and owner[k].role == "cue",
        "attn_speaker_user": lambda k: k in owner and owner[k].speaker == "User",
        "attn_speaker_agent": lambda k: k in owner and owner[k].speaker == "Agent",
    }
    for name, member in sets.items():
        values = []
        ents = []
        for layer in range(3):
            for head in range(2):
                for q in range(prompt_len, 14):
                    row = att[layer, head, q].tolist()
                    values.append(sum(row[k] for k in range(14) if member(k)))
                    ents.append(-sum(p * math.log(p) for p in row if p > 0))
        assert got[name] == pytest.approx(sum(values) / len(values), abs=1e-6), name
    assert got["attn_entropy_mean"] == pytest.approx(sum(ents) / len(ents), abs=1e-5)
    for layer in range(3):
        rows = att[layer, :, prompt_len:]
        ref = -(rows * rows.log()).nan_to_num().sum(-1).mean()
        assert got[f"attn_entropy_L{layer}"] == pytest.approx(float(ref), abs=1e-5)
    assert got["attn_prompt_share"] + got["attn_generated_share"] == pytest.approx(1, abs=1e-6)
    assert got["attn_speaker_user"] + got["attn_speaker_agent"] == pytest.approx(got["attn_prompt_share"], abs=1e-6)


def test_without_segments_turn_shares_are_nan_and_heads_mean_keeps_shares():
    att = causal_attention(2, 4, 12, seed=1)
    got = attention_metrics(att, 7)
    assert not math.isnan(got["attn_prompt_share"]) and math.isnan(got["attn_last_user_turn"])
    assert math.isnan(got["attn_speaker_user"])
    # shares are linear: the head-mean kept by --attention summary gives the same shares
    full = attention_metrics(att, 10, SEGMENTS, 2)
    mean = attention_metrics(att.mean(1, keepdim=True), 10, SEGMENTS, 2)
    for name in SHARE_COLUMNS:
        assert mean[name] == pytest.approx(full[name], abs=1e-6)
    with pytest.raises(ValueError, match="prompt_len"):
        attention_metrics(att, 0)


def test_turn_metrics_of_a_real_capture(byte_tiny):
    tiny = byte_tiny  # a real engine capture; which tokenizer split the prompt does not matter here
    dialog = ["Hello , is the bank open today ?", "Yes , until five .", "Great , thanks !"]
    prompt = build_prompt(dialog, 2, tiny.tokenizer, context_turns=3)
    cap = tiny.generate(prompt.text, max_new_tokens=6, sources=prompt.source())
    m = turn_metrics(cap)  # segments and turn read from capture.meta.source
    assert m["prompt_tokens"] == len(prompt) and m["generated_tokens"] == cap.num_steps == 6
    assert m["attn_prompt_share"] + m["attn_generated_share"] == pytest.approx(1, abs=1e-3)
    parts = m["attn_last_user_turn"] + m["attn_earlier_turns"] + m["attn_reply_cue"]
    assert parts == pytest.approx(m["attn_prompt_share"], abs=1e-4)
    assert m["attn_speaker_user"] + m["attn_speaker_agent"] == pytest.approx(m["attn_prompt_share"], abs=1e-4)
    assert m["attn_earlier_turns"] > 0 and 0 < m["attn_first_share"] < 1
    assert set(m) >= {"attn_entropy_L0", "attn_entropy_L1"} and "attn_entropy_L2" not in m
    # chosen-token probability against a teacher-forced forward pass over the final sequence
    with torch.no_grad():
        logits = tiny.model(cap.token_ids[None]).logits[0].float()
    probs = logits.log_softmax(-1).exp()
    p = cap.prompt_len
    ref = torch.stack([probs[p - 1 + i, cap.token_ids[p + i]] for i in range(cap.num_steps)]).mean()
    assert m["chosen_prob_mean"] == pytest.approx(float(ref), rel=1e-3)
    ent = -(probs * probs.clamp_min(1e-30).log()).sum(-1)[p - 1 : -1]
    assert m["entropy_mean"] == pytest.approx(float(ent.mean()), rel=1e-3)
    assert m["entropy_max"] == pytest.approx(float(ent.max()), rel=1e-3)

    bare = tiny.generate(prompt.text, max_new_tokens=3, keep_attention=False)
    m2 = turn_metrics(bare, num_layers=2)
    assert all(math.isnan(m2[c]) for c in (*SHARE_COLUMNS, "attn_entropy_mean", "attn_entropy_L1"))
    assert not math.isnan(m2["entropy_mean"])
