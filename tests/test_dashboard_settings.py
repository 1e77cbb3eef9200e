"""The dashboard's decoding widgets against the settings record: every field of ``GenerationSettings`` has a
widget (by key) or a stated reason to be left out, and each widget's value reaches the capture."""

from __future__ import annotations

import dataclasses

import pytest
from dashboard_helpers import free_text, new_app, ok, set_server_address, widgets

pytest.importorskip("streamlit.testing.v1")


@pytest.fixture
def fresh(monkeypatch):
    from dashboard import state

    before = set_server_address("127.0.0.1")
    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "builtin")
    for name in ("RUN", "CAPTURE", "RANDOM_WEIGHTS", "REMOTE"):
        monkeypatch.delenv(f"INSPECTOR_DASHBOARD_{name}", raising=False)
    monkeypatch.delenv("INSPECTOR_DAILYDIALOG_DIR", raising=False)
    state.clear_caches()
    yield state
    state.clear_caches()
    set_server_address(before)


def test_every_setting_has_a_widget_or_a_reason():
    from dashboard.decoding import NOT_IN_DASHBOARD, SETTING_WIDGETS
    from inspector._capture.settings import GenerationSettings

    fields = {f.name for f in dataclasses.fields(GenerationSettings)}
    missing = fields - set(SETTING_WIDGETS) - set(NOT_IN_DASHBOARD)
    assert not missing, f"settings without a dashboard widget or a reason in NOT_IN_DASHBOARD: {sorted(missing)}"
    assert not (set(SETTING_WIDGETS) | set(NOT_IN_DASHBOARD)) - fields, "names that are no setting"
    assert not set(SETTING_WIDGETS) & set(NOT_IN_DASHBOARD)
    assert all(reason.strip() for reason in NOT_IN_DASHBOARD.values())


def test_each_setting_widget_is_drawn_and_reaches_the_capture(fresh):
    from dashboard.decoding import NOT_IN_DASHBOARD, SETTING_WIDGETS
    from inspector._capture.settings import GenerationSettings

    at = new_app().run()
    ok(at)
    drawn = {w.key for w in widgets(at)}
    assert set(SETTING_WIDGETS.values()) <= drawn, set(SETTING_WIDGETS.values()) - drawn
    defaults = GenerationSettings()

    free_text(at, "User: hello\nAgent:")
    at.sidebar.radio(key="decoding").set_value("sample").run()  # enables the sampling widgets
    chosen = {"max_new_tokens": 3, "temperature": 0.7, "top_k": 7, "top_p": 0.9,
              "repetition_penalty": 1.2, "stop_strings": "zz,\\n", "seed": 3, "top_k_logits": 4,
              "truncate_prompt": True}
    for key, value in chosen.items():
        _set(at, key, value)
    at.run()
    at.button(key="generate").click().run()
    ok(at)
    gen = at.session_state[fresh.CAPTURE].meta.generation
    expected = {"do_sample": True, "max_new_tokens": 3, "temperature": 0.7, "top_k": 7, "top_p": 0.9,
                "repetition_penalty": 1.2, "stop_strings": ["zz", "\n"], "seed": 3, "top_k_logits": 4,
                "truncate_prompt": True}
    for field, value in expected.items():
        assert gen[field] == (pytest.approx(value) if isinstance(value, float) else value), field
        assert value != getattr(defaults, field) or field == "stop_strings", f"{field}: pick a non-default value"
    for field in NOT_IN_DASHBOARD:  # left at the record's defaults
        want = getattr(defaults, field)
        assert gen[field] == (list(want) if isinstance(want, tuple) else want), field

    at.session_state[fresh.VIEW] = "Prompt"  # generating switched to the Generation view
    at.sidebar.radio(key="decoding").set_value("beam").run()
    at.sidebar.slider(key="num_beams").set_value(3).run()
    at.button(key="generate").click().run()
    ok(at)
    gen = at.session_state[fresh.CAPTURE].meta.generation
    assert gen["num_beams"] == 3 and gen["do_sample"] is False
    assert fresh.generate_calls() == 2


def _set(at, key: str, value) -> None:
    (widget,) = [w for w in widgets(at) if w.key == key]
    widget.set_value(value)
