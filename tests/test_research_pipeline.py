"""The research functions on real corpus-run summaries: reference-reply difficulty, order, paired comparison."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from inspector._capture.forced import score
from inspector._capture.settings import GenerationSettings
from inspector.research.compare_runs import ALL_GROUP, compare_runs
from inspector.research.curriculum import order_turns
from inspector.research.difficulty import DIFFICULTY_COLUMNS, reply_difficulty
from inspector.runs import RunConfig, run_corpus


def run(dd_dir, out, im, **settings):
    cfg = RunConfig(data=str(dd_dir), limit=6, batch_size=3, attention="none", keep_captures=False,
                    settings=GenerationSettings(max_new_tokens=5, **settings))
    return run_corpus(cfg, out, im, progress=False).summary


@pytest.mark.slow
def test_difficulty_order_and_comparison_on_real_runs(tmp_path, tiny, dd_dir):
    greedy = run(dd_dir, tmp_path / "greedy", tiny)
    sampled = run(dd_dir, tmp_path / "sampled", tiny, do_sample=True, seed=3)
    # the reference reply of each turn that has one, scored after the run's own prompt
    has = greedy[greedy["response"].notna()]
    caps = score(tiny, has["prompt_text"].tolist(), [" " + r.strip() for r in has["response"]])
    assert isinstance(caps, list)
    cols = pd.DataFrame([reply_difficulty(c).columns() for c in caps], index=has.index)
    with_ref = greedy.join(cols)
    assert with_ref.loc[has.index, "ref_tokens"].gt(0).all()
    assert with_ref["ref_ppl"].isna().sum() == len(greedy) - len(has)
    known = with_ref.loc[has.index]
    assert (known["ref_ppl"].apply(math.log) - known["ref_nll_mean"]).abs().max() < 1e-9

    order = order_turns(with_ref, by="ref_ppl", bins=2)
    assert sorted(zip(order["dial_id"], order["turn"], strict=True)) == sorted(
        zip(greedy["dial_id"], greedy["turn"], strict=True))
    assert order["ref_ppl"].dropna().is_monotonic_increasing
    assert set(DIFFICULTY_COLUMNS) <= set(with_ref.columns)

    res = compare_runs(greedy, sampled, by="emotion", n_resamples=200)
    assert len(res.paired) == len(greedy) and len(res.only_a) == len(res.only_b) == 0
    merged = greedy.merge(sampled, on=["dial_id", "turn"], suffixes=("_a", "_b"))
    hand = (merged["entropy_mean_b"] - merged["entropy_mean_a"]).to_numpy()
    assert res.paired["entropy_mean"].to_numpy() == pytest.approx(hand)
    frame = res.to_frame()
    overall = frame[(frame["group"] == ALL_GROUP) & (frame["column"] == "entropy_mean")].iloc[0]
    assert overall["mean_diff"] == pytest.approx(hand.mean())
    assert "seconds" in res.columns and "batch" not in res.columns
