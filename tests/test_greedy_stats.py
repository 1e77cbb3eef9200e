"""Greedy steps' statistics reduced a few steps at a time (``capture/greedy_stats.py``) against float64
references, and inside ``generate`` against a teacher-forced pass."""

from __future__ import annotations

import math

import pytest
import torch

from inspector._capture import greedy_stats
from inspector._capture.greedy_stats import MAX_GROUP_ROWS, MAX_GROUP_SHARE, GreedyStats, group_steps
from inspector._capture.steps import StepLog


def test_group_size_rule():
    step = 50257 * 4  # one row's float32 logits
    assert group_steps(1, 50257, 100 * step) == MAX_GROUP_ROWS  # few rows, much kept: the most rows
    assert group_steps(1, 50257, 24 * step) == int(MAX_GROUP_SHARE * 24)  # within its share of what is kept
    assert group_steps(3, 50257, 100 * step) == MAX_GROUP_ROWS // 3
    assert group_steps(16, 50257, 10**12) == 1  # many rows: every step as it comes
    assert group_steps(1, 50257, step) == 1  # a capture that keeps little holds no block


@pytest.mark.parametrize("group", [1, 3])
def test_every_step_against_float64(group):
    """7 steps of 2 rows: held in blocks of 3 (flushed at the end with one step left) or one by one."""
    g = torch.Generator().manual_seed(0)
    steps = [torch.randn(2, 50257, generator=g) * 4 + 10 for _ in range(7)]
    steps[4][1, 123] = float("nan")  # a broken step, flagged as not finite
    log = StepLog()
    stats = GreedyStats(log, rows=2, k=5, group=group)
    for raw in steps:
        stats.add(raw)
    assert len(log.raw_entropy) == 7 - 7 % group if group > 1 else 7  # the last partial block is still held
    stats.flush()
    for name in ("finite", "raw_entropy", "proc_entropy", "raw_topv", "raw_topi", "proc_topi", "raw_chosen_lp",
                 "proc_chosen_lp", "raw_chosen_rank", "proc_chosen_rank"):
        assert len(getattr(log, name)) == 7, name
    for i, raw in enumerate(steps):
        ref = torch.log_softmax(raw.double(), -1)
        ent = -(ref.exp() * ref).sum(-1)
        top = ref.topk(5, -1)
        for r in range(2):
            if i == 4 and r == 1:
                assert not bool(log.finite[i][r]) and math.isnan(float(log.raw_entropy[i][r]))
                continue
            assert bool(log.finite[i][r])
            assert math.isclose(float(log.raw_entropy[i][r]), float(ent[r]), abs_tol=3e-5)
            assert log.raw_topi[i][r].tolist() == top.indices[r].tolist()
            assert torch.allclose(log.raw_topv[i][r].double(), top.values[r], atol=1e-5)
            # greedy picks the best token: its log-probability is the best one, its rank 1
            assert math.isclose(float(log.raw_chosen_lp[i][r]), float(top.values[r, 0]), abs_tol=1e-5)
            assert int(log.raw_chosen_rank[i][r]) == 1
        assert log.proc_entropy[i] is log.raw_entropy[i] and log.proc_topi[i] is log.raw_topi[i]


@pytest.mark.slow
def test_generate_reduces_blocks_of_steps_and_stays_exact(gpt2_random, monkeypatch):
    """Batch 1, 13 steps: statistics come in blocks (not one reduction per step) and still equal a
    teacher-forced pass's, the last partial block included. (A long prompt and the kept logits make the
    capture large enough for blocks of 2 steps.)"""
    calls: list[int] = []
    record = greedy_stats.GreedyStats._record

    def spy(self, x, steps):
        calls.append(steps)
        return record(self, x, steps)

    monkeypatch.setattr(greedy_stats.GreedyStats, "_record", spy)
    prompt = "User: hey how are you? I was hoping we could talk about the trip next week, the hotel and the" \
             " train tickets, and whether your sister is coming along with us after all.\nAgent:"
    cap = gpt2_random.generate(prompt, max_new_tokens=13, keep_logits=True)
    assert cap.prompt_len > 30
    assert calls == [2] * 6 + [1]
    ids = cap.token_ids[None]
    with torch.no_grad():
        logits = gpt2_random.model(input_ids=ids).logits[0, cap.prompt_len - 1 : -1].double()
    logp = torch.log_softmax(logits, -1)
    assert torch.equal(cap.generated_ids, logits.argmax(-1))
    assert cap.logits is not None and torch.allclose(cap.logits.double(), logits, atol=1e-4)
    assert torch.allclose(cap.raw.entropy.double(), -(logp.exp() * logp).sum(-1), atol=1e-4)
    assert torch.allclose(cap.raw.chosen_logprob.double(), logp.max(-1).values, atol=1e-4)
    assert torch.equal(cap.raw.topk_ids, logp.topk(cap.raw.k, -1).indices)
    assert bool((cap.raw.chosen_rank == 1).all()) and torch.equal(cap.processed.entropy, cap.raw.entropy)


def test_a_batch_that_stops_early_keeps_every_step(byte_tiny):
    """Rows stopping at EOS in different steps: each row's statistics match its own greedy run."""
    alone = [byte_tiny.generate(p, max_new_tokens=9) for p in ("Hi", "User: what time is it?\nAgent:")]
    together = byte_tiny.generate(["Hi", "User: what time is it?\nAgent:"], max_new_tokens=9)
    assert isinstance(together, list)
    for a, b in zip(alone, together, strict=True):
        assert torch.equal(a.generated_ids, b.generated_ids)
        assert torch.allclose(a.raw.entropy, b.raw.entropy, atol=1e-5)
        assert torch.equal(a.raw.topk_ids, b.raw.topk_ids)


@pytest.mark.slow
def test_no_block_when_hidden_states_are_recorded(gpt2_random, monkeypatch):
    """Recording hidden states already holds the prefill's float32 states of every layer: no block on top."""
    calls: list[int] = []
    record = greedy_stats.GreedyStats._record

    def counting(self, x, steps):
        calls.append(steps)
        return record(self, x, steps)

    monkeypatch.setattr(greedy_stats.GreedyStats, "_record", counting)
    prompt = "User: hey how are you? I was hoping we could talk about the trip next week, the hotel and the" \
             " train tickets, and whether your sister is coming along with us after all.\nAgent:"
    gpt2_random.generate(prompt, max_new_tokens=13, keep_logits=True)
    assert max(calls) > 1  # the same capture without hidden states holds blocks
    calls.clear()
    cap = gpt2_random.generate(prompt, max_new_tokens=13, keep_logits=True, keep_hidden_states=True)
    assert calls == [1] * 13 and cap.hidden_states is not None
