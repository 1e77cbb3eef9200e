"""``inspector plot``: every kind from the command line, sizes, formats and clear errors."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import matplotlib.image as mpimg
import numpy as np
import pytest
import torch
from plot_helpers import figure_from_html, summary_frame

from inspector._aggregate import aggregate_by_mode
from inspector.cli.main import main
from inspector.plots import KINDS
from inspector.plots.labels import display_token

PROMPT = "User: hey how are you? \nAgent:"


@pytest.fixture(scope="module")
def cap(tiny):
    return tiny.generate(PROMPT, max_new_tokens=8, attention_dtype=torch.float32)


@pytest.fixture(scope="module")
def cap_file(cap, tmp_path_factory):
    return cap.save(tmp_path_factory.mktemp("cap") / "hey.safetensors")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("run")
    summary_frame(48).to_parquet(d / "summary.parquet")
    return d


def _plot(*args: object) -> int:
    return main(["plot", *map(str, args)])


def test_png_of_the_requested_size(cap_file, tmp_path, capsys):
    out = tmp_path / "heat.png"
    assert _plot(cap_file, "--out", out, "--width", 900, "--height", 600, "--dpi", 100) == 0
    assert str(out) in capsys.readouterr().out
    img = mpimg.imread(out)
    assert img.shape[:2] == (600, 900)
    assert float(img[..., :3].std()) > 0.05


def test_default_heatmap_is_the_mean_over_layers_and_heads(cap, cap_file, tmp_path):
    out = tmp_path / "heat.html"
    assert _plot(cap_file, "--out", out) == 0
    saved = figure_from_html(out.read_text(encoding="utf-8"))
    z = np.asarray(saved["data"][0]["z"], dtype=np.float32)
    want = aggregate_by_mode(cap.attentions, "mean").numpy()
    lower = np.tril(np.ones_like(want, dtype=bool))
    np.testing.assert_array_equal(z[lower], want[lower])
    assert "mean over layers and heads" in saved["layout"]["title"]["text"]


def test_layer_head_agg_reach_the_figure(cap, cap_file, tmp_path):
    out = tmp_path / "h.html"
    assert _plot(cap_file, "--kind", "heatmap", "--layer", 1, "--agg", "max", "--out", out) == 0
    z = np.asarray(figure_from_html(out.read_text(encoding="utf-8"))["data"][0]["z"])
    want = cap.attentions[1].amax(0).numpy()
    np.testing.assert_array_equal(np.nan_to_num(z), want)


# corpus, lens, compare and logit-attribution have files of their own
@pytest.mark.parametrize("kind", [k for k in KINDS
                                  if k not in ("corpus", "lens", "compare", "logit-attribution", "attribution")])
def test_every_capture_kind_as_svg(kind, cap, cap_file, tmp_path):
    out = tmp_path / f"{kind}.svg"
    assert _plot(cap_file, "--kind", kind, "--out", out) == 0
    root = ET.parse(out).getroot()
    texts = " ".join("".join(el.itertext()) for el in root.iter() if el.tag.endswith("text"))
    assert "RANDOM WEIGHTS" in texts
    if kind in ("heatmap", "token", "text"):
        assert "hey" in texts and "Agent" in texts
    if kind == "topk":
        assert display_token(cap.label(int(cap.raw.topk_ids[0, 1]))) in texts


def test_text_and_topk_options(cap, cap_file, tmp_path):
    out = tmp_path / "t.html"
    assert _plot(cap_file, "--kind", "text", "--color-by", "entropy", "--out", out) == 0
    html = out.read_text(encoding="utf-8")
    assert f"entropy {float(cap.raw.entropy[0]):.3f} nats" in html and 'class="insp-tip"' in html
    out = tmp_path / "k.html"
    assert _plot(cap_file, "--kind", "topk", "--k", 3, "--out", out) == 0
    z = np.asarray(figure_from_html(out.read_text(encoding="utf-8"))["data"][0]["z"])
    np.testing.assert_allclose(z, cap.raw.topk_logprobs[:, :3].exp().numpy(), rtol=1e-6)


def test_token_position_option(cap, cap_file, tmp_path):
    out = tmp_path / "tok.html"
    assert _plot(cap_file, "--kind", "token", "--position", 5, "--head", 0, "--out", out) == 0
    z = np.asarray(figure_from_html(out.read_text(encoding="utf-8"))["data"][0]["z"])
    np.testing.assert_array_equal(z, cap.attentions[:, 0, 5, :6].numpy())


def test_corpus_from_a_run_folder(run_dir, tmp_path):
    df = summary_frame(48)
    out = tmp_path / "c.html"
    assert _plot(run_dir, "--by", "response_act", "--metrics", "entropy_mean", "--out", out) == 0
    saved = figure_from_html(out.read_text(encoding="utf-8"))
    groups = saved["layout"]["meta"]["groups"]
    assert groups == [g for g in ["inform", "question", "directive", "commissive"] if g in set(df.response_act)]
    for trace, g in zip(saved["data"], groups, strict=True):
        np.testing.assert_allclose(np.asarray(trace["y"], dtype=float),
                                   df.loc[df.response_act == g, "entropy_mean"].to_numpy())
    png = tmp_path / "c.png"
    assert _plot(run_dir, "--kind", "corpus", "--out", png, "--width", 1200, "--height", 500, "--dpi", 100) == 0
    assert mpimg.imread(png).shape[:2] == (500, 1200)


def _error(capsys, *args) -> str:
    assert _plot(*args) == 2
    return capsys.readouterr().err


def test_clear_errors(cap_file, run_dir, tmp_path, capsys):
    out = tmp_path / "x.png"
    assert "valid layers are 0..1" in _error(capsys, cap_file, "--layer", 2, "--out", out)
    assert "valid heads are 0..1" in _error(capsys, cap_file, "--kind", "token", "--head", 9, "--out", out)
    assert "--layer does not apply to --kind topk" in _error(capsys, cap_file, "--kind", "topk", "--layer", 0,
                                                               "--out", out)
    assert "needs a run folder" in _error(capsys, cap_file, "--kind", "corpus", "--out", out)
    assert "is a run folder" in _error(capsys, run_dir, "--kind", "heatmap", "--out", out)
    assert ".png, .svg, .pdf, .html" in _error(capsys, cap_file, "--out", tmp_path / "x.jpeg")
    # A missing folder is made (test_plot_cli_beams.py); one that cannot be made is named.
    assert "cannot make its folder" in _error(capsys, cap_file, "--out", cap_file / "sub" / "x.png")
    assert "no such capture file" in _error(capsys, tmp_path / "missing.safetensors", "--out", out)
    assert "neither run.json nor summary.parquet" in _error(capsys, tmp_path, "--out", out)
    assert "give both --width and --height" in _error(capsys, cap_file, "--width", 500, "--out", out)
    # sizes that could not be drawn in memory, and negative ids, are refused with the bounds, before drawing
    assert "at most 1200" in _error(capsys, cap_file, "--dpi", 100000, "--out", out)
    assert "16 to 20000 pixels" in _error(capsys, cap_file, "--width", 1000000, "--height", 1000000, "--out", out)
    assert "--head must be 0 or more" in _error(capsys, cap_file, "--head", -5, "--out", out)
    assert "--layer must be 0 or more" in _error(capsys, cap_file, "--layer", -1, "--out", out)
    (tmp_path / "taken.png").mkdir()
    assert "taken.png" in _error(capsys, cap_file, "--out", tmp_path / "taken.png")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["taken.png"]  # nothing half-written


def test_run_without_the_needed_columns(tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    summary_frame(10).drop(columns=["emotion", "entropy_mean"]).to_parquet(run / "summary.parquet")
    err = _error(capsys, run, "--out", tmp_path / "c.png")
    assert "lacks column(s) ['emotion', 'entropy_mean']" in err
    assert not (tmp_path / "c.png").exists()


def test_unknown_kind_lists_the_kinds(cap_file, tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        _plot(cap_file, "--kind", "violin", "--out", tmp_path / "x.png")
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert all(k in err for k in KINDS)


def test_run_folder_with_run_json_flags_random_weights(tmp_path):
    import json

    from inspector.runs import RUN_FORMAT, RUN_SCHEMA_VERSION

    run = tmp_path / "run"
    run.mkdir()
    summary_frame(24).to_parquet(run / "summary.parquet")
    doc = {"format": RUN_FORMAT, "schema_version": RUN_SCHEMA_VERSION, "status": "complete",
           "model": {"name": "gpt2", "random_weights": True}}
    (run / "run.json").write_text(json.dumps(doc), encoding="utf-8")
    out = tmp_path / "c.html"
    assert _plot(run, "--out", out) == 0  # a run folder defaults to --kind corpus
    title = figure_from_html(out.read_text(encoding="utf-8"))["layout"]["title"]["text"]
    assert "gpt2: RANDOM WEIGHTS" in title and "by emotion (24 turns)" in title
