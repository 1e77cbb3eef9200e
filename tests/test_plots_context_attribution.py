"""The attribution figure: coloured text of one step's scores, checked through the figure's data."""

from __future__ import annotations

import math

import pytest
import torch
from matplotlib.patches import Rectangle
from plot_helpers import face_rgba

from inspector.analysis.context_attribution import ContextAttribution
from inspector.plots import make_figure
from inspector.plots.context_attribution_data import context_attribution_data


@pytest.fixture(scope="module")
def cap(byte_tiny):
    return byte_tiny.generate("abcd", max_new_tokens=3)


def _handmade(cap) -> ContextAttribution:
    """Scores chosen by hand: at step 1 (5 inputs) position 2 is the largest, position 0 negative."""
    seq, p = cap.seq_len, cap.prompt_len
    scores = torch.full((cap.num_steps, seq), float("nan"))
    for i in range(cap.num_steps):
        scores[i, : p + i] = 0.0
    scores[1, : p + 1] = torch.tensor([-0.5, 0.1, 2.0, 0.0, 0.3])
    return ContextAttribution(scores=scores, target=torch.tensor([-1.0, -2.0, -3.0]), baseline_target=None,
                              completeness_error=None, method="occlusion", steps=1, rule="", baseline="zero",
                              token_ids=cap.token_ids, tokens=tuple(cap.tokens), prompt_len=p)


def _rgb(hex_colour: str | None) -> tuple[int, int, int]:
    assert hex_colour is not None, "the token is not coloured"
    return int(hex_colour[1:3], 16), int(hex_colour[3:5], 16), int(hex_colour[5:7], 16)


def test_data_colours_follow_the_scores(cap):
    assert cap.prompt_len == 4 and cap.num_steps == 3
    d = context_attribution_data(cap, attribution=_handmade(cap), step=1)
    assert d.step == 1 and d.vmax == 2.0 and math.isclose(d.total, 1.9, rel_tol=1e-6) and d.target == -2.0
    roles = [t.role for t in d.tokens]
    assert roles == ["prompt"] * 4 + ["reply", "target", "later"]
    red = _rgb(d.tokens[2].colour)
    blue = _rgb(d.tokens[0].colour)
    white = _rgb(d.tokens[3].colour)
    assert red[0] > red[2] + 100 and blue[2] > blue[0] + 20  # the largest: deep red; a negative one: blue
    assert min(white) > 230  # zero: near white
    assert d.tokens[5].colour is None and d.tokens[6].colour is None
    assert "occlusion" in d.title and "step 1" in d.title and "log-probability" in d.title
    assert repr(cap.tokens[5]) in d.title


def test_default_step_is_the_last_and_bad_steps_are_refused(cap):
    a = _handmade(cap)
    assert context_attribution_data(cap, attribution=a).step == 2
    assert context_attribution_data(cap, attribution=a, step=-2).step == 1
    with pytest.raises(ValueError, match="step 3 out of range"):
        context_attribution_data(cap, attribution=a, step=3)
    with pytest.raises(ValueError, match="needs the capture's model"):
        context_attribution_data(cap)
    with pytest.raises(ValueError, match="it was given"):
        context_attribution_data(cap, attribution=a, method="occlusion")


def test_attribution_of_another_sequence_is_refused(cap, byte_tiny):
    other = byte_tiny.generate("wxyz", max_new_tokens=3)
    with pytest.raises(ValueError, match="another sequence"):
        context_attribution_data(other, attribution=_handmade(cap))


def test_static_figure_draws_one_cell_per_input_and_outlines_the_target(cap):
    fig = make_figure("attribution", cap, attribution=_handmade(cap), step=1)
    ax = fig.axes[0]
    cells = [p for p in ax.patches if isinstance(p, Rectangle)]
    filled = [p for p in cells if face_rgba(p)[3] > 0]
    assert len(filled) == cap.prompt_len + 1  # the inputs of step 1 (each token one cell: byte tokens)
    outlined = [p for p in cells if face_rgba(p)[3] == 0]
    assert len(outlined) == 1
    texts = [t.get_text() for t in ax.texts]
    assert texts == [t if t.strip() else "␣" for t in cap.tokens]


def test_interactive_page_gives_each_score_on_hover(cap):
    page = make_figure("attribution", cap, interactive=True, attribution=_handmade(cap), step=1)
    assert isinstance(page, str) and page.startswith("<!DOCTYPE html>")
    assert 'title="position 2 (prompt): +2.0000"' in page
    assert 'title="position 0 (prompt): -0.5000"' in page
    assert page.count('class="insp-tok"') == 5 and page.count('class="insp-target"') == 1


def test_computes_the_attribution_with_a_model(cap, byte_tiny):
    d = context_attribution_data(cap, byte_tiny, method="input_x_gradient", step=0)
    assert "input x gradient" in d.title
    assert [t.role for t in d.tokens[:5]] == ["prompt"] * 4 + ["target"]
