"""Paired comparison of two run summaries: known answers, missing turns named, bootstrap intervals."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from inspector.research.compare_runs import ALL_GROUP, GROUP_COLUMNS, MISSING_GROUP, compare_runs

EMOTIONS = ["happiness", "no_emotion", "happiness", "sadness", None, "no_emotion"]


def run_a() -> pd.DataFrame:
    return pd.DataFrame({
        "dial_id": [0, 0, 0, 1, 1, 1],
        "turn": [0, 1, 2, 0, 1, 2],
        "split": ["validation"] * 6,
        "emotion": EMOTIONS,
        "generated_text": list("abcdef"),
        "entropy_mean": [0.25, 1.5, 2.0, 3.75, 0.5, 1.25],
        "generated_tokens": [10, 12, 9, 40, 3, 7],
        "attn_prompt_share": [0.5, np.nan, 0.25, 0.75, 0.5, 0.5],
        "batch": [0, 0, 1, 1, 2, 2],
    })


def test_b_equals_a_plus_one_gives_exactly_one():
    a = run_a()
    b = a.assign(entropy_mean=a["entropy_mean"] + 1, generated_text=list("uvwxyz")).sample(frac=1, random_state=1)
    res = compare_runs(a, b, by="emotion", n_resamples=500)
    assert set(res.columns) == {"entropy_mean", "generated_tokens", "attn_prompt_share"}  # batch, text excluded
    assert res.paired["entropy_mean"].tolist() == [1.0] * 6
    assert res.paired["generated_tokens"].tolist() == [0.0] * 6
    assert len(res.only_a) == 0 and len(res.only_b) == 0
    frame = res.to_frame()
    assert list(frame.columns) == list(GROUP_COLUMNS)
    row = frame[(frame["group"] == ALL_GROUP) & (frame["column"] == "entropy_mean")].iloc[0]
    assert row["n"] == 6 and row["mean_diff"] == 1.0 and row["ci_low"] == 1.0 and row["ci_high"] == 1.0
    assert row["mean_a"] == pytest.approx(np.mean(a["entropy_mean"]))
    assert row["mean_b"] == pytest.approx(row["mean_a"] + 1)
    groups = frame[frame["column"] == "entropy_mean"].set_index("group")["n"].to_dict()
    assert groups == {ALL_GROUP: 6, "happiness": 2, "no_emotion": 2, "sadness": 1, MISSING_GROUP: 1}
    # NaN in one run: that turn is not a pair for that column
    share = frame[(frame["group"] == ALL_GROUP) & (frame["column"] == "attn_prompt_share")].iloc[0]
    assert share["n"] == 5 and share["mean_diff"] == 0.0


def test_group_means_by_hand():
    a = run_a()
    diffs = [0.5, -1.0, 1.5, 2.0, 0.0, 3.0]
    b = a.assign(entropy_mean=a["entropy_mean"] + diffs)
    frame = compare_runs(a, b, by="emotion", columns=["entropy_mean"], n_resamples=200).to_frame().set_index("group")
    assert frame.loc["happiness", "mean_diff"] == pytest.approx((0.5 + 1.5) / 2)
    assert frame.loc["no_emotion", "mean_diff"] == pytest.approx((-1.0 + 3.0) / 2)
    assert frame.loc["sadness", "mean_diff"] == 2.0 and frame.loc["sadness", "ci_low"] == 2.0  # one pair
    assert frame.loc[ALL_GROUP, "mean_diff"] == pytest.approx(sum(diffs) / 6)
    lo, hi = frame.loc["happiness", ["ci_low", "ci_high"]]
    assert 0.5 <= lo <= hi <= 1.5  # a bootstrap mean never leaves the sample's range


def test_turns_in_one_run_only_are_counted_and_named():
    a = run_a()
    extra = a.iloc[:1].assign(dial_id=7, turn=4)
    b = pd.concat([a.drop(index=[2, 4]), extra], ignore_index=True)
    res = compare_runs(a, b, n_resamples=100)
    assert len(res.paired) == 4
    assert res.only_a[["dial_id", "turn"]].values.tolist() == [[0, 2], [1, 1]]
    assert res.only_b[["dial_id", "turn"]].values.tolist() == [[7, 4]]
    text = res.describe()
    assert "4 turns in both runs" in text
    assert "2 turns only in run A (not compared): validation/0/2, validation/1/1" in text
    assert "1 turns only in run B (not compared): validation/7/4" in text
    # another split: no turn is shared, and nothing is silently dropped
    other = compare_runs(a, a.assign(split="test"), n_resamples=10)
    assert len(other.paired) == 0 and len(other.only_a) == 6 and len(other.only_b) == 6


def test_bootstrap_interval_matches_the_normal_approximation_and_is_seeded():
    rng = np.random.default_rng(123)
    n = 400
    a = pd.DataFrame({"dial_id": range(n), "turn": 0, "x": rng.normal(0, 1, n)})
    b = a.assign(x=a["x"] + rng.normal(0.3, 1.0, n))
    res = compare_runs(a, b, n_resamples=4000, seed=5)
    row = res.to_frame().iloc[0]
    d = (b["x"] - a["x"]).to_numpy()
    half = 1.959964 * d.std(ddof=1) / math.sqrt(n)
    assert row["mean_diff"] == pytest.approx(d.mean())
    assert row["ci_low"] == pytest.approx(d.mean() - half, abs=0.12 * half)
    assert row["ci_high"] == pytest.approx(d.mean() + half, abs=0.12 * half)
    again = compare_runs(a, b, n_resamples=4000, seed=5).to_frame().iloc[0]
    assert (again["ci_low"], again["ci_high"]) == (row["ci_low"], row["ci_high"])
    other = compare_runs(a, b, n_resamples=4000, seed=6).to_frame().iloc[0]
    assert (other["ci_low"], other["ci_high"]) != (row["ci_low"], row["ci_high"])
    narrow = compare_runs(a, b, n_resamples=4000, seed=5, confidence=0.5).to_frame().iloc[0]
    assert row["ci_low"] < narrow["ci_low"] < narrow["ci_high"] < row["ci_high"]


def test_bad_input_is_refused():
    a = run_a()
    with pytest.raises(ValueError, match="duplicated turns"):
        compare_runs(a, pd.concat([a, a.iloc[:1]]))
    with pytest.raises(ValueError, match="no column"):
        compare_runs(a.drop(columns="turn"), a)
    with pytest.raises(ValueError, match="share no numeric column"):
        compare_runs(a[["dial_id", "turn", "emotion"]], a)
    with pytest.raises(ValueError, match="neither run has the label column"):
        compare_runs(a, a, by="act")
    with pytest.raises(ValueError, match="is numeric"):
        compare_runs(a, a, by="entropy_mean")
    with pytest.raises(ValueError, match="identifies turns"):
        compare_runs(a, a, by="dial_id")
    with pytest.raises(ValueError, match="not numeric columns of both"):
        compare_runs(a, a, columns=["emotion"])
    with pytest.raises(ValueError, match="confidence"):
        compare_runs(a, a, confidence=1.0)
    with pytest.raises(ValueError, match="n_resamples"):
        compare_runs(a, a, n_resamples=0)
    with pytest.raises(ValueError, match="disagree on 'emotion' for 1 turns"):
        compare_runs(a, a.assign(emotion=["anger", *EMOTIONS[1:]]), by="emotion")
    with pytest.raises(ValueError, match="run summary"):
        compare_runs(a, [1, 2])  # type: ignore[arg-type]
