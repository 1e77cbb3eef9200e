"""The logit-attribution figure, static and interactive, checked through its data: each step's column adds up to
the model's own logit (a teacher-forced pass), the cells are the attribution's parts, and the one-step bars are
that step's largest parts, picked by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plot_helpers import _decode

from inspector.analysis import logit_attribution
from inspector.plots import make_figure


@pytest.fixture(scope="module")
def cap(byte_tiny):
    return byte_tiny.generate("The cat sat on the", max_new_tokens=8)


@pytest.fixture(scope="module")
def reference(byte_tiny, cap) -> np.ndarray:
    """``[step]``: the chosen token's logit in a plain forward pass over the final sequence."""
    with torch.no_grad():
        logits = byte_tiny.model(input_ids=cap.token_ids[None]).logits[0, cap.prompt_len - 1:-1]
    return logits.gather(1, cap.generated_ids[:, None])[:, 0].numpy()


def arr(value) -> np.ndarray:
    return np.asarray(_decode(value), dtype=np.float64)


def test_interactive_heatmap_columns_add_up_to_the_logit(byte_tiny, cap, reference):
    fig = make_figure("logit-attribution", cap, interactive=True, model=byte_tiny)
    trace = fig.data[0]
    z = arr(trace.z)  # [part, step]
    assert z.shape == (len(trace.y), cap.num_steps)
    np.testing.assert_allclose(z.sum(0), reference, atol=1e-3)
    assert list(trace.y)[:3] == ["embed", "pos", "L0.H0"] and list(trace.y)[-1] == "final_norm.bias"
    assert "chosen logit" in fig.layout.title.text and "logits" in fig.layout.title.text
    assert fig.layout.meta["kind"] == "logit-attribution" and fig.layout.meta["step"] is None


def test_static_heatmap_holds_the_parts(byte_tiny, cap, reference):
    att = logit_attribution(cap, byte_tiny, target="margin")
    fig = make_figure("logit-attribution", cap, attribution=att)
    image = np.asarray(fig.axes[0].get_images()[0].get_array(), dtype=np.float64)
    np.testing.assert_allclose(image, att.parts.numpy().T, atol=1e-6)
    title = fig._suptitle.get_text()
    assert "margin over the runner-up" in title and "(logits)" in title


@pytest.mark.parametrize("interactive", [True, False])
def test_one_step_shows_its_ten_largest_parts(byte_tiny, cap, interactive):
    att = logit_attribution(cap, byte_tiny)
    row = att.parts[3].numpy()
    order = sorted(range(len(row)), key=lambda i: -abs(row[i]))[:10]
    want_names, want_values = [att.names[i] for i in order], row[order]
    fig = make_figure("logit-attribution", cap, interactive=interactive, attribution=att, step=3)
    if interactive:
        bars = fig.data[0]
        assert list(bars.y) == want_names
        np.testing.assert_allclose(arr(bars.x), want_values, atol=1e-6)
        assert "step 3" in fig.layout.title.text and fig.layout.meta["step"] == 3
    else:
        ax = fig.axes[0]
        widths = [p.get_width() for p in ax.patches]
        heights = [p.get_y() + p.get_height() / 2 for p in ax.patches]
        labels = [t.get_text() for t in ax.get_yticklabels()]
        assert labels == want_names
        np.testing.assert_allclose(widths, want_values, atol=1e-6)
        assert heights == sorted(heights, reverse=True)  # the largest at the top
        assert "step 3" in fig._suptitle.get_text()


def test_figure_errors(byte_tiny, cap):
    with pytest.raises(ValueError, match="pass model="):
        make_figure("logit-attribution", cap)
    att = logit_attribution(cap, byte_tiny)
    with pytest.raises(ValueError, match="step 8 out of range"):
        make_figure("logit-attribution", cap, attribution=att, step=8)
    with pytest.raises(ValueError, match="not 'margin'"):
        make_figure("logit-attribution", cap, attribution=att, target="margin")
    other = byte_tiny.generate("The cat", max_new_tokens=3)
    with pytest.raises(ValueError, match="not this capture's"):
        make_figure("logit-attribution", other, attribution=att)
