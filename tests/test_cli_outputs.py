"""Output paths are checked before any model loads or any input is read, and the message names the user's path.

A folder given where a file is written, or a path whose folder cannot be made (a file stands where a
folder must be), used to surface after the model had loaded and generated, naming the writer's
internal temporary file.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import inspector._model as model_mod
from inspector.cli.main import main


@pytest.fixture
def no_model_load(monkeypatch):
    """Any model load fails the test: the command must reject its output path before loading."""
    def refuse(*args, **kwargs):
        pytest.fail(f"the model was loaded ({args}, {kwargs}) before the output path was checked")

    monkeypatch.setattr(model_mod, "load_model", refuse)
    monkeypatch.setattr("inspector._fallback.load_with_fallback", refuse)


def one_error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if line.startswith(f"inspector {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert ".tmp" not in lines[0]  # the user's path, not a temporary file's
    return lines[0]


@pytest.fixture
def a_file(tmp_path) -> Path:
    f = tmp_path / "notes.txt"
    f.write_text("a file, not a folder\n")
    return f


def test_capture_out_that_is_a_folder(no_model_load, tmp_path, capsys):
    folder = tmp_path / "caps.safetensors"
    folder.mkdir()
    assert main(["capture", "--model", str(tmp_path / "no-such-model"), "--out", str(folder)]) == 2
    line = one_error_line(capsys, "capture")
    assert f"--out {folder} is a folder" in line and "no-such-model" not in line
    assert list(folder.iterdir()) == []


def test_capture_out_whose_folder_cannot_be_made(no_model_load, a_file, tmp_path, capsys):
    out = a_file / "sub" / "c.safetensors"
    assert main(["capture", "--model", str(tmp_path / "no-such-model"), "--out", str(out)]) == 2
    line = one_error_line(capsys, "capture")
    assert str(out) in line and f"{a_file} is a file" in line
    assert a_file.read_text() == "a file, not a folder\n"


def test_doctor_json_that_is_a_folder(no_model_load, tmp_path, capsys):
    assert main(["doctor", "--model", str(tmp_path / "m"), "--json", str(tmp_path)]) == 2
    assert f"--json {tmp_path} is a folder" in one_error_line(capsys, "doctor")


def test_plot_out_is_checked_before_the_source_is_read(tmp_path, a_file, capsys):
    folder = tmp_path / "figure.png"
    folder.mkdir()
    source = tmp_path / "no-such-capture.safetensors"
    assert main(["plot", str(source), "--out", str(folder)]) == 2
    line = one_error_line(capsys, "plot")
    assert f"--out {folder} is a folder" in line and str(source) not in line
    out = a_file / "figs" / "x.html"
    assert main(["plot", str(source), "--out", str(out)]) == 2
    line = one_error_line(capsys, "plot")
    assert str(out) in line and f"{a_file} is a file" in line


def test_run_out_whose_folder_cannot_be_made(no_model_load, a_file, tmp_path, data_dir, capsys):
    out = a_file / "runs" / "r1"
    assert main(["run", "--model", str(tmp_path / "no-such-model"), "--data", str(data_dir),
                 "--out", str(out)]) == 2
    line = one_error_line(capsys, "run")
    assert str(out) in line and f"{a_file} is a file" in line and "no-such-model" not in line


def test_api_run_corpus_refuses_the_folder_before_generating(a_file, tiny_model, data_dir):
    from inspector._capture.settings import GenerationSettings
    from inspector.runs import RunConfig, RunError, run_corpus

    calls: list[int] = []
    handle = tiny_model.model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        with pytest.raises(RunError, match=f"{a_file} is a file"):
            run_corpus(RunConfig(data=str(data_dir), limit=2, settings=GenerationSettings(max_new_tokens=2)),
                       a_file / "run", tiny_model, progress=False)
    finally:
        handle.remove()
    assert calls == []
