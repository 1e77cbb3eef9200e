"""Static (matplotlib) figures: the drawn arrays equal the capture's tensors; files decode as asked."""

from __future__ import annotations

import io
import os
import unicodedata
import warnings
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path
from typing import cast

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from plot_helpers import face_rgba, summary_frame, synthetic_capture

from inspector._aggregate import aggregate_by_mode, attention_from
from inspector._records.capture import CaptureError
from inspector.plots import static
from inspector.plots.attention_data import head_grid_data, head_mosaic
from inspector.plots.corpus_data import DEFAULT_METRICS, NO_LABEL, corpus_data
from inspector.plots.export import ExportError, export_bytes, export_figure
from inspector.plots.labels import display_token, escape_controls, quoted_token, thin_indices
from inspector.plots.scores_data import topk_data
from inspector.plots.text_data import colour_of

PROMPT = "User: hey how are you? \nAgent:"


@pytest.fixture(scope="module")
def cap(tiny):
    return tiny.generate(PROMPT, max_new_tokens=8, attention_dtype=torch.float32)


@pytest.fixture(scope="module")
def long_cap():
    return synthetic_capture(seq=520, prompt_len=400, n_layer=12, n_head=12)


def _image(fig) -> np.ma.MaskedArray:
    (ax,) = [a for a in fig.axes if a.images and a.get_label() != "<colorbar>"][:1]
    return ax.images[0].get_array()


def _upper(n: int) -> np.ndarray:
    return np.triu(np.ones((n, n), dtype=bool), 1)


# --------------------------------------------------------------------------- heatmap
@pytest.mark.parametrize(
    ("layer", "head", "agg"),
    [(None, None, "mean"), (None, None, "max"), (None, None, "stacked-mean"), (1, 0, "mean"), (0, None, "max"),
     (None, 1, "mean")],
)
def test_heatmap_shows_the_selected_attention(cap, layer, head, agg):
    fig = static.attention_heatmap(cap, layer=layer, head=head, agg=agg)
    img = _image(fig)
    want = aggregate_by_mode(cap.attentions, agg, layer, head).numpy()
    n = cap.seq_len
    assert img.shape == (n, n)
    # Cells above the diagonal are masked: exactly the causal zeros.
    np.testing.assert_array_equal(np.ma.getmaskarray(img), _upper(n))
    assert np.all(want[_upper(n)] == 0)
    np.testing.assert_allclose(img.filled(0), want, rtol=0, atol=0)


def test_heatmap_single_layer_head_is_the_raw_tensor(cap):
    img = _image(static.attention_heatmap(cap, layer=1, head=1))
    np.testing.assert_array_equal(img.filled(0), cap.attentions[1, 1].numpy())


def test_heatmap_labels_boundary_and_title(cap):
    fig = static.attention_heatmap(cap)
    ax = fig.axes[0]
    xt = [t.get_text() for t in ax.get_xticklabels()]
    yt = [t.get_text() for t in ax.get_yticklabels()]
    shown = [display_token(t) for t in cap.tokens]
    assert xt == shown and yt == shown  # 19 tokens: every one labelled, in order
    colours = [t.get_color() for t in ax.get_xticklabels()]
    assert set(colours[: cap.prompt_len]) == {static.PROMPT_INK}
    assert set(colours[cap.prompt_len :]) == {static.GENERATED_INK}
    # The boundary: dashed lines at prompt_len - 0.5, stopping at the diagonal.
    b = cap.prompt_len - 0.5
    xs = [tuple(cast(Sequence[float], line.get_xdata())) for line in ax.lines]
    ys = [tuple(cast(Sequence[float], line.get_ydata())) for line in ax.lines]
    assert (b, b) in xs and (b, b) in ys
    assert "RANDOM WEIGHTS" in fig.get_suptitle()
    assert "mean over layers and heads" in fig.get_suptitle()


def test_heatmap_bad_layer_head_agg(cap):
    with pytest.raises(ValueError, match=r"layer 2 out of range: valid layers are 0\.\.1"):
        static.attention_heatmap(cap, layer=2)
    with pytest.raises(ValueError, match=r"head -3 out of range: valid heads are 0\.\.1"):
        static.attention_heatmap(cap, head=-3)
    with pytest.raises(ValueError, match="stacked-mean"):
        static.attention_heatmap(cap, layer=0, agg="stacked-mean")
    with pytest.raises(ValueError, match="choose one of"):
        static.attention_heatmap(cap, agg="median")


def test_negative_layer_counts_from_the_end(cap):
    img = _image(static.attention_heatmap(cap, layer=-1, head=0))
    np.testing.assert_array_equal(img.filled(0), cap.attentions[1, 0].numpy())


def test_capture_without_attention_is_a_clear_error(cap):
    import dataclasses

    bare = dataclasses.replace(cap, attentions=None)
    for fn in (static.attention_heatmap, static.head_grid, static.token_attention):
        with pytest.raises(CaptureError, match="kept no attention"):
            fn(bare)
    static.topk_steps(bare)  # figures that need no attention still work


# --------------------------------------------------------------------------- head grid
def test_head_grid_panels_equal_each_head(cap):
    fig = static.head_grid(cap)
    img = _image(fig)
    mosaic = head_mosaic(head_grid_data(cap))
    n = cap.seq_len
    for layer in range(2):
        for head in range(2):
            r, c = mosaic.origin(layer, head)
            panel = img[r : r + n, c : c + n]
            np.testing.assert_array_equal(np.ma.getmaskarray(panel), _upper(n))
            np.testing.assert_array_equal(panel.filled(0), cap.attentions[layer, head].numpy())
    # One colour scale for every panel, up to the largest weight anywhere.
    assert fig.axes[0].images[0].norm.vmax == pytest.approx(float(cap.attentions.max()))
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == ["head 0", "head 1"]


def test_head_grid_pools_long_sequences(long_cap):
    fig = static.head_grid(long_cap, max_cells=100)  # benchmarks/bench_plots.py times it
    png = export_bytes(fig, "png", dpi=60)
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    d = head_grid_data(long_cap, max_cells=100)
    assert d.factor == 6 and d.matrices.shape == (12, 12, 87, 87)
    # what keeps it quick: the pooled panels drawn as one image, not 144 images of 520 x 520
    (panels,) = [a for a in fig.axes if a.get_label() != "<colorbar>"]
    assert len(panels.images) == 1 and _image(fig).shape == head_mosaic(d).image.shape
    att = long_cap.attentions.float()
    # Independent reference: the mean of each 6x6 block (the last block is 4 wide).
    for li, hi, qi, ki in [(0, 0, 10, 3), (11, 5, 86, 0), (3, 7, 86, 86), (5, 5, 40, 39)]:
        block = att[li, hi, qi * 6 : qi * 6 + 6, ki * 6 : ki * 6 + 6]
        assert d.matrices[li, hi, qi, ki] == pytest.approx(float(block.mean()), rel=1e-5)
    assert d.masked[0, 1] and not d.masked[1, 1] and not d.masked[1, 0]


# --------------------------------------------------------------------------- top-k
def test_topk_cells_chosen_frames_and_entropy(cap):
    from matplotlib.patches import Rectangle

    fig = static.topk_steps(cap, k=5)
    ax, ax_e = fig.axes[0], fig.axes[1]
    probs = ax.images[0].get_array()
    assert probs is not None
    np.testing.assert_allclose(probs, cap.raw.topk_logprobs[:, :5].exp().numpy(), rtol=1e-6)
    # Each cell names its candidate.
    texts = {(round(t.get_position()[0]), round(t.get_position()[1])): t.get_text() for t in ax.texts}
    for s in range(cap.num_steps):
        for c in range(5):
            assert texts[(c, s)].split("\n")[0] == display_token(cap.label(int(cap.raw.topk_ids[s, c])))[:11]
    # Greedy decoding: the chosen token is rank 1, framed in column 0 on every row.
    frames = [p for p in ax.patches if isinstance(p, Rectangle)]
    assert sorted((p.get_x() + 0.5, p.get_y() + 0.5) for p in frames) == [(0, s) for s in range(cap.num_steps)]
    widths = [cast(Rectangle, bar).get_width() for bar in ax_e.patches]  # barh draws Rectangles
    np.testing.assert_allclose(widths, cap.raw.entropy.numpy(), rtol=1e-6)


def test_topk_marks_a_chosen_token_outside_the_top_k(long_cap):
    d = topk_data(long_cap, k=3)
    outside = np.flatnonzero(d.chosen_col < 0)
    assert outside.size  # synthetic chosen tokens are random
    s = int(outside[0])
    assert d.row_labels[s].endswith(f"(rank {int(long_cap.raw.chosen_rank[s])})")
    fig = static.topk_steps(long_cap, k=3)
    assert not fig.axes[0].texts  # 120 steps: no words in cells, labels thinned
    assert len(fig.axes[0].get_yticklabels()) <= 81


def test_topk_bad_k(cap):
    with pytest.raises(ValueError, match=r"top 10 candidates, use 1\.\.10"):
        static.topk_steps(cap, k=11)
    with pytest.raises(ValueError, match="scores"):
        static.topk_steps(cap, scores="logits")


# --------------------------------------------------------------------------- text
def test_text_figure_colours_generated_tokens(cap):
    fig = static.text_figure(cap, color_by="prob")
    ax = fig.axes[0]
    cells = ax.patches
    assert len(cells) == cap.num_steps
    probs = cap.chosen_probs.numpy()
    for cell, p in zip(cells, probs, strict=True):
        want = colour_of("prob", float(p), 0.0, 1.0)
        np.testing.assert_allclose(face_rgba(cell)[:3], want[:3], atol=1 / 255)
    words = "".join(t.get_text() for t in ax.texts)
    assert "hey how are you?" in words and cap.generated_tokens[0] in words
    assert "RANDOM WEIGHTS" in fig.texts[0].get_text()


def test_static_text_html_is_plain_coloured_spans(cap):
    html = static.text_html(cap, color_by="entropy")
    assert html.startswith("<!DOCTYPE html>") and "<script" not in html
    assert html.count('class="insp-tok"') == cap.num_steps
    for e, r in zip(cap.raw.entropy.tolist(), cap.raw.chosen_rank.tolist(), strict=True):
        assert f"(rank {r}), entropy {e:.3f} nats" in html
    assert 'class="insp-tip"' not in html  # the interactive module's version has the alternatives
    with pytest.raises(ValueError, match="color_by"):
        static.text_html(cap, color_by="rank")


# --------------------------------------------------------------------------- token strip
def test_token_attention_strip(cap):
    fig = static.token_attention(cap)  # default: the first generated token
    img = _image(fig)
    pos = cap.prompt_len
    want = attention_from(cap.attentions, pos)[:, : pos + 1].numpy()
    np.testing.assert_array_equal(np.asarray(img), want)
    labels = [t.get_text() for t in fig.axes[0].get_xticklabels()]
    assert labels == [display_token(t) for t in cap.tokens[: pos + 1]]
    assert f"position {pos}" in fig.get_suptitle()

    img = _image(static.token_attention(cap, position=-1, head=1))
    np.testing.assert_array_equal(np.asarray(img), cap.attentions[:, 1, -1, :].numpy())
    with pytest.raises(ValueError, match=r"token position 19 out of range: valid token positions are 0\.\.18"):
        static.token_attention(cap, position=19)


# --------------------------------------------------------------------------- corpus
def test_corpus_points_are_the_summary_values():
    df = summary_frame(60)
    fig = static.corpus_distributions(df, by="act", metrics=["entropy_mean", "attn_prompt_share"])
    groups = ["inform", "question", "directive", "commissive"]  # DailyDialog's order
    for ax, metric in zip(fig.axes, ["entropy_mean", "attn_prompt_share"], strict=True):
        assert [t.get_text().split("\n")[0] for t in ax.get_xticklabels()] == groups
        for coll, g in zip(ax.collections, groups, strict=True):
            want = df.loc[df["act"] == g, metric].to_numpy()
            np.testing.assert_allclose(cast(np.ndarray, coll.get_offsets())[:, 1], want)


def test_corpus_default_metrics_and_missing_label_group():
    df = summary_frame(40)
    df.loc[df.index[:3], "response_emotion"] = None  # last turns have no response
    d = corpus_data(df, by="response_emotion")
    assert d.metrics == list(DEFAULT_METRICS)
    assert d.groups[-1] == NO_LABEL and d.counts[NO_LABEL] == 3
    assert sum(d.counts.values()) == 40
    no_attn = df.drop(columns=[c for c in df.columns if c.startswith("attn_")])
    assert corpus_data(no_attn).metrics == ["entropy_mean", "chosen_prob_mean"]


def test_corpus_bad_inputs():
    df = summary_frame(20)
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['chosen_prob_mean'\]"):
        static.corpus_distributions(df.drop(columns=["chosen_prob_mean"]))
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['emotion', 'attn_nope'\]"):
        static.corpus_distributions(df.drop(columns=["emotion"]), metrics=["attn_nope"])
    with pytest.raises(ValueError, match="cannot group by 'speaker'"):
        static.corpus_distributions(df, by="speaker")
    with pytest.raises(ValueError, match="not numeric"):
        static.corpus_distributions(df, metrics=["stop_reason"])
    with pytest.raises(ValueError, match="no rows"):
        static.corpus_distributions(df.iloc[:0])
    with pytest.raises(ValueError, match="DataFrame"):
        static.corpus_distributions({"emotion": []})


# --------------------------------------------------------------------------- export
def test_png_decodes_to_the_requested_size(cap, tmp_path):
    fig = static.attention_heatmap(cap, figsize=(6.0, 4.5))
    out = export_figure(fig, tmp_path / "h.png", dpi=80)
    img = mpimg.imread(out)
    assert img.shape[:2] == (360, 480)
    assert float(img[..., :3].std()) > 0.05  # not blank


def test_svg_is_xml_with_token_labels_as_text(cap, tmp_path):
    out = export_figure(static.attention_heatmap(cap), tmp_path / "h.svg")
    root = ET.parse(out).getroot()
    assert root.tag.endswith("svg")
    texts = {"".join(el.itertext()).strip() for el in root.iter() if el.tag.endswith("text")}
    for tok in ("User", "hey", "Agent", cap.generated_tokens[0].strip(), "↵"):
        assert tok in texts
    assert any("RANDOM WEIGHTS" in t for t in texts)


def test_svg_keeps_dollar_signs_literal(tmp_path):
    small = synthetic_capture(seq=30, prompt_len=20, n_layer=2, n_head=2)
    assert any("$" in t for t in small.tokens)
    svg = export_bytes(static.attention_heatmap(small), "svg").decode()
    root = ET.fromstring(svg)
    texts = {"".join(el.itertext()) for el in root.iter() if el.tag.endswith("text")}
    dollars = [display_token(t) for t in small.tokens if "$" in t]
    assert all(d in texts for d in dollars)


def test_pdf_and_bad_formats(cap, tmp_path):
    fig = static.topk_steps(cap)
    assert export_figure(fig, tmp_path / "t.pdf").read_bytes()[:5] == b"%PDF-"
    with pytest.raises(ExportError, match="interactive"):
        export_figure(fig, tmp_path / "t.html")
    with pytest.raises(ExportError, match=r"\.png, \.svg, \.pdf, \.html"):
        export_figure(fig, tmp_path / "t.jpg")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.pdf"]


def test_unwritable_path_leaves_nothing(cap, tmp_path):
    fig = static.token_attention(cap)
    with pytest.raises(OSError, match="does not exist"):
        export_figure(fig, tmp_path / "missing" / "t.png")
    (tmp_path / "taken.png").mkdir()  # a folder where the file should go: unwritable even as root
    with pytest.raises(OSError):
        export_figure(fig, tmp_path / "taken.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.png"]
    assert list((tmp_path / "taken.png").iterdir()) == []
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        if os.access(ro, os.W_OK):
            pytest.skip("running as root: a read-only folder is still writable")
        with pytest.raises(OSError, match="cannot write"):
            export_figure(fig, ro / "t.png")
        assert list(ro.iterdir()) == []
    finally:
        ro.chmod(0o700)


def test_failed_write_keeps_the_old_file(cap, tmp_path, monkeypatch):
    target = tmp_path / "t.png"
    target.write_bytes(b"old")
    import inspector._atomic as atomic

    def boom(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(atomic.os, "replace", boom)
    with pytest.raises(OSError, match="disk full"):
        export_figure(static.topk_steps(cap), target)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.png"]


# --------------------------------------------------------------------------- long sequences
def test_long_sequence_heatmap_is_thinned_and_fast(long_cap, tmp_path):
    fig = static.attention_heatmap(long_cap, max_labels=50)  # benchmarks/bench_plots.py times it
    out = export_figure(fig, tmp_path / "long.png", dpi=80)
    ax = fig.axes[0]
    assert len(ax.images) == 1 and not ax.patches and not ax.texts  # one image, no per-cell artists
    ticks = list(ax.get_xticks())
    assert 40 <= len(ticks) <= 52
    assert long_cap.prompt_len in ticks  # the first generated token is always labelled
    labels = [t.get_text() for t in ax.get_xticklabels()]
    assert labels[ticks.index(400)] == f"400 {display_token(long_cap.tokens[400])}"
    assert mpimg.imread(out).shape[0] > 0
    img = _image(fig)
    want = aggregate_by_mode(long_cap.attentions, "mean").numpy()
    np.testing.assert_allclose(img.filled(0), want, rtol=1e-6)


def test_thin_indices():
    assert thin_indices(5, 10) == [0, 1, 2, 3, 4]
    idx = thin_indices(1000, 50, keep=(401,))
    assert 401 in idx and len(idx) <= 51 and idx[0] == 0
    assert all(b - a >= 10 for a, b in zip(idx, idx[1:], strict=False) if 401 not in (a, b))
    assert min(abs(i - 401) for i in idx if i != 401) >= 20
    assert thin_indices(10, 0) == []


def test_capture_with_nothing_generated():
    empty = synthetic_capture(seq=12, prompt_len=12, n_layer=2, n_head=2)
    assert empty.attentions is not None
    fig = static.attention_heatmap(empty)
    assert not fig.axes[0].lines  # no boundary to mark
    assert len(static.text_figure(empty).axes[0].patches) == 0
    img = _image(static.token_attention(empty))  # defaults to the last token
    np.testing.assert_array_equal(np.asarray(img), attention_from(empty.attentions, 11).numpy())
    with pytest.raises(ValueError, match="no generated steps"):
        static.topk_steps(empty)


# --------------------------------------------------------------------------- public names
def test_group_columns_and_metric_labels_are_public():
    import inspector.plots as plots
    from inspector.plots import GROUP_COLUMNS, METRIC_LABELS, options

    assert GROUP_COLUMNS is options.GROUP_COLUMNS and METRIC_LABELS is options.METRIC_LABELS
    assert {"GROUP_COLUMNS", "METRIC_LABELS"} <= set(plots.__all__)
    assert GROUP_COLUMNS[0] == "emotion" and METRIC_LABELS["entropy_mean"] == "mean entropy (nats)"
    # The dashboard uses the public names, not the private module.
    dashboard = Path(__file__).resolve().parents[1] / "dashboard"
    for src in dashboard.glob("*.py"):
        assert "plots._common" not in src.read_text(encoding="utf-8"), src.name


# --------------------------------------------------------------------------- control characters
BYTE_PROMPT = "User: a\x13b\x00c\x7f\tz\nAgent:"


@pytest.fixture(scope="module")
def byte_cap():
    """A capture of the byte-level built-in model whose prompt holds control bytes (one token each)."""
    from inspector._fallback import builtin_model

    return builtin_model().generate(BYTE_PROMPT, max_new_tokens=6, attention_dtype=torch.float32)


def _controls(text: str) -> list[str]:
    """Control and format characters other than the line breaks of multi-line titles."""
    return [c for c in text if unicodedata.category(c) in ("Cc", "Cf") and c != "\n"]


def test_display_token_escapes_control_characters():
    assert display_token("\x13") == "\\x13"  # as repr writes it, without the quotes
    assert display_token("a\x00b\x7f") == "a\\x00b\\x7f"
    assert display_token("\u200b") == "\\u200b"  # zero-width space: invisible, so escaped too
    assert display_token("\x1c") == "\\x1c"  # whitespace to str.strip, but no glyph: not a blank
    assert display_token("\n") == "↵" and display_token("\r\n") == "↵" and display_token("\t") == "⇥"
    assert display_token(" ") == "␣" and display_token(" café $5") == " café $5"
    assert quoted_token("\x13") == "'\\x13'" and quoted_token("'s") == "\"'s\""
    assert escape_controls("a\nb\x13", keep="\n") == "a\nb\\x13"


def test_control_byte_tokens_draw_without_missing_glyphs(byte_cap):
    assert {"\x13", "\x00", "\x7f"} <= set(byte_cap.tokens)
    pos = byte_cap.tokens.index("\x13")
    figs = {
        "text": static.text_figure(byte_cap),
        "heatmap": static.attention_heatmap(byte_cap),
        "topk": static.topk_steps(byte_cap),
        "token": static.token_attention(byte_cap, position=pos),
        "heads": static.head_grid(byte_cap),
    }
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        for fig in figs.values():
            fig.savefig(io.BytesIO(), format="png")  # directly, as st.pyplot does (export filters glyph warnings)
    assert [str(w.message) for w in caught if "missing from font" in str(w.message)] == []
    from matplotlib.text import Text

    for name, fig in figs.items():
        texts = [t.get_text() for t in fig.findobj(Text)]
        assert not [t for t in texts if _controls(t)], name
    ticks = [t.get_text() for t in figs["heatmap"].axes[0].get_xticklabels()]
    assert ticks[pos] == "\\x13" and ticks[byte_cap.tokens.index("\x00")] == "\\x00"
    words = "".join(t.get_text() for t in figs["text"].axes[0].texts)
    assert "a\\x13b\\x00c\\x7f⇥z" in words  # the prompt as it is, control bytes escaped
    assert "Attention from '\\x13' (position" in figs["token"].get_suptitle()
