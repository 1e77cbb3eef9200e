"""``inspector attribute`` and ``inspector plot --kind attribution`` on a tiny model folder, against references."""

from __future__ import annotations

import json
import math

import pytest
import torch
from test_context_attribution import reference_input_x_gradient

from inspector.cli.main import main


@pytest.fixture(scope="module")
def saved(tiny_model, tmp_path_factory):
    cap = tiny_model.generate("The password is 7341. The password is", max_new_tokens=3)
    path = tmp_path_factory.mktemp("attr") / "cap.safetensors"
    cap.save(path)
    return cap, path


def test_attribute_writes_scores_that_match_autograd(tiny_model, tiny_dir, saved, tmp_path):
    cap, path = saved
    out = tmp_path / "sub" / "a.json"
    rc = main(["attribute", str(path), "--method", "input_x_gradient", "--model", str(tiny_dir), "--random-weights",
               "--out", str(out)])
    assert rc == 0
    doc = json.loads(out.read_text())
    assert doc["method"] == "input_x_gradient" and doc["prompt_len"] == cap.prompt_len
    assert doc["token_ids"] == cap.token_ids.tolist()
    ref = reference_input_x_gradient(tiny_model, cap.token_ids, cap.prompt_len)
    for i, r in enumerate(ref):
        row = doc["scores"][i]
        got = torch.tensor(row[: cap.prompt_len + i])
        assert torch.allclose(got, r, atol=1e-4 * float(r.abs().max()) + 1e-7)
        assert all(v is None for v in row[cap.prompt_len + i :])  # not inputs of the step: null
    assert doc["target"] == pytest.approx(cap.raw.chosen_logprob.tolist(), abs=1e-4)


def test_attribute_integrated_gradients_adds_up(tiny_dir, saved, tmp_path):
    _, path = saved
    out = tmp_path / "ig.json"
    assert main(["attribute", str(path), "--model", str(tiny_dir), "--random-weights", "--steps", "16",
                 "--out", str(out)]) == 0
    doc = json.loads(out.read_text())
    assert doc["method"] == "integrated_gradients" and doc["steps"] == 16
    assert doc["rule"] == "adaptive" and doc["tolerance"] == 0.05 and all(n >= 16 for n in doc["nodes"])
    for row, t, b in zip(doc["scores"], doc["target"], doc["baseline_target"], strict=True):
        total = sum(v for v in row if v is not None)
        assert math.isclose(total, t - b, rel_tol=0.05)


def test_attribute_says_which_tokens_ran_out_of_gradient_evaluations(tiny_dir, saved, tmp_path, capsys):
    cap, path = saved
    out = tmp_path / "short.json"
    assert main(["attribute", str(path), "--model", str(tiny_dir), "--random-weights", "--steps", "4",
                 "--max-steps", "4", "--tolerance", "1e-12", "--out", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"{cap.num_steps} of {cap.num_steps} generated tokens (steps 0, 1" in err
    assert "not complete within 1e-12 after --max-steps 4 gradient evaluations" in err
    assert json.loads(out.read_text())["nodes"] == [4] * cap.num_steps


def test_attribute_refuses_bad_options_before_loading(saved, tmp_path, monkeypatch, capsys):
    _, path = saved

    def boom(*args, **kwargs):
        raise AssertionError("a model was loaded")

    monkeypatch.setattr("inspector._model.load_model", boom)
    cases = [
        (["--out", str(tmp_path / "a.csv")], "give a .json file"),
        (["--steps", "0", "--out", str(tmp_path / "a.json")], "--steps must be at least 1"),
        (["--target", "margin", "--out", str(tmp_path / "a.json")], "--target applies to --method logit"),
        (["--method", "logit", "--steps", "8", "--out", str(tmp_path / "a.json")], "do not apply to --method logit"),
        (["--method", "logit", "--tolerance", "0.1", "--out", str(tmp_path / "a.json")],
         "do not apply to --method logit"),
        (["--tolerance", "0", "--out", str(tmp_path / "a.json")], "tolerance must be a number > 0"),
        (["--max-steps", "8", "--out", str(tmp_path / "a.json")], "max_steps must be an integer >= the first nodes"),
    ]
    for extra, message in cases:
        assert main(["attribute", str(path), "--model", "x", *extra]) == 2
        assert message in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["attribute", str(path), "--model", "x", "--method", "lrp", "--out", str(tmp_path / "a.json")])


def test_attribute_refuses_a_capture_of_another_model(tiny_dir, byte_tiny, tmp_path, capsys):
    path = tmp_path / "other.safetensors"
    byte_tiny.generate("Hello", max_new_tokens=2).save(path)
    assert main(["attribute", str(path), "--model", str(tiny_dir), "--random-weights",
                 "--out", str(tmp_path / "a.json")]) == 2
    assert f"the capture was made with {byte_tiny.name!r}" in capsys.readouterr().err
    assert not (tmp_path / "a.json").exists()


def test_plot_kind_attribution_writes_both_formats(tiny_dir, saved, tmp_path):
    cap, path = saved
    for name in ("f.html", "f.png"):
        out = tmp_path / name
        assert main(["plot", str(path), "--kind", "attribution", "--model", str(tiny_dir), "--random-weights",
                     "--step", "1", "--out", str(out)]) == 0
        assert out.stat().st_size > 0
    page = (tmp_path / "f.html").read_text()
    assert "integrated gradients, 32 steps" in page and "step 1" in page
    assert page.count('class="insp-tok"') == cap.prompt_len + 1  # the inputs of step 1
