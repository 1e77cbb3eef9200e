"""``inspector plot --kind logit-attribution``: the model is loaded from --model, the figure's columns add up to the
model's own logits, --step and --target reach the figure, and a missing model or a wrong option is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plot_helpers import _decode, figure_from_html
from run_helpers import write_byte_model_folder

import inspector
from inspector.cli.main import main


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_byte_model_folder(tmp_path_factory.mktemp("model"))


@pytest.fixture(scope="module")
def im(model_dir):
    return inspector.load_model(model_dir, device="cpu", random_weights=True, seed=0)


@pytest.fixture(scope="module")
def saved(im, tmp_path_factory):
    cap = im.generate("Hello there, how", max_new_tokens=6)
    return cap, cap.save(tmp_path_factory.mktemp("caps") / "a.safetensors")


def _plot(*args) -> int:
    return main(["plot", *map(str, args)])


def _logits(im, cap) -> torch.Tensor:
    with torch.no_grad():
        return im.model(input_ids=cap.token_ids[None]).logits[0, cap.prompt_len - 1:-1].float()


def test_heatmap_and_one_step(im, model_dir, saved, tmp_path):
    cap, path = saved
    out = tmp_path / "la.html"
    assert _plot(path, "--kind", "logit-attribution", "--model", model_dir, "--random-weights", "--out", out) == 0
    fig = figure_from_html(out.read_text(encoding="utf-8"))
    z = np.asarray(_decode(fig["data"][0]["z"]), dtype=np.float64)
    want = _logits(im, cap).gather(1, cap.generated_ids[:, None])[:, 0].numpy()
    np.testing.assert_allclose(z.sum(0), want, atol=1e-3)
    out = tmp_path / "step.html"
    assert _plot(path, "--kind", "logit-attribution", "--model", model_dir, "--random-weights", "--step", -1,
                 "--target", "margin", "--out", out) == 0
    fig = figure_from_html(out.read_text(encoding="utf-8"))
    assert fig["layout"]["meta"]["step"] == cap.num_steps - 1 and fig["layout"]["meta"]["target"] == "margin"
    assert len(fig["data"][0]["y"]) == 10
    png = tmp_path / "step.png"
    assert _plot(path, "--kind", "logit-attribution", "--model", model_dir, "--random-weights", "--step", 0,
                 "--out", png) == 0
    assert png.read_bytes()[:4] == b"\x89PNG"


def test_errors(model_dir, saved, tmp_path, capsys):
    path = saved[1]

    def error(*args) -> str:
        capsys.readouterr()
        assert _plot(path, *args, "--out", tmp_path / "x.png") == 2
        return capsys.readouterr().err

    assert "--kind logit-attribution runs the model" in error("--kind", "logit-attribution")
    assert "--model NAME_OR_PATH" in error("--kind", "logit-attribution")
    assert "step 6 out of range" in error("--kind", "logit-attribution", "--model", model_dir, "--random-weights",
                                          "--step", 6)
    assert "not from this model" in error("--kind", "logit-attribution", "--model", model_dir, "--random-weights",
                                          "--seed", 7)
    assert "--step does not apply to --kind heatmap" in error("--kind", "heatmap", "--step", 1)
    assert "--target does not apply to --kind lens" in error("--kind", "lens", "--target", "margin")
