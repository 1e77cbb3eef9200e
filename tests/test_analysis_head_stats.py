"""Head statistics on synthetic attention whose answers are known by construction, and their aggregation."""

from __future__ import annotations

import math

import pytest
import torch

from inspector._records.capture import Capture, TokenScores
from inspector.analysis.head_stats import HeadStats, aggregate_head_stats, attention_head_stats, query_rows

SEQ, PROMPT = 8, 5


def _previous() -> torch.Tensor:
    a = torch.zeros(SEQ, SEQ)
    a[0, 0] = 1.0
    a[torch.arange(1, SEQ), torch.arange(0, SEQ - 1)] = 1.0
    return a


def _uniform() -> torch.Tensor:
    return torch.tril(torch.ones(SEQ, SEQ)) / torch.arange(1, SEQ + 1)[:, None]


def _sink() -> torch.Tensor:
    a = torch.zeros(SEQ, SEQ)
    a[:, 0] = 1.0
    return a


def _heads() -> torch.Tensor:
    """[1 layer, 4 heads, SEQ, SEQ]: previous-token, uniform, sink, self."""
    return torch.stack([_previous(), _uniform(), _sink(), torch.eye(SEQ)])[None]


def test_known_heads_all_rows():
    s = attention_head_stats(_heads(), PROMPT)
    rows = torch.arange(1, SEQ).float()  # row 0 is never used
    assert s.num_rows == SEQ - 1 and s.rows == "all"
    prev, uni, sink, self_ = 0, 1, 2, 3
    assert s.previous[0, prev] == 1 and s.distance[0, prev] == 1 and s.entropy[0, prev] == 0
    assert s.self_score[0, prev] == 0 and s.previous[0, self_] == 0
    torch.testing.assert_close(s.entropy[0, uni], torch.log(rows + 1).mean())  # ln of each row's length
    assert all(s.entropy[0, h] < s.entropy[0, uni] for h in (prev, sink, self_))
    torch.testing.assert_close(s.distance[0, uni], (rows / 2).mean())
    assert s.sink[0, sink] == 1 and s.prompt_share[0, sink] == 1 and s.generated_share[0, sink] == 0
    torch.testing.assert_close(s.distance[0, sink], rows.mean())
    assert s.self_score[0, self_] == 1 and s.distance[0, self_] == 0 and s.entropy[0, self_] == 0
    # Self head: rows 1..4 look at prompt keys, rows 5..7 at generated keys.
    torch.testing.assert_close(s.prompt_share[0, self_], torch.tensor(4 / 7))
    torch.testing.assert_close(s.prompt_share + s.generated_share, torch.ones(1, 4))
    # The sink on a previous-token head is only row 1's share.
    torch.testing.assert_close(s.sink[0, prev], torch.tensor(1 / 7))


def test_row_choices():
    gen = attention_head_stats(_heads(), PROMPT, rows="generated")
    assert gen.num_rows == SEQ - PROMPT and query_rows(SEQ, PROMPT, "generated").tolist() == [5, 6, 7]
    assert gen.sink[0, 1] == pytest.approx((1 / 6 + 1 / 7 + 1 / 8) / 3)
    assert gen.generated_share[0, 3] == 1
    prompt = attention_head_stats(_heads(), PROMPT, rows="prompt")
    assert prompt.num_rows == PROMPT - 1 and torch.all(prompt.generated_share == 0)
    torch.testing.assert_close(prompt.entropy[0, 1], torch.tensor([math.log(n) for n in (2, 3, 4, 5)]).mean())
    with pytest.raises(ValueError, match="no 'generated' query rows"):
        attention_head_stats(_heads(), SEQ, rows="generated")
    with pytest.raises(ValueError, match="rows must be one of"):
        attention_head_stats(_heads(), PROMPT, rows="last")


def test_frame_and_storage():
    s = attention_head_stats(torch.cat([_heads(), _heads().flip(1)]), PROMPT)  # 2 layers
    frame = s.to_frame()
    assert len(frame) == 8 and list(frame.columns[:2]) == ["layer", "head"]
    row = frame[(frame["layer"] == 1) & (frame["head"] == 3)].iloc[0]
    assert row["previous"] == 1 and row["rows"] == SEQ - 1
    again = HeadStats.from_tensors(s.tensors("hs"), "hs", rows=s.rows, num_rows=s.num_rows)
    assert torch.equal(again.self_score, s.self_score)


def test_aggregate_by_label_with_counts():
    a = attention_head_stats(_heads(), PROMPT)  # previous head scores 1
    other = _heads().clone()
    other[0, 0] = _sink()
    b = attention_head_stats(other, PROMPT)  # head 0 is a sink head here: previous 1/7
    c = attention_head_stats(_heads(), PROMPT)
    labels = [{"act": "question", "emotion": "none"}, {"act": "question", "emotion": "joy"},
              {"act": "inform", "emotion": "none"}]
    out = aggregate_head_stats([a, b, c], labels, by="act")
    q0 = out[(out["act"] == "question") & (out["head"] == 0)].iloc[0]
    assert q0["turns"] == 2 and q0["rows"] == 2 * (SEQ - 1)
    assert q0["previous"] == pytest.approx((1 + 1 / 7) / 2)
    i0 = out[(out["act"] == "inform") & (out["head"] == 0)].iloc[0]
    assert i0["turns"] == 1 and i0["previous"] == 1
    both = aggregate_head_stats([a, b, c], labels, by=["act", "emotion"])
    assert len(both) == 3 * 4 and set(both.turns) == {1}
    total = aggregate_head_stats([a, b, c])
    assert len(total) == 4 and set(total.turns) == {3}


def test_aggregate_errors():
    a = attention_head_stats(_heads(), PROMPT)
    with pytest.raises(ValueError, match="aggregate like with like"):
        aggregate_head_stats([a, attention_head_stats(_heads(), PROMPT, rows="generated")])
    with pytest.raises(ValueError, match="no label 'act'"):
        aggregate_head_stats([a], [{"emotion": "joy"}], by="act")
    with pytest.raises(ValueError, match="needs labels"):
        aggregate_head_stats([a], by="act")


def test_capture_head_stats_uses_prompt_len():
    from inspector.analysis.head_stats import capture_head_stats

    steps = SEQ - PROMPT
    scores = TokenScores(torch.zeros(steps), torch.zeros(steps), torch.ones(steps, dtype=torch.int64),
                         torch.zeros(steps, 1, dtype=torch.int64), torch.zeros(steps, 1))
    cap = Capture(token_ids=torch.arange(SEQ), tokens=[str(i) for i in range(SEQ)], prompt_len=PROMPT,
                  prompt_text="", generated_text="", stop_reason="length", raw=scores, processed=scores,
                  attentions=_heads())
    s = capture_head_stats(cap, rows="generated")
    assert s.num_rows == steps and s.generated_share[0, 3] == 1
