"""Induction and previous-token scores: hand-built attention, a tiny model against a loop, storage, rankings."""

from __future__ import annotations

import math

import pytest
import torch

from inspector.analysis.head_stats import (
    HeadStats,
    aggregate_head_stats,
    attention_head_stats,
    capture_head_stats,
    head_name,
    previous_occurrences,
    rank_heads,
)

# Token 5 repeats at 3 (after 0), token 7 at 4 and 6 (after 1, then after 4).
IDS = torch.tensor([5, 7, 9, 5, 7, 2, 7])
SEQ = len(IDS)
# For each query row with an earlier occurrence: the key after its most recent one.
TARGET = {3: 1, 4: 2, 6: 5}


def _row_stochastic(cells: dict[int, int]) -> torch.Tensor:
    """[SEQ, SEQ]: row i all on key cells[i], rows not listed all on key 0."""
    a = torch.zeros(SEQ, SEQ)
    for i in range(SEQ):
        a[i, cells.get(i, 0)] = 1.0
    return a


def _heads() -> torch.Tensor:
    """[2 layers, 3 heads, SEQ, SEQ].

    L0.H0 induction head (on TARGET, else the first token); L0.H1 uniform; L0.H2 attends after
    the FIRST occurrence of token 7 at row 6 (key 2, not the most recent one's successor 5);
    L1.H0 previous-token; L1.H1 half previous-token, half first token (row 1: both halves on key 0);
    L1.H2 self.
    """
    uniform = torch.tril(torch.ones(SEQ, SEQ)) / torch.arange(1, SEQ + 1)[:, None]
    stale = _row_stochastic({3: 1, 4: 2, 6: 2})
    previous = _row_stochastic({i: i - 1 for i in range(1, SEQ)})
    half = 0.5 * previous + 0.5 * _row_stochastic({})
    layer0 = torch.stack([_row_stochastic(TARGET), uniform, stale])
    layer1 = torch.stack([previous, half, torch.eye(SEQ)])
    return torch.stack([layer0, layer1])


def test_previous_occurrences_by_hand():
    assert previous_occurrences(IDS).tolist() == [-1, -1, -1, 0, 1, -1, 4]
    assert previous_occurrences(torch.tensor([3, 3, 3])).tolist() == [-1, 0, 1]
    with pytest.raises(ValueError, match="integer ids"):
        previous_occurrences(IDS.float())
    with pytest.raises(ValueError, match=r"\[seq\]"):
        previous_occurrences(IDS[None])


def test_induction_and_previous_scores_by_hand():
    s = attention_head_stats(_heads(), prompt_len=5, token_ids=IDS)
    assert s.induction_rows == 3 and s.num_rows == SEQ - 1
    assert s.induction[0, 0] == 1.0
    uniform_rows = [1 / (i + 1) for i in TARGET]  # each qualifying row puts 1/(i+1) on every key
    assert s.induction[0, 1].item() == pytest.approx(sum(uniform_rows) / 3)
    assert s.induction[0, 2].item() == pytest.approx(2 / 3)  # row 6 looks after the stale occurrence
    # Previous-token score: mean of a[i, i-1] over rows 1..6. L0.H0 hits it at row 1 (key 0) and row 6 (key 5).
    assert s.previous[1, 0] == 1.0 and s.previous[0, 0].item() == pytest.approx(2 / 6)
    assert s.previous[1, 1].item() == pytest.approx((1.0 + 5 * 0.5) / 6)
    assert s.previous[0, 1].item() == pytest.approx(sum(1 / (i + 1) for i in range(1, SEQ)) / 6)
    assert s.previous[1, 2] == 0.0


def test_previous_token_head_scores_its_coincidences():
    s = attention_head_stats(_heads(), prompt_len=5, token_ids=IDS)
    # A previous-token head hits the induction target only where j + 1 = i - 1: row 6 (j = 4).
    assert s.induction[1, 0].item() == pytest.approx(1 / 3)
    # The self head: never on j + 1 (no immediate repeat here).
    assert s.induction[1, 2] == 0.0


def test_immediate_repeat_targets_the_row_itself():
    ids = torch.tensor([4, 8, 8])
    eye = torch.eye(3)[None, None]
    s = attention_head_stats(eye, prompt_len=1, token_ids=ids)
    assert s.induction_rows == 1 and s.induction[0, 0] == 1.0


def test_induction_over_row_choices_and_without_rows():
    gen = attention_head_stats(_heads(), prompt_len=5, rows="generated", token_ids=IDS)
    assert gen.induction_rows == 1  # rows 5, 6: only row 6 repeated
    assert gen.induction[0, 2] == 0.0 and gen.induction[0, 0] == 1.0
    prompt = attention_head_stats(_heads(), prompt_len=3, rows="prompt", token_ids=IDS)
    assert prompt.induction_rows == 0 and torch.isnan(prompt.induction).all()  # rows 1, 2 repeat nothing
    without = attention_head_stats(_heads(), prompt_len=5)
    assert without.induction_rows == 0 and torch.isnan(without.induction).all()
    torch.testing.assert_close(without.previous, attention_head_stats(_heads(), 5, token_ids=IDS).previous)
    with pytest.raises(ValueError, match=r"token_ids must be \[seq\] = \(7,\)"):
        attention_head_stats(_heads(), prompt_len=5, token_ids=IDS[:-1])


def test_storage_and_aggregation_keep_the_induction_score():
    a = attention_head_stats(_heads(), prompt_len=5, token_ids=IDS)
    b = attention_head_stats(_heads(), prompt_len=3, rows="all", token_ids=torch.arange(SEQ))  # no repeats
    frame = a.to_frame()
    row = frame[(frame["layer"] == 0) & (frame["head"] == 2)].iloc[0]
    assert row["induction"] == pytest.approx(2 / 3) and row["induction_rows"] == 3
    again = HeadStats.from_tensors(a.tensors("hs"), "hs", a.rows, a.num_rows, a.induction_rows)
    assert torch.equal(again.induction, a.induction) and again.induction_rows == 3
    old = {k: v for k, v in a.tensors("hs").items() if k != "hs.induction"}  # written before the score existed
    loaded = HeadStats.from_tensors(old, "hs", a.rows, a.num_rows)
    assert torch.isnan(loaded.induction).all() and torch.equal(loaded.sink, a.sink)
    with pytest.raises(ValueError, match="lack"):
        HeadStats.from_tensors({k: v for k, v in old.items() if k != "hs.sink"}, "hs", a.rows, a.num_rows)
    # A turn without repeated tokens (NaN) does not drag the group's induction mean down.
    out = aggregate_head_stats([a, b], [{"act": "x"}, {"act": "x"}], by="act")
    r = out[(out["layer"] == 0) & (out["head"] == 2)].iloc[0]
    assert r["induction"] == pytest.approx(2 / 3) and r["induction_rows"] == 3 and r["turns"] == 2
    assert r["previous"] == pytest.approx((a.previous[0, 2] + b.previous[0, 2]).item() / 2)


def test_rank_heads_names_and_order():
    s = attention_head_stats(_heads(), prompt_len=5, token_ids=IDS)
    top = rank_heads(s, "induction", top=3)
    assert list(top["name"]) == ["L0.H0", "L0.H2", "L1.H0"]
    assert list(top["rank"]) == [1, 2, 3] and list(top.columns) == ["rank", "name", "layer", "head", "induction"]
    assert top["induction"].tolist() == pytest.approx([1.0, 2 / 3, 1 / 3])
    prev = rank_heads(s.to_frame(), "previous", top=2)
    assert list(prev["name"]) == ["L1.H0", "L1.H1"]
    assert head_name(3, 5) == "L3.H5"
    assert rank_heads(attention_head_stats(_heads(), 5), "induction").empty  # all NaN: nothing to rank
    with pytest.raises(ValueError, match="unknown statistic"):
        rank_heads(s, "copying")
    with pytest.raises(ValueError, match="top must be at least 1"):
        rank_heads(s, "previous", top=0)
    both = aggregate_head_stats([s, s], [{"act": "a"}, {"act": "b"}], by="act")
    with pytest.raises(ValueError, match="select one group"):
        rank_heads(both, "previous")


def _loop_scores(att: torch.Tensor, ids: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Induction and previous-token scores ``[layer, head]`` of ``att [layer, head, seq, seq]``, by loops."""
    layers, heads, seq, _ = att.shape
    induction, previous = torch.zeros(layers, heads), torch.zeros(layers, heads)
    for lay in range(layers):
        for h in range(heads):
            hits, total_prev = [], 0.0
            for i in range(1, seq):
                total_prev += float(att[lay, h, i, i - 1])
                earlier = [j for j in range(i) if ids[j] == ids[i]]
                if earlier:
                    hits.append(float(att[lay, h, i, max(earlier) + 1]))
            induction[lay, h] = sum(hits) / len(hits) if hits else math.nan
            previous[lay, h] = total_prev / (seq - 1)
    return induction, previous


def test_tiny_model_scores_match_a_loop_over_a_plain_forward_pass(byte_tiny):
    cap = byte_tiny.score("abcab", "cabcaxb", attention_dtype=torch.float32)
    ids = cap.token_ids
    with torch.no_grad():
        out = byte_tiny.model(ids[None], output_attentions=True)
    att = torch.stack([a[0] for a in out.attentions])
    want_ind, want_prev = _loop_scores(att, ids.tolist())
    got = capture_head_stats(cap)
    torch.testing.assert_close(got.induction, want_ind, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(got.previous, want_prev, atol=1e-6, rtol=1e-5)
    repeated = sum(1 for i in range(1, len(ids)) if ids[i] in ids[:i].tolist())
    assert got.induction_rows == repeated > 0


def test_run_files_carry_the_induction_score_and_old_files_still_load(tmp_path, byte_tiny):
    from safetensors.torch import save_file

    from inspector.runs.head_stats import (
        head_stats_path,
        read_batch_head_stats,
        turn_head_stats,
        write_batch_head_stats,
    )

    cap = byte_tiny.score("abcab", "cabcaxb", attention_dtype=torch.float32)
    stats = turn_head_stats(cap)
    assert stats is not None
    (tmp_path / "parts").mkdir()
    path = write_batch_head_stats(tmp_path, 0, [(4, 1)], [stats])
    keys, back = read_batch_head_stats(path)
    assert keys == [(4, 1)] and back[0].induction_rows == stats.induction_rows > 0
    torch.testing.assert_close(back[0].induction, capture_head_stats(cap).induction)
    # A version 1 file: no induction score, no induction_rows.
    names = ("entropy", "distance", "sink", "previous", "self", "prompt_share", "generated_share")
    old = {n: torch.rand(1, 2, 2) for n in names}
    old.update(dial_id=torch.tensor([7]), turn=torch.tensor([2]), num_rows=torch.tensor([11]))
    old_path = head_stats_path(tmp_path, 1)
    save_file(old, str(old_path), metadata={"format": "inspector-headstats", "version": "1", "rows": "all"})
    keys, back = read_batch_head_stats(old_path)
    assert keys == [(7, 2)] and back[0].num_rows == 11 and back[0].induction_rows == 0
    assert torch.isnan(back[0].induction).all() and torch.equal(back[0].self_score, old["self"][0])
