"""``inspector._report.step_rows``: the per-step candidate table the dashboard shows, checked against a fresh
teacher-forced forward pass over the captured tokens (not against the capture's own records)."""

from __future__ import annotations

import re
from typing import Any, cast

import pytest
import torch


@pytest.fixture(scope="module")
def capture_and_reference(byte_tiny):
    cap = byte_tiny.generate("User: hello there\nAgent:", max_new_tokens=8, top_k_logits=6)
    assert cap.num_steps == 8
    with torch.no_grad():
        logits = byte_tiny.model(cap.token_ids[None].to(byte_tiny.model.device)).logits[0].double().cpu()
    # The distribution over the token at position p is predicted at position p - 1.
    logp = torch.log_softmax(logits[cap.prompt_len - 1 : cap.seq_len - 1], dim=-1)
    return cap, logp


def test_step_rows_match_a_teacher_forced_pass(capture_and_reference):
    from inspector._report import step_rows

    cap, logp = capture_and_reference
    k = 4
    table = step_rows(cap, k)
    assert list(table.columns) == ["step", "chosen", "prob", "rank", "entropy", "#1", "#2", "#3", "#4"]
    assert list(table["step"]) == list(range(cap.num_steps))
    for i, row in table.iterrows():
        pos = cap.prompt_len + int(i)
        chosen = int(cap.token_ids[pos])
        lp = logp[int(i)]
        assert row["chosen"] == repr(cap.tokens[pos])[1:-1]
        assert row["prob"] == pytest.approx(float(lp[chosen].exp()), abs=6e-5)  # 4 decimals
        assert row["rank"] == int((lp > lp[chosen]).sum()) + 1
        assert row["entropy"] == pytest.approx(float(-(lp.exp() * lp).sum()), abs=6e-4)  # 3 decimals
        top_lp, top_ids = lp.topk(k)
        for j in range(k):
            cell = re.fullmatch(r"(.*) ([0-9.]+)%", row[f"#{j + 1}"])
            assert cell is not None, row[f"#{j + 1}"]
            text, pct = cell.groups()
            assert text == repr(cap.label(int(top_ids[j])))[1:-1]
            assert float(pct) == pytest.approx(100 * float(top_lp[j].exp()), abs=0.051)


def test_step_rows_show_at_most_the_kept_candidates_and_refuse_a_bad_k(capture_and_reference):
    from inspector._report import step_rows

    cap, _ = capture_and_reference
    wide = step_rows(cap, 50)
    assert [c for c in wide.columns if c.startswith("#")] == [f"#{j}" for j in range(1, cap.raw.k + 1)]
    for bad in (0, -1, 2.5, True, "3"):
        with pytest.raises(ValueError, match="k must be a positive integer"):
            step_rows(cap, cast(Any, bad))  # deliberately not a positive int
