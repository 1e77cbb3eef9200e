"""The dashboard's "Why this token?" view with AppTest: attribution, top parts, lens, and an ablated run."""

from __future__ import annotations

import json
import math
import re

import numpy as np
import pytest
from dashboard_helpers import free_text, new_app, ok, texts, widgets
from plot_helpers import _decode

pytest.importorskip("streamlit.testing.v1")

VIEW = "Why this token?"


def _figures(at) -> dict[str, dict]:
    """The view's plotly figures by their kind (``layout.meta.kind``)."""
    figs = [json.loads(c.proto.spec) for c in at.get("plotly_chart")]
    return {f["layout"]["meta"]["kind"]: f for f in figs}


def _attribution_html(at) -> str:
    pages = [str(h.proto.body) for h in at.get("html") if "insp-attr" in str(h.proto.body)]
    assert len(pages) == 1, len(pages)
    return pages[0]


def _scores_shown(page: str) -> dict[int, float]:
    """``{position: score}`` of the coloured tokens of the attribution page (read from their tooltips)."""
    found = re.findall(r'title="position (\d+) \((?:prompt|reply)\): ([-+0-9.e]+)"', page)
    return {int(p): float(s) for p, s in found}


def _open_view(state, prompt: str = "User: hello there\nAgent:", tokens: int = 6):
    at = new_app().run()
    ok(at)
    free_text(at, prompt)
    at.slider(key="max_new_tokens").set_value(tokens)
    at.button(key="generate").click().run()
    ok(at)
    cap = at.session_state[state.CAPTURE]
    at.session_state[state.VIEW] = VIEW
    at.run()
    ok(at)
    return at, cap


def _page_model():
    """The model the page loaded (the built-in one), from the dashboard's process-wide cache."""
    from dashboard import state

    return state.load_model(state.ModelRequest("builtin")).model


def test_why_view_follows_the_picked_token(fresh):
    from inspector.analysis.context_attribution import context_attribution
    from inspector.analysis.direct_logit import logit_attribution
    from inspector.plots.labels import display_token, html_label

    state = fresh
    at, cap = _open_view(state)
    assert not at.error, texts(at.error)
    unkeyed = [type(w).__name__ for w in widgets(at) if not w.key]
    assert not unkeyed, unkeyed
    assert any(VIEW in str(h.value) for h in at.subheader)
    model = _page_model()
    ixg = context_attribution(cap, model, method="input_x_gradient")
    dla = logit_attribution(cap, model, target="chosen")
    seen_parts = []
    for step in (0, cap.num_steps - 1):
        at.select_slider(key="why_step").set_value(step).run()
        ok(at)
        assert not at.error, texts(at.error)
        page = _attribution_html(at)
        # The outlined token is the picked one; every input of the step is coloured by its score.
        shown = _scores_shown(page)
        assert sorted(shown) == list(range(cap.prompt_len + step))
        np.testing.assert_allclose([shown[p] for p in sorted(shown)], ixg.step_scores(step).numpy(), atol=1e-4)
        figs = _figures(at)
        bars = figs["logit-attribution"]
        assert bars["layout"]["meta"]["step"] == step
        values = np.asarray(_decode(bars["data"][0]["x"]), dtype=np.float64)
        order = np.argsort(-np.abs(dla.parts[step].numpy()), kind="stable")[:10]
        assert bars["data"][0]["y"] == [dla.names[i] for i in order]
        np.testing.assert_allclose(values, dla.parts[step].numpy()[order], atol=1e-5)
        seen_parts.append(bars["data"][0]["y"])
        # The lens column is the position that predicts the picked token: its output row says what the
        # capture recorded as the step's most likely token, with the recorded probability.
        lens = figs["lens"]
        assert lens["data"][0]["x"][0].startswith(f"{cap.prompt_len + step - 1} ")
        probs = np.asarray(_decode(lens["data"][0]["z"]), dtype=np.float64)
        assert probs.shape == (cap.num_layers + 1, 1)
        recorded = math.exp(float(cap.raw.topk_logprobs[step, 0]))
        assert probs[-1, 0] == pytest.approx(recorded, abs=2e-3)
        top_word = lens["data"][0]["text"][-1][0]
        assert top_word == html_label(display_token(cap.label(int(cap.raw.topk_ids[step, 0]))))
    assert state.generate_calls() == 1  # explaining never generates


def test_method_and_target_choices_change_the_figures(fresh):
    from inspector.analysis.context_attribution import context_attribution
    from inspector.analysis.direct_logit import logit_attribution

    state = fresh
    at, cap = _open_view(state, tokens=4)
    model = _page_model()
    at.segmented_control(key="why_method").set_value("integrated_gradients").run()
    at.number_input(key="why_ig_steps").set_value(8).run()
    ok(at)
    assert not at.error, texts(at.error)
    ig = context_attribution(cap, model, method="integrated_gradients", steps=8)
    shown = _scores_shown(_attribution_html(at))
    np.testing.assert_allclose([shown[p] for p in sorted(shown)], ig.step_scores(0).numpy(), atol=1e-4)
    assert "integrated gradients, 8 steps" in _attribution_html(at)
    at.segmented_control(key="why_method").set_value("occlusion").run()
    ok(at)
    occ = context_attribution(cap, model, method="occlusion")
    shown = _scores_shown(_attribution_html(at))
    np.testing.assert_allclose([shown[p] for p in sorted(shown)], occ.step_scores(0).numpy(), atol=1e-4)
    at.segmented_control(key="why_target").set_value("margin").run()
    ok(at)
    margin = logit_attribution(cap, model, target="margin")
    bars = _figures(at)["logit-attribution"]
    assert bars["layout"]["meta"]["target"] == "margin"
    order = np.argsort(-np.abs(margin.parts[0].numpy()), kind="stable")[:10]
    np.testing.assert_allclose(np.asarray(_decode(bars["data"][0]["x"]), dtype=np.float64),
                               margin.parts[0].numpy()[order], atol=1e-5)


@pytest.mark.parametrize(("typed", "says"), [
    ("L99.H0", "the model has layers 0-"),
    ("L0.H77", "head"),
    ("L0.bogus", "unknown part"),
    ("", "name at least one part"),
])
def test_a_bad_part_name_says_what_the_model_has(fresh, typed, says):
    state = fresh
    at, _ = _open_view(state, tokens=3)
    at.text_input(key="why_ablate").input(typed)
    at.button(key="why_ablate_go").click().run()
    ok(at)
    message = texts(at.error).replace("\\", "")  # as the page shows it: markdown escapes removed
    assert says in message, message
    model = _page_model()
    assert (f"has {model.num_layers} layers (0 to {model.num_layers - 1}), each with {model.num_heads} heads "
            f"(0 to {model.num_heads - 1})") in message
    assert state.generate_calls() == 1  # refused before any model work
    assert not _figures(at).get("compare")


@pytest.mark.parametrize("mode", ["zero", "mean"])
def test_ablate_regenerates_the_same_prompt_and_compares(fresh, mode):
    from dashboard.why_view import ABLATED
    from inspector._capture.settings import GenerationSettings
    from inspector._fallback import builtin_model
    from inspector.analysis.compare import compare_captures

    state = fresh
    at, cap = _open_view(state, tokens=8)
    at.text_input(key="why_ablate").input("L0.H*, L1.mlp")
    at.segmented_control(key="why_ablate_mode").set_value(mode)
    at.button(key="why_ablate_go").click().run()
    ok(at)
    assert not at.error, texts(at.error)
    assert state.generate_calls() == 2  # through the dashboard's cached, locked path
    ablated = at.session_state[ABLATED][1]
    # Reference: a separate copy of the built-in model, generating the same prompt with the capture's settings
    # and the same parts ablated, directly through the package.
    settings = GenerationSettings.from_dict(
        {k: v for k, v in cap.meta.generation.items() if k != "prompt_truncated_tokens"})
    want = builtin_model().generate(cap.prompt_text, settings=settings, ablate=["L0.H*", "L1.mlp"],
                                    ablate_mode=mode)
    assert ablated.token_ids.tolist() == want.token_ids.tolist()
    assert ablated.meta.interventions["ablate_mode"] == mode
    assert ablated.meta.interventions["ablate"] == want.meta.interventions["ablate"]
    cmp = compare_captures(cap, want)
    assert float(cmp.kl.max()) > 1e-6  # the ablation changed the run: the comparison is not of two equal runs
    fig = _figures(at)["compare"]
    np.testing.assert_allclose(np.asarray(_decode(fig["data"][0]["y"]), dtype=np.float32), cmp.kl.numpy(),
                               atol=1e-5)
    words = texts(at.markdown)
    assert f"({int(cmp.top1_agree.sum())} of {cmp.num_steps} steps)" in words
    if cmp.first_divergent_step is None:
        assert "generated the same tokens" in words
    else:
        assert f"The runs part at step {cmp.first_divergent_step}" in words
    # The same parts again come from the cache; the current capture is untouched.
    at.button(key="why_ablate_go").click().run()
    ok(at)
    assert state.generate_calls() == 2
    assert at.session_state[state.CAPTURE] is cap
    # Opened in every view, the ablated run says so above every view and in this view's title.
    at.button(key="why_ablate_show").click().run()
    ok(at)
    assert at.session_state[state.CAPTURE] is ablated
    note = f"ablated: {', '.join(ablated.meta.interventions['ablate'])} ({mode})"
    titles = [str(h.value).replace("\\", "") for h in at.subheader]  # markdown escapes removed
    assert any(note in t for t in titles), titles
    lines = [str(m.value).replace("\\", "") for m in at.markdown if str(m.value).startswith("**Showing:**")]
    assert len(lines) == 1 and note in lines[0], lines
    # Its tokens are not explained with the unchanged model; the page says why, and ablating again still works.
    assert not at.error, texts(at.error)
    assert "not shown" in texts(at.info) and not at.get("html")
    assert not {"logit-attribution", "lens"} & set(_figures(at))


def test_a_saved_selective_capture_is_explained_with_the_loaded_model(fresh, monkeypatch, tmp_path):
    """A capture opened from a file, which kept two layers' attention only: the view needs none of it."""
    from inspector._fallback import builtin_model
    from inspector.analysis.direct_logit import logit_attribution

    model = builtin_model()
    cap = model.generate("User: hi\nAgent:", max_new_tokens=4, layers=[1, 2])
    monkeypatch.setenv("INSPECTOR_DASHBOARD_CAPTURE", str(cap.save(tmp_path / "sel.safetensors")))
    at = new_app().run()
    ok(at)
    at.session_state[fresh.VIEW] = VIEW
    at.run()
    ok(at)
    assert not at.error, texts(at.error)
    opened = at.session_state[fresh.CAPTURE]
    assert opened.token_ids.tolist() == cap.token_ids.tolist()
    bars = _figures(at)["logit-attribution"]
    want = logit_attribution(cap, model)
    order = np.argsort(-np.abs(want.parts[0].numpy()), kind="stable")[:10]
    np.testing.assert_allclose(np.asarray(_decode(bars["data"][0]["x"]), dtype=np.float64),
                               want.parts[0].numpy()[order], atol=1e-5)
    assert _scores_shown(_attribution_html(at))
    assert fresh.generate_calls() == 0
