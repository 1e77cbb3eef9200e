"""``inspector plot --kind lens|rollout|head-stats|compare``: options reach the figure, clear errors otherwise."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plot_helpers import figure_from_html
from run_helpers import write_byte_model_folder, write_dailydialog

import inspector
from inspector._capture.settings import GenerationSettings
from inspector.analysis import attention_rollout, capture_lens, compare_captures
from inspector.cli.main import main
from inspector.runs import RunConfig, run_corpus


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_byte_model_folder(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def im(model_dir):
    return inspector.load_model(model_dir, device="cpu", random_weights=True, seed=0)


@pytest.fixture(scope="module")
def files(im, tmp_path_factory):
    d = tmp_path_factory.mktemp("caps")
    a = im.generate("Hello there, how", max_new_tokens=8, attention_dtype=torch.float32)
    b = im.generate(
        "Hello there, how", max_new_tokens=8, do_sample=True, seed=1, temperature=3.0, attention_dtype=torch.float32
    )
    return a, b, a.save(d / "a.safetensors"), b.save(d / "b.safetensors")


def _plot(*args) -> int:
    return main(["plot", *map(str, args)])


def _error(capsys, *args) -> str:
    capsys.readouterr()
    assert _plot(*args) == 2
    return capsys.readouterr().err


def _saved(path) -> dict:
    return figure_from_html(path.read_text(encoding="utf-8"))


def test_lens_with_model_layers_and_positions(im, model_dir, files, tmp_path):
    a, _, fa, _ = files
    out = tmp_path / "lens.html"
    assert (
        _plot(
            fa,
            "--kind",
            "lens",
            "--model",
            model_dir,
            "--random-weights",
            "--k",
            2,
            "--layers",
            "0,2",
            "--positions",
            "3:9",
            "--out",
            out,
        )
        == 0
    )
    saved = _saved(out)
    lens = capture_lens(a, im, k=2)
    z = np.asarray(saved["data"][0]["z"], dtype=np.float32)
    np.testing.assert_allclose(z, lens.topk_probs[[0, 2]][:, 3:9, 0].numpy(), atol=1e-5)
    assert saved["layout"]["meta"]["positions"] == list(range(3, 9))


def test_lens_needs_the_matching_model(model_dir, files, tmp_path, capsys):
    fa = files[2]
    assert "--model NAME_OR_PATH" in _error(capsys, fa, "--kind", "lens", "--out", tmp_path / "x.png")
    assert "does not match the capture" in _error(
        capsys, fa, "--kind", "lens", "--model", model_dir, "--random-weights", "--seed", 7, "--out", tmp_path / "x.png"
    )
    assert "--model does not apply" in _error(
        capsys, fa, "--kind", "rollout", "--model", model_dir, "--out", tmp_path / "x.png"
    )


def test_rollout_options_reach_the_figure(files, tmp_path, capsys):
    a, _, fa, _ = files
    out = tmp_path / "roll.html"
    assert _plot(fa, "--kind", "rollout", "--layers", "1", "--heads", "0", "--residual-weight", 0.2, "--out", out) == 0
    z = np.asarray(_saved(out)["data"][0]["z"], dtype=np.float64)
    want = attention_rollout(a.attentions, layers=[1], heads=[0], residual_weight=0.2).numpy()
    lower = np.tril(np.ones_like(want, dtype=bool))
    np.testing.assert_allclose(z[lower], want[lower], atol=1e-6)
    assert "write ids and ranges like '0,3,5-7'" in _error(
        capsys, fa, "--kind", "rollout", "--layers", "x", "--out", tmp_path / "r.png"
    )
    # read as `inspector capture --layers` reads it: ranges too, and a huge one refused before it is expanded
    assert _plot(fa, "--kind", "rollout", "--layers", "0-1", "--heads", "0", "--out", out) == 0
    assert "beyond any model's layers" in _error(
        capsys, fa, "--kind", "rollout", "--layers", "0-999999999999", "--out", tmp_path / "r.png"
    )
    assert "--residual-weight does not apply" in _error(
        capsys, fa, "--kind", "heatmap", "--residual-weight", 0.1, "--out", tmp_path / "r.png"
    )


def test_compare_takes_the_second_capture(files, tmp_path, capsys):
    a, b, fa, fb = files
    out = tmp_path / "cmp.html"
    assert _plot(fa, "--kind", "compare", "--compare", fb, "--out", out) == 0
    saved = _saved(out)
    cmp = compare_captures(a, b)
    np.testing.assert_allclose(np.asarray(saved["data"][0]["y"], dtype=np.float32), cmp.kl.numpy(), atol=1e-6)
    assert _plot(fa, "--kind", "compare", "--compare", fb, "--out", tmp_path / "cmp.png") == 0
    assert "--compare B.safetensors" in _error(capsys, fa, "--kind", "compare", "--out", out)


def test_compare_says_what_it_compared_and_which_settings_differ(files, tmp_path, capsys):
    a, b, fa, fb = files
    out = tmp_path / "cmp.html"
    capsys.readouterr()
    assert _plot(fa, "--kind", "compare", "--compare", fb, "--out", out) == 0
    printed = capsys.readouterr().out
    assert "A vs B: processed distributions (what each run decoded from)" in printed
    assert "warning: settings differ: generation.do_sample False (A) vs True (B)" in printed
    assert "warning: settings differ: generation.temperature 1.0 (A) vs 3.0 (B)" in printed
    assert "processed distributions" in _saved(out)["layout"]["title"]["text"]
    assert _plot(fa, "--kind", "compare", "--compare", fb, "--distributions", "raw", "--out", out) == 0
    assert "A vs B: raw distributions" in capsys.readouterr().out
    assert _saved(out)["layout"]["meta"]["distributions"] == "raw"
    # the same greedy capture twice: nothing differs, no warning
    assert _plot(fa, "--kind", "compare", "--compare", fa, "--out", out) == 0
    assert "warning" not in capsys.readouterr().out


def test_head_stats_of_a_capture_and_of_a_run_group(im, files, tmp_path, capsys):
    fa = files[2]
    out = tmp_path / "hs.html"
    assert _plot(fa, "--kind", "head-stats", "--rows", "generated", "--statistics", "previous,sink", "--out", out) == 0
    assert [t["name"] for t in _saved(out)["data"]] == ["previous", "sink"]
    data = write_dailydialog(tmp_path / "dd")
    cfg = RunConfig(
        settings=GenerationSettings(max_new_tokens=4), data=str(data), limit=5, batch_size=3, attention="summary"
    )
    run = run_corpus(cfg, tmp_path / "run", im, progress=False)
    table = run.head_stats(by="act")
    act = str(table["act"].iloc[0])
    out = tmp_path / "run.html"
    assert (
        _plot(run.path, "--kind", "head-stats", "--by", "act", "--group", act, "--statistics", "entropy", "--out", out)
        == 0
    )
    z = np.asarray(_saved(out)["data"][0]["z"], dtype=np.float32)
    rows = table[table["act"] == act].sort_values(["layer", "head"])
    np.testing.assert_allclose(z.reshape(-1), rows["entropy"].to_numpy(np.float32), atol=1e-6)
    assert _plot(run.path, "--kind", "head-stats", "--out", tmp_path / "whole.png") == 0
    assert "its values" in _error(
        capsys, run.path, "--kind", "head-stats", "--by", "act", "--group", "nonsense", "--out", out
    )
    assert "together" in _error(capsys, run.path, "--kind", "head-stats", "--by", "act", "--out", out)
