"""Curriculum order: sorted easy to hard, complete, equal-count bins, documented ties and NaN, atomic CSV."""

from __future__ import annotations

import math

import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from inspector.research.curriculum import order_turns, write_order_csv


def summary(values, emotions=None) -> pd.DataFrame:
    n = len(values)
    return pd.DataFrame({
        "dial_id": [i // 3 for i in range(n)],
        "turn": [i % 3 for i in range(n)],
        "split": ["validation"] * n,
        "emotion": emotions or ["no_emotion"] * n,
        "generated_text": ["x"] * n,
        "ref_ppl": [float(v) for v in values],
        "chosen_prob_mean": [0.5] * n,
    }).sample(frac=1.0, random_state=0)  # rows in no particular order


def keys(df: pd.DataFrame) -> list[tuple[int, int]]:
    return list(zip(df["dial_id"], df["turn"], strict=True))


def test_sorted_complete_with_ties_and_nan_last():
    values = [5.0, 1.0, 3.0, float("nan"), 3.0, 2.0, 9.0, float("nan"), 1.0, 4.0, 7.0]
    s = summary(values)
    order = order_turns(s, by="ref_ppl", bins=3)
    assert list(order.columns[:6]) == ["rank", "split", "dial_id", "turn", "ref_ppl", "bin"]
    assert "emotion" in order.columns and "generated_text" not in order.columns
    assert order["rank"].tolist() == list(range(1, 12))
    assert sorted(keys(order)) == sorted(keys(s))  # complete, no duplicates
    ranked = order[order["ref_ppl"].notna()]
    assert ranked["ref_ppl"].tolist() == sorted(v for v in values if not math.isnan(v))
    # ties in key order: the two 1.0 are (0, 1) and (2, 2); the two 3.0 are (0, 2) and (1, 1)
    assert keys(ranked)[:2] == [(0, 1), (2, 2)] and keys(ranked)[3:5] == [(0, 2), (1, 1)]
    assert ranked["bin"].tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    tail = order.iloc[9:]
    assert tail["ref_ppl"].isna().all() and tail["bin"].isna().all() and keys(tail) == [(1, 0), (2, 1)]
    dropped = order_turns(s, by="ref_ppl", bins=3, nan="drop")
    assert len(dropped) == 9 and dropped["bin"].notna().all()


def test_bin_sizes_follow_array_split():
    order = order_turns(summary([0.0] * 6), bins=4)  # ties everywhere: key order, bins by position
    assert order["bin"].tolist() == [0, 0, 1, 1, 2, 3]
    assert keys(order) == sorted(keys(order))


def test_descending_orders_high_first():
    order = order_turns(summary([0.2, 0.9, 0.5]).drop(columns="ref_ppl").assign(chosen_prob_mean=[0.2, 0.9, 0.5]),
                        by="chosen_prob_mean", bins=1, descending=True)
    assert order["chosen_prob_mean"].tolist() == [0.9, 0.5, 0.2] and order["bin"].tolist() == [0, 0, 0]


@settings(max_examples=150, deadline=None)
@given(values=st.lists(st.one_of(st.floats(0, 100), st.just(float("nan"))), min_size=1, max_size=40),
       bins=st.integers(1, 8))
def test_order_properties(values, bins):
    known = [v for v in values if not math.isnan(v)]
    s = summary(values)
    if len(known) < bins:
        with pytest.raises(ValueError, match="lower bins"):
            order_turns(s, bins=bins)
        return
    order = order_turns(s, bins=bins)
    assert sorted(keys(order)) == sorted(keys(s))
    ranked = order.iloc[: len(known)]
    assert ranked["ref_ppl"].is_monotonic_increasing
    sizes = ranked["bin"].value_counts().sort_index()
    assert sizes.index.tolist() == list(range(bins))
    n, b = len(known), bins
    assert sizes.tolist() == [n // b + 1] * (n % b) + [n // b] * (b - n % b)  # equal-count, larger first
    assert ranked["bin"].is_monotonic_increasing


def test_bad_input_is_refused():
    s = summary([1.0, 2.0, 3.0])
    with pytest.raises(ValueError, match="no column"):
        order_turns(s, by="nope")
    with pytest.raises(ValueError, match="numeric column"):
        order_turns(s, by="emotion")
    with pytest.raises(ValueError, match="bins must be"):
        order_turns(s, bins=0)
    with pytest.raises(ValueError, match="nan must be"):
        order_turns(s, bins=1, nan="first")
    with pytest.raises(ValueError, match="duplicated turns"):
        order_turns(pd.concat([s, s.iloc[:1]]), bins=1)


def test_write_order_csv_round_trips_and_leaves_no_temporary(tmp_path):
    order = order_turns(summary([3.0, 1.0, float("nan"), 2.0]), bins=2)
    path = write_order_csv(order, tmp_path / "order.csv")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["order.csv"]
    back = pd.read_csv(path, keep_default_na=True).astype({"bin": "Int64"})
    pd.testing.assert_frame_equal(back, order, check_dtype=False)
    with pytest.raises(ValueError, match="not an order table"):
        write_order_csv(order.drop(columns="bin"), tmp_path / "bad.csv")
    with pytest.raises(OSError, match="does not exist"):
        write_order_csv(order, tmp_path / "missing" / "order.csv")
