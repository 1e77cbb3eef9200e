"""Forced captures are shown as forced: the CLI report, plot titles and subtitles, and the page's stop label."""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")

from dashboard.text import stop_label  # noqa: E402
from inspector._report import capture_report  # noqa: E402
from inspector.plots.attention_data import heatmap_data  # noqa: E402
from inspector.plots.static import head_grid  # noqa: E402
from inspector.plots.text_data import text_data  # noqa: E402

PROMPT, REPLY = "User: hey how are you?\nAgent:", " I am fine, thanks."


@pytest.fixture(scope="module")
def pair(byte_tiny):
    forced = byte_tiny.score(PROMPT, REPLY)
    generated = byte_tiny.generate(PROMPT, max_new_tokens=4)
    return forced, generated


def test_report_names_a_forced_continuation(pair):
    forced, generated = pair
    text = capture_report(forced)
    assert f"forced continuation ({forced.num_steps} tokens): {REPLY!r}" in text
    assert "generated (" not in text and "stopped by" not in text
    assert "generated (4 tokens, stopped by length)" in capture_report(generated)


def test_plot_titles_mark_forced_captures(pair):
    import matplotlib.pyplot as plt

    forced, generated = pair
    assert "teacher-forced continuation" in heatmap_data(forced).title
    assert "teacher-forced" not in heatmap_data(generated).title
    assert text_data(forced).title.startswith("Forced continuation coloured by")
    assert text_data(generated).title.startswith("Generated text coloured by")
    for cap, words in ((forced, "red lines: the continuation starts"), (generated, "red lines: generation starts")):
        fig = head_grid(cap)
        try:
            assert words in fig.get_suptitle()
        finally:
            plt.close(fig)


def test_page_names_the_forced_stop_reason():
    assert "teacher-forced" in stop_label("forced") and stop_label("length") == "token limit"
