"""The dashboard's Analysis view with AppTest: lens, rollout, head statistics, and compare (generate B again)."""

from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import free_text, new_app, ok, texts, widgets
from plot_helpers import _decode

pytest.importorskip("streamlit.testing.v1")


def _figure(at, index: int) -> dict:
    import json

    return json.loads(at.get("plotly_chart")[index].proto.spec)


def test_analysis_views_and_compare(fresh):
    from inspector.analysis import attention_head_stats, attention_rollout, compare_captures

    state = fresh
    at = new_app().run()
    ok(at)
    free_text(at, "User: hello there\nAgent:")
    at.slider(key="max_new_tokens").set_value(8)
    at.button(key="generate").click().run()
    ok(at)
    assert state.generate_calls() == 1
    cap = at.session_state[state.CAPTURE]
    at.session_state[state.VIEW] = "Analysis"
    at.run()
    ok(at)
    assert not at.error, texts(at.error)
    unkeyed = [type(w).__name__ for w in widgets(at) if not w.key]
    assert not unkeyed, unkeyed
    # Rollout and head statistics are drawn at once; the lens on request.
    assert len(at.get("plotly_chart")) == 2
    roll = np.asarray(_decode(_figure(at, 0)["data"][0]["z"]), dtype=np.float64)
    want = attention_rollout(cap.attentions).numpy()
    lower = np.tril(np.ones_like(want, dtype=bool))
    np.testing.assert_allclose(roll[lower], want[lower], atol=1e-6)
    at.slider(key="an_roll_r").set_value(0.2)
    at.multiselect(key="an_roll_layers").unselect(0).run()
    ok(at)
    roll = np.asarray(_decode(_figure(at, 0)["data"][0]["z"]), dtype=np.float64)
    layers = list(range(1, cap.num_layers))
    want = attention_rollout(cap.attentions, layers=layers, residual_weight=0.2).numpy()
    np.testing.assert_allclose(roll[lower], want[lower], atol=1e-6)
    at.segmented_control(key="an_hs_rows").set_value("generated").run()
    ok(at)
    hs = _figure(at, 1)
    assert [t["name"] for t in hs["data"]] == ["entropy", "distance", "sink", "previous"]
    stats = attention_head_stats(cap.attentions, cap.prompt_len, "generated")
    np.testing.assert_allclose(np.asarray(_decode(hs["data"][3]["z"]), dtype=np.float32), stats.previous.numpy(),
                               atol=1e-6)

    at.toggle(key="an_lens").set_value(True).run()
    ok(at)
    assert "lens" not in texts(at.warning), texts(at.warning)
    assert len(at.get("plotly_chart")) == 3
    lens = _figure(at, 0)
    assert lens["layout"]["meta"]["kind"] == "lens"
    assert lens["data"][0]["y"][-1].endswith("(output)")

    at.selectbox(key="an_cmp_decoding").set_value("sample")
    at.slider(key="an_cmp_temperature").set_value(2.0)
    at.button(key="an_cmp_go").click().run()
    ok(at)
    assert not at.error, texts(at.error)
    assert state.generate_calls() == 2  # B generated through the dashboard's cached, locked path
    cmp_fig = _figure(at, 3)
    assert cmp_fig["layout"]["meta"]["kind"] == "compare"
    from dashboard.analysis_view import COMPARE_CAPTURE

    other = at.session_state[COMPARE_CAPTURE][1]
    assert other.meta.generation["do_sample"] and other.meta.generation["temperature"] == 2.0
    assert other.prompt_text == cap.prompt_text
    expected = compare_captures(cap, other)
    np.testing.assert_allclose(np.asarray(_decode(cmp_fig["data"][0]["y"]), dtype=np.float32),
                               expected.kl.numpy(), atol=1e-6)
    # The same choice again comes from the cache.
    at.button(key="an_cmp_go").click().run()
    ok(at)
    assert state.generate_calls() == 2
    assert at.session_state[state.CAPTURE] is cap  # comparing never replaces the current capture
