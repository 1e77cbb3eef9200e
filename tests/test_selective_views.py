"""Selective captures in the text report and every dashboard view: said plainly, never a traceback."""

from __future__ import annotations

import pytest
from dashboard_helpers import new_app, ok, texts

from inspector._report import capture_report


def test_report_names_a_selective_layout(byte_tiny):
    cap = byte_tiny.generate("hello there", max_new_tokens=3, layers=[1], attention_rows="generated")
    text = capture_report(cap)
    assert "[layer, head, step, key]: 1x2x3x" in text
    assert "layers 1; all heads; generated rows only" in text
    full = capture_report(byte_tiny.generate("hello there", max_new_tokens=3))
    assert "[layer, head, query, key]: 2x2x" in full and "rows only" not in full


@pytest.mark.parametrize(
    ("kw", "said"),
    [({"layers": [1]}, "layers 1; all heads; every row"),
     ({"attention_rows": "generated"}, "all layers; all heads; generated rows only"),
     ({"head_reduce": "mean"}, None)],
)
def test_every_view_of_a_selective_capture(fresh, monkeypatch, tmp_path, kw, said):
    from inspector._fallback import builtin_model

    cap = builtin_model().generate("User: hi\nAgent:", max_new_tokens=4, **kw)
    monkeypatch.setenv("INSPECTOR_DASHBOARD_CAPTURE", str(cap.save(tmp_path / "sel.safetensors")))
    at = new_app().run()
    ok(at)
    for view in ("Attention", "Analysis", "Export", "Generation"):
        at.session_state[fresh.VIEW] = view
        at.run()
        ok(at)
        if view == "Attention":
            if said is not None:  # what it holds, and how to capture what the views draw
                assert said in texts(at.info) and "capture again without" in texts(at.info)
            else:  # a head mean draws as one head, said so
                assert "'head 0' is that mean" in texts(at.caption)
