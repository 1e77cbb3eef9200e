"""Research figures (run comparison, difficulty bins) and the Corpus view's research panels (AppTest)."""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import pytest
from dashboard_helpers import new_app, ok, set_server_address, texts
from run_helpers import write_dailydialog

from inspector.plots.interactive.research import comparison_figure, difficulty_bins_figure
from inspector.research.compare_runs import compare_runs
from inspector.research.curriculum import order_turns


def summaries() -> tuple[pd.DataFrame, pd.DataFrame]:
    a = pd.DataFrame({"dial_id": [0, 0, 1, 1, 2], "turn": [0, 1, 0, 1, 0],
                      "emotion": ["happiness", "no emotion", "happiness", "sadness", "no emotion"],
                      "ref_ppl": [3.0, 5.0, 1.0, 9.0, 7.0]})
    b = a.iloc[:4].assign(ref_ppl=[4.0, 5.5, 2.0, 8.0])
    return a, b


def test_comparison_figure_bars_are_the_hand_computed_mean_differences():
    a, b = summaries()
    result = compare_runs(a, b, by="emotion", n_resamples=200)
    fig = comparison_figure(result, "ref_ppl")
    bars = dict(zip(fig.data[0].x, fig.data[0].y, strict=True))
    assert bars["(all)"] == pytest.approx(np.mean([1.0, 0.5, 1.0, -1.0]))
    assert bars["happiness"] == pytest.approx(1.0) and bars["sadness"] == pytest.approx(-1.0)
    assert fig.layout.meta["kind"] == "comparison"
    with pytest.raises(ValueError, match="was not compared"):
        comparison_figure(result, "entropy_mean")


def test_difficulty_bins_figure_counts_turns_per_bin_and_label():
    a, _ = summaries()
    order = order_turns(a, by="ref_ppl", bins=2, carry=("emotion",))
    fig = difficulty_bins_figure(order, "emotion")
    counts = {t.name: dict(zip(t.x, t.y, strict=True)) for t in fig.data}
    # ref_ppl sorted: 1 (happiness), 3 (happiness), 5 (no emotion) | 7 (no emotion), 9 (sadness)
    assert counts["happiness"] == {"0": 2, "1": 0}
    assert counts["no emotion"] == {"0": 1, "1": 1}
    assert counts["sadness"] == {"0": 0, "1": 1}


@pytest.fixture(autouse=True)
def _bound_locally():
    before = set_server_address("127.0.0.1")
    yield
    set_server_address(before)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    from inspector._capture.settings import GenerationSettings
    from inspector._fallback import builtin_model
    from inspector.runs import RunConfig, run_corpus

    data = write_dailydialog(tmp_path_factory.mktemp("dd"))
    root = tmp_path_factory.mktemp("dash_research")
    im = builtin_model()
    common: dict[str, Any] = dict(data=str(data), limit=8, batch_size=8, settings=GenerationSettings(max_new_tokens=4))
    a = run_corpus(RunConfig(score_reference=True, **common), root / "a", im, progress=False, log=lambda _m: None)
    b = run_corpus(RunConfig(condition="emotion", **common), root / "b", im, progress=False, log=lambda _m: None)
    return a, b


def test_corpus_view_orders_by_difficulty_and_compares_two_runs(runs, monkeypatch):
    from dashboard import state

    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "builtin")
    for name in ("INSPECTOR_DASHBOARD_RUN", "INSPECTOR_DASHBOARD_CAPTURE", "INSPECTOR_DASHBOARD_REMOTE"):
        monkeypatch.delenv(name, raising=False)
    state.clear_caches()
    a, b = runs
    at = new_app().run()
    at.session_state["view"] = "Corpus"
    at.run()
    at.text_input(key="run_dir").set_value(str(a.path))
    at.button(key="open_run").click().run()
    ok(at)
    assert not at.error, texts(at.error)
    assert "Difficulty" in [s.value for s in at.subheader]
    table = next(d.value for d in at.dataframe if "bin" in d.value.columns)
    expected = order_turns(a.summary, by="ref_ppl", bins=5)
    assert table["ref_ppl"].tolist() == pytest.approx(expected["ref_ppl"].tolist(), nan_ok=True)
    assert table[["dial_id", "turn"]].values.tolist() == expected[["dial_id", "turn"]].values.tolist()
    charts = {c.proto.id for c in at.get("plotly_chart")}
    assert len(charts) >= 3  # corpus figure, bins, difficulty by label
    at.text_input(key="compare_run").set_value(str(b.path)).run()
    ok(at)
    assert not at.error, texts(at.error)
    cmp = next(d.value for d in at.dataframe if "mean_diff" in d.value.columns)
    ref = compare_runs(a.summary, b.summary, n_resamples=1000)
    row = cmp[(cmp["group"] == "(all)") & (cmp["column"] == "entropy_mean")].iloc[0]
    assert row["mean_diff"] == pytest.approx(
        ref.groups.set_index(["group", "column"]).loc[("(all)", "entropy_mean"), "mean_diff"])
    assert "8 turns in both runs" in texts(at.text)
    state.clear_caches()
