"""Interactive (plotly) figures: trace values equal the capture's tensors; saved HTML is self-contained."""

from __future__ import annotations

import html as html_mod
import math
import sys
import types
import unicodedata

import numpy as np
import plotly.graph_objects as go
import pytest
import torch
from plot_helpers import figure_from_html, summary_frame, synthetic_capture

from inspector._aggregate import aggregate_by_mode, attention_from
from inspector.plots import KINDS, interactive, make_figure
from inspector.plots.export import ExportError, export_bytes, export_figure
from inspector.plots.interactive._draw import label_margin
from inspector.plots.labels import char_width, display_token, format_prob, html_label, position_labels, quoted_token

PROMPT = "User: hey how are you? \nAgent:"


@pytest.fixture(scope="module")
def cap(tiny):
    return tiny.generate(PROMPT, max_new_tokens=8, attention_dtype=torch.float32)


def _lower_equal(z: np.ndarray, want: np.ndarray) -> None:
    n = want.shape[0]
    upper = np.triu(np.ones((n, n), dtype=bool), 1)
    assert np.isnan(z[upper]).all() and np.all(want[upper] == 0)
    np.testing.assert_array_equal(z[~upper], want[~upper].astype(np.float32))


# --------------------------------------------------------------------------- heatmap
@pytest.mark.parametrize(("layer", "head", "agg"), [(None, None, "mean"), (None, None, "max"),
                                                    (None, 0, "stacked-mean"), (0, 1, "mean")])
def test_heatmap_values_equal_the_tensor(cap, layer, head, agg):
    fig = interactive.attention_heatmap(cap, layer=layer, head=head, agg=agg)
    (trace,) = fig.data
    want = aggregate_by_mode(cap.attentions, agg, layer, head).numpy()
    _lower_equal(np.asarray(trace.z), want)
    labels = position_labels(cap.tokens)
    assert list(trace.x) == labels and list(trace.y) == labels
    assert len(set(labels)) == len(labels)  # category axes need unique names; " wrap" repeats
    assert fig.layout.yaxis.autorange == "reversed"  # query 0 on top, like the matplotlib one


def test_heatmap_raw_layer_head_and_boundary(cap):
    fig = interactive.attention_heatmap(cap, layer=1, head=0)
    _lower_equal(np.asarray(fig.data[0].z), cap.attentions[1, 0].numpy())
    b = cap.prompt_len - 0.5
    shapes = [(s.x0, s.x1, s.y0, s.y1) for s in fig.layout.shapes]
    assert (b, b, b, cap.seq_len - 0.5) in shapes and (-0.5, b, b, b) in shapes
    assert "RANDOM WEIGHTS" in fig.layout.title.text and "layer 1, head 0" in fig.layout.title.text
    with pytest.raises(ValueError, match=r"valid layers are 0\.\.1"):
        interactive.attention_heatmap(cap, layer=7)


def test_gamma_colour_scale_keeps_true_values(cap):
    fig = interactive.attention_heatmap(cap, gamma=0.5)
    stops = [s[0] for s in fig.data[0].colorscale]
    assert stops[0] == 0 and stops[-1] == 1 and stops[1] == pytest.approx((1 / 20) ** 2)
    lin = interactive.attention_heatmap(cap, gamma=1)
    assert [s[0] for s in lin.data[0].colorscale][1] == pytest.approx(1 / 20)
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), np.asarray(lin.data[0].z))
    with pytest.raises(ValueError, match="gamma"):
        interactive.attention_heatmap(cap, gamma=0)


# --------------------------------------------------------------------------- head grid
def test_head_grid_panels_equal_each_head(cap):
    fig = interactive.head_grid(cap)
    z = np.asarray(fig.data[0].z)
    cells, gap = fig.layout.meta["cells"], fig.layout.meta["gap"]
    assert cells == cap.seq_len and fig.layout.meta["factor"] == 1
    for layer in range(2):
        for head in range(2):
            r, c = layer * (cells + gap), head * (cells + gap)
            _lower_equal(z[r : r + cells, c : c + cells], cap.attentions[layer, head].numpy())
    assert np.isnan(z[cells : cells + gap]).all()  # the gap between panels is empty
    assert fig.data[0].zmax == pytest.approx(float(cap.attentions.max()))
    assert list(fig.layout.xaxis.ticktext) == ["head 0", "head 1"]
    assert "layer 1 · query 12  wrap" in fig.data[0].y  # hover names layer and token
    # every panel's prompt/generated boundary, drawn as one path: a vertical then a horizontal segment
    (path,) = fig.layout.shapes
    b, r = cap.prompt_len - 0.5, cells + gap
    assert path.type == "path" and path.path.count("M") == 2 * 2 * 2
    assert f"M{r + b},{r + b}L{r + b},{r + cells - 0.5}M{r - 0.5},{r + b}L{r + b},{r + b}" in path.path


def test_head_grid_gpt2_size_long_sequence_is_fast_and_small():
    big = synthetic_capture(seq=520, prompt_len=400, n_layer=12, n_head=12)
    assert big.attentions is not None
    fig = interactive.head_grid(big)  # pooled to 64 cells a side (benchmarks/bench_plots.py times it)
    html = export_bytes(fig, "html")
    assert len(html) < 15e6
    z = np.asarray(fig.data[0].z)
    cells, gap, factor = fig.layout.meta["cells"], fig.layout.meta["gap"], fig.layout.meta["factor"]
    assert factor == 9 and cells == math.ceil(520 / 9)
    # what keeps it quick: one heatmap trace of the pooled panels, not 144 traces of 520 x 520
    assert len(fig.data) == 1 and z.shape == (12 * cells + 11 * gap, 12 * cells + 11 * gap)
    r, c = 11 * (cells + gap), 3 * (cells + gap)
    block = big.attentions[11, 3, 18:27, 9:18].float().mean()
    assert z[r + 2, c + 1] == pytest.approx(float(block), rel=1e-5)


def test_head_grid_leaves_room_for_every_layer_label():
    big = synthetic_capture(seq=24, prompt_len=16, n_layer=12, n_head=12)
    fig = interactive.head_grid(big)
    assert list(fig.layout.yaxis.ticktext)[-2:] == ["layer 10", "layer 11"]
    # Set on the figure itself, so a theme's template (Streamlit's has margin l=0) cannot shrink it.
    assert fig.layout.yaxis.automargin is True and fig.layout.xaxis.automargin is True
    longest = max(char_width(t) for t in fig.layout.yaxis.ticktext)
    assert fig.layout.margin.l >= longest * 0.6 * fig.layout.font.size  # ~0.6 em per character
    assert fig.layout.margin.l == label_margin(["layer 11"])


# --------------------------------------------------------------------------- top-k
def test_topk_values_chosen_and_entropy(cap):
    fig = interactive.topk_steps(cap, k=4)
    heat, chosen, bars = fig.data
    np.testing.assert_allclose(np.asarray(heat.z), cap.raw.topk_logprobs[:, :4].exp().numpy(), rtol=1e-6)
    np.testing.assert_allclose(np.asarray(heat.customdata), cap.raw.topk_logprobs[:, :4].numpy(), rtol=1e-6)
    first = html_label(display_token(cap.label(int(cap.raw.topk_ids[0, 2]))))
    assert heat.text[0][2].startswith(first + "<br>")
    assert list(chosen.x) == [1] * cap.num_steps and list(chosen.y) == list(range(cap.num_steps))
    np.testing.assert_allclose(np.asarray(bars.x), cap.raw.entropy.numpy(), rtol=1e-6)
    assert list(fig.layout.yaxis.ticktext)[0] == html_label(f"0: {display_token(cap.generated_tokens[0])}")


def test_topk_processed_scores_and_errors(cap):
    fig = interactive.topk_steps(cap, scores="processed")
    np.testing.assert_allclose(np.asarray(fig.data[0].z), cap.processed.topk_logprobs.exp().numpy(), rtol=1e-6)
    with pytest.raises(ValueError, match=r"use 1\.\.10"):
        interactive.topk_steps(cap, k=0)


@pytest.mark.parametrize(("steps", "k"), [(8, 10), (60, 5), (200, 10)])
def test_topk_layout_starts_under_the_title(steps, k):
    big = synthetic_capture(seq=20 + steps, prompt_len=20, n_layer=1, n_head=1, k=k)
    fig = interactive.topk_steps(big)
    lay = fig.layout
    # Title pinned to the top; the top margin holds just the title and the subplot heading.
    assert lay.title.yref == "container" and lay.title.y == 1 and lay.title.yanchor == "top"
    assert lay.margin.t == interactive.TOPK_MARGIN["t"] <= 80
    # Fixed ranges: no autorange padding (for the frames' marker size) above the first row.
    assert tuple(lay.yaxis.range) == (steps - 0.5, -0.5) and lay.yaxis.autorange is False
    assert tuple(lay.xaxis.range) == (0.5, k + 0.5) and lay.xaxis.autorange is False
    assert lay.yaxis2.matches == "y"  # the entropy bars share the rows
    # The colour bar starts level with the heatmap's top, at most TOPK_COLORBAR_PX tall.
    bar = fig.data[0].colorbar
    assert bar.y == 1 and bar.yanchor == "top" and bar.yref == "paper" and bar.lenmode == "fraction"
    plot_h = lay.height - lay.margin.t - lay.margin.b
    assert 0 < bar.len <= 1
    assert bar.len * plot_h == pytest.approx(min(plot_h, interactive.TOPK_COLORBAR_PX))


# --------------------------------------------------------------------------- text
def test_text_html_tooltips_list_alternatives(cap):
    html = interactive.text_html(cap, color_by="prob")
    assert "<script" not in html and "http" not in html
    assert html.count('class="insp-tok"') == cap.num_steps
    assert html.count("← chosen") == cap.num_steps  # greedy: the chosen token is in every top 5
    step = cap.step(3)
    for cand in step.top[:5]:
        assert f"{format_prob(cand.prob):>8}  {html_mod.escape(quoted_token(cand.token))}" in html
    assert f"p = {format_prob(step.prob)} (rank {step.rank}), entropy {step.entropy:.3f} nats" in html
    assert "RANDOM WEIGHTS" in html


def test_text_html_escapes_markup_in_tokens():
    small = synthetic_capture(seq=40, prompt_len=10, n_layer=1, n_head=1)
    assert any(t.startswith(" <b>") for t in small.tokens)
    html = interactive.text_html(small)
    assert html.count("<b>") == html.count("← chosen")  # only the tooltips' own bold lines
    assert "&lt;b&gt;" in html


# --------------------------------------------------------------------------- token strip
def test_token_attention_values(cap):
    pos = cap.seq_len - 3
    fig = interactive.token_attention(cap, position=pos)
    want = attention_from(cap.attentions, pos)[:, : pos + 1].numpy()
    np.testing.assert_array_equal(np.asarray(fig.data[0].z), want)
    assert list(fig.data[0].x) == position_labels(cap.tokens)[: pos + 1]
    assert list(fig.data[0].y) == ["layer 0", "layer 1"]
    assert fig.layout.shapes[0].x0 == cap.prompt_len - 0.5


# --------------------------------------------------------------------------- corpus
def test_corpus_box_values_equal_the_summary():
    df = summary_frame(50)
    fig = interactive.corpus_distributions(df, by="emotion", metrics=["chosen_prob_mean", "attn_first_share"])
    groups = fig.layout.meta["groups"]
    assert groups[0] == "no emotion"  # DailyDialog's label order
    assert len(fig.data) == 2 * len(groups)
    for i, metric in enumerate(["chosen_prob_mean", "attn_first_share"]):
        for gi, g in enumerate(groups):
            trace = fig.data[i * len(groups) + gi]
            want = df.loc[df["emotion"] == g, metric].to_numpy()
            np.testing.assert_allclose(np.asarray(trace.y), want)
            assert trace.name == f"{g} (n={len(want)})"


def test_corpus_flags_random_weights_and_missing_columns():
    df = summary_frame(20)
    df.attrs["random_weights"] = True
    assert "RANDOM WEIGHTS" in interactive.corpus_distributions(df).layout.title.text
    with pytest.raises(ValueError, match=r"lacks column\(s\) \['entropy_mean'\]"):
        interactive.corpus_distributions(df.drop(columns=["entropy_mean"]))


# --------------------------------------------------------------------------- export
def test_html_is_self_contained_and_holds_the_data(cap, tmp_path):
    fig = interactive.attention_heatmap(cap)
    out = export_figure(fig, tmp_path / "h.html")
    html = out.read_text(encoding="utf-8")
    assert '<script src="http' not in html and "<script src='http" not in html
    assert "cdn.plot.ly" not in html.split("Plotly.newPlot(")[1]
    assert len(html) > 3_000_000  # plotly.js is embedded
    saved = figure_from_html(html)
    _lower_equal(np.asarray(saved["data"][0]["z"], dtype=np.float32),
                 aggregate_by_mode(cap.attentions, "mean").numpy())
    assert saved["layout"]["meta"]["prompt_len"] == cap.prompt_len
    assert list(saved["data"][0]["x"]) == position_labels(cap.tokens)


def test_html_string_export(cap, tmp_path):
    out = export_figure(interactive.text_html(cap), tmp_path / "t.html")
    assert out.read_text(encoding="utf-8") == interactive.text_html(cap)
    with pytest.raises(ExportError, match="only as .html"):
        export_figure(interactive.text_html(cap), tmp_path / "t.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.html"]


def test_plotly_image_without_kaleido_points_to_matplotlib(cap, tmp_path, monkeypatch):
    fig = interactive.topk_steps(cap)
    monkeypatch.setitem(sys.modules, "kaleido", None)  # import kaleido -> ImportError
    for fmt in ("png", "svg", "pdf"):
        with pytest.raises(ExportError, match="kaleido is not installed.*matplotlib"):
            export_figure(fig, tmp_path / f"t.{fmt}")
    assert list(tmp_path.iterdir()) == []


def test_plotly_image_when_kaleido_fails(cap, tmp_path, monkeypatch):
    fig = interactive.topk_steps(cap)
    monkeypatch.setitem(sys.modules, "kaleido", types.ModuleType("kaleido"))

    def no_browser(self, *a, **k):
        raise RuntimeError("Kaleido requires Google Chrome to be installed")

    monkeypatch.setattr(go.Figure, "to_image", no_browser)
    with pytest.raises(ExportError, match="Chrome.*matplotlib version"):
        export_figure(fig, tmp_path / "t.png")
    assert list(tmp_path.iterdir()) == []


def test_export_bytes_rejects_unknown_things(cap):
    with pytest.raises(ExportError, match="unknown format"):
        export_bytes(interactive.topk_steps(cap), "gif")
    with pytest.raises(ExportError, match="cannot export a dict"):
        export_bytes({"data": []}, "html")


# --------------------------------------------------------------------------- make_figure
def test_make_figure_dispatches_every_kind(cap, tiny):
    import matplotlib.figure

    summary = summary_frame(30)
    extra = {"compare": {"other": cap}, "lens": {"model": tiny}, "logit-attribution": {"model": tiny},
             "attribution": {"model": tiny, "method": "input_x_gradient"}}
    for kind in KINDS:
        src = summary if kind == "corpus" else cap
        fig_i = make_figure(kind, src, interactive=True, **extra.get(kind, {}))
        assert isinstance(fig_i, str if kind in ("text", "attribution") else go.Figure)
        fig_s = make_figure(kind, src, interactive=False, **extra.get(kind, {}))
        assert isinstance(fig_s, matplotlib.figure.Figure)
        assert export_bytes(fig_s, "png")[:4] == b"\x89PNG"


def test_make_figure_errors(cap):
    with pytest.raises(ValueError, match="heatmap, heads, topk, text, token, corpus"):
        make_figure("violin", cap)
    with pytest.raises(ValueError, match=r"option\(s\) \['layer'\] do not apply to the 'topk' figure"):
        make_figure("topk", cap, layer=1)
    with pytest.raises(ValueError, match="needs a capture"):
        make_figure("heatmap", summary_frame(5))
    with pytest.raises(ValueError, match="needs a run summary"):
        make_figure("corpus", cap)
    fig = make_figure("heatmap", cap, interactive=True, layer=None, head=1, agg="max")  # None: default
    np.testing.assert_array_equal(np.nan_to_num(np.asarray(fig.data[0].z)),
                                  cap.attentions[:, 1].amax(0).numpy())


def test_long_sequence_interactive_heatmap(tmp_path):
    big = synthetic_capture(seq=600, prompt_len=450, n_layer=2, n_head=2)
    assert big.attentions is not None
    fig = interactive.attention_heatmap(big, max_labels=40)  # benchmarks/bench_plots.py times it
    html = export_bytes(fig, "html").decode()
    assert [t.type for t in fig.data] == ["heatmap"]  # one trace, no per-cell shapes or annotations
    assert fig.layout.xaxis.nticks == 40  # plotly thins labels to ~40 and shows more as you zoom
    assert "scrollZoom" in html
    saved = figure_from_html(html)
    _lower_equal(np.asarray(saved["data"][0]["z"]), aggregate_by_mode(big.attentions, "mean").numpy())


# --------------------------------------------------------------------------- control characters
def test_control_byte_tokens_are_escaped_in_interactive_labels():
    from inspector._fallback import builtin_model

    byte_cap = builtin_model().generate("User: a\x13b\x00\tz\nAgent:", max_new_tokens=6,
                                        attention_dtype=torch.float32)
    pos = byte_cap.tokens.index("\x13")
    heat = interactive.attention_heatmap(byte_cap)
    assert heat.data[0].x[pos] == f"{pos} \\x13"
    token = interactive.token_attention(byte_cap, position=pos)
    assert f"Attention from '\\x13' (position {pos}" in token.layout.title.text
    topk = interactive.topk_steps(byte_cap)
    labels = [*(t for row in topk.data[0].text for t in row), *topk.layout.yaxis.ticktext, *topk.data[2].customdata]
    assert any("\\x" in t for t in labels)  # a random byte model's top 10 holds control bytes
    assert not [t for t in labels if any(unicodedata.category(c) == "Cc" for c in t)]
    html = interactive.text_html(byte_cap)
    assert "a\\x13b\\x00\tz" in html  # tabs and line breaks stay: the page lays them out
    assert not [c for c in html if unicodedata.category(c) == "Cc" and c not in "\n\t"]
