"""The dashboard (AppTest): comparing two beams of a beam search, and the Export tab's analysis figures."""

from __future__ import annotations

import numpy as np
import pytest
from dashboard_helpers import free_text, new_app, ok, texts, widgets
from plot_helpers import _decode

pytest.importorskip("streamlit.testing.v1")


def _generate(at, state, **widgets_by_key):
    free_text(at, "User: hello there\nAgent:")
    at.slider(key="max_new_tokens").set_value(6)
    for key, value in widgets_by_key.items():  # in order: choosing beam search enables the beams slider
        getattr(at, "radio" if key == "decoding" else "slider")(key=key).set_value(value)
        at.run()
    at.button(key="generate").click().run()
    ok(at)
    return at.session_state[state.CAPTURE]


def test_two_beams_of_the_search(fresh):
    import json

    from inspector.analysis import compare_captures

    state = fresh
    at = new_app().run()
    ok(at)
    cap = _generate(at, state, decoding="beam", num_beams=3)
    at.session_state[state.VIEW] = "Analysis"
    at.run()
    ok(at)
    assert not [type(w).__name__ for w in widgets(at) if not w.key]
    at.selectbox(key="an_beam_b").set_value(2)
    at.button(key="an_beams_go").click().run()
    ok(at)
    assert not at.error, texts(at.error)
    from dashboard.analysis_view import BEAMS_CAPTURE

    beams = at.session_state[BEAMS_CAPTURE][1]
    assert len(beams) == 3 and beams[0].token_ids.tolist() == cap.token_ids.tolist()
    fig = next(json.loads(c.proto.spec) for c in at.get("plotly_chart")
               if json.loads(c.proto.spec)["layout"].get("meta", {}).get("names") == ["beam 0", "beam 2"])
    expected = compare_captures(beams[0], beams[2], align="prefix")
    np.testing.assert_allclose(np.asarray(_decode(fig["data"][0]["y"]), dtype=np.float32), expected.kl.numpy(),
                               atol=1e-6)
    at.button(key="an_beams_go").click().run()  # cached: the same captures, no new search
    ok(at)
    assert all(x is y for x, y in zip(at.session_state[BEAMS_CAPTURE][1], beams, strict=True))


def test_greedy_capture_offers_no_beams(fresh):
    at = new_app().run()
    _generate(at, fresh)
    at.session_state[fresh.VIEW] = "Analysis"
    at.run()
    ok(at)
    assert not [w for w in widgets(at) if w.key == "an_beams_go"]


def test_export_offers_the_analysis_figures(fresh, byte_tiny, monkeypatch):
    from dashboard import export_view

    made: list[tuple[str, str, int]] = []
    real = export_view.figure_bytes

    def spy(kind, source, fmt, **opts):
        data = real(kind, source, fmt, **opts)
        made.append((kind, fmt, len(data)))
        return data

    monkeypatch.setattr(export_view, "figure_bytes", spy)
    state = fresh
    at = new_app().run()
    ok(at)
    _generate(at, state, decoding="beam", num_beams=3)
    at.session_state[state.VIEW] = "Export"
    at.run()
    ok(at)
    labels = {label: kind for kind, label in export_view.FIGURES.items()}
    offered = [labels[o] for o in at.selectbox(key="export_kind").options]
    assert "rollout" in offered and "head-stats" in offered
    assert not {"lens", "compare", "beams"} & set(offered)  # no stored lens, nothing compared yet
    at.session_state[state.VIEW] = "Analysis"
    at.run()
    at.button(key="an_cmp_go").click().run()
    at.button(key="an_beams_go").click().run()
    ok(at)
    at.session_state[state.VIEW] = "Export"
    at.run()
    ok(at)
    for kind in ("rollout", "head-stats", "compare", "beams"):
        for fmt in ("png", "html"):
            at.selectbox(key="export_kind").set_value(kind)
            at.selectbox(key="export_format").set_value(fmt).run()
            ok(at)
            assert not at.error, (kind, fmt, texts(at.error))
            assert at.get("download_button") and made[-1][:2] == (kind, fmt) and made[-1][2] > 1000, (kind, made[-1])
    # A capture that stored its lens offers the lens grid, without a model.
    at.session_state[state.CAPTURE] = byte_tiny.generate("Hello there", max_new_tokens=4, lens_k=3)
    at.run()
    ok(at)
    assert {"lens", "rollout", "head-stats"} <= {labels[o] for o in at.selectbox(key="export_kind").options}
    at.selectbox(key="export_kind").set_value("lens")
    at.selectbox(key="export_format").set_value("svg").run()
    ok(at)
    assert not at.error, texts(at.error)
    assert made[-1][:2] == ("lens", "svg") and made[-1][2] > 1000
