"""Validate first, load last; errors worded for the surface that shows them; the hub asked once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import inspector
import inspector._model as model_mod
from inspector.cli.main import main


@pytest.fixture
def no_model_load(monkeypatch):
    """Any model load fails the test: the command must reject its input before loading (~10 s)."""
    def refuse(*args, **kwargs):
        pytest.fail(f"the model was loaded ({args}, {kwargs}) before the input was checked")

    monkeypatch.setattr(model_mod, "load_model", refuse)
    monkeypatch.setattr("inspector._fallback.load_with_fallback", refuse)


def _run(argv, capsys) -> tuple[int, str]:
    rc = main(argv)
    err = capsys.readouterr().err
    assert "Traceback" not in err
    return rc, err


# --------------------------------------------------------------------------- validate first, load last
@pytest.mark.parametrize("argv, expected", [
    (["capture", "--prompt", ""], "--prompt is empty"),
    (["capture", "--prompt", "   "], "--prompt is empty"),
    (["capture", "--out", "x.png"], "--out must end in .safetensors"),
    (["capture", "--max-new-tokens", "0"], "max_new_tokens must be a positive integer"),
    (["doctor", "--prompt", ""], "--prompt is empty"),
    (["doctor", "--max-new-tokens", "0"], "--max-new-tokens must be at least 1"),
])
def test_capture_and_doctor_reject_bad_input_before_loading(no_model_load, capsys, tmp_path, monkeypatch, argv,
                                                            expected):
    monkeypatch.chdir(tmp_path)
    rc, err = _run(argv, capsys)
    assert rc == 2 and expected in err and len(err.strip().splitlines()) == 1


@pytest.mark.parametrize("extra, expected", [
    (["--split", "no-such-split"], "no DailyDialog 'no-such-split' split"),
    (["--filter", "bad=1"], "unknown filter key 'bad'"),
    (["--filter", "emotion=anger", "--filter", "text=zzzzqqqq-no-such-text"], "no DailyDialog validation turns match"),
    (["--limit", "0"], "limit must be a positive integer"),
])
def test_run_rejects_bad_data_and_filters_before_loading(no_model_load, capsys, tmp_path, dd_dir, extra, expected):
    rc, err = _run(["run", "--data", str(dd_dir), "--out", str(tmp_path / "r"), *extra], capsys)
    assert rc == 2 and expected in err
    assert not (tmp_path / "r").exists()


def test_run_that_is_complete_is_not_loaded_again(monkeypatch, capsys, tmp_path, dd_dir, byte_tiny):
    out = tmp_path / "run"
    argv = ["run", "--data", str(dd_dir), "--limit", "2", "--max-new-tokens", "2", "--model", "tiny-test",
            "--random-weights", "--device", "cpu", "--batch-size", "2", "--no-progress", "--out", str(out)]
    monkeypatch.setattr(model_mod, "load_model", lambda *a, **k: byte_tiny)
    assert main(argv) == 0 and json.loads((out / "run.json").read_text())["status"] == "complete"
    capsys.readouterr()

    def refuse(*a, **k):
        pytest.fail("a complete run loaded the model again")

    monkeypatch.setattr(model_mod, "load_model", refuse)
    rc, err = _run(argv, capsys)
    assert rc == 0 and "already complete (2 turns)" in err
    # A different selection against the same folder is still refused, also before any load.
    rc, err = _run([*argv[:-1], str(out), "--limit", "3"], capsys)
    assert rc == 2 and "different command" in err


# --------------------------------------------------------------------------- errors for the surface
@pytest.fixture
def hub_down(monkeypatch, tmp_path):
    monkeypatch.setattr(model_mod, "hub_reachable", lambda timeout=3.0: False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))  # no cached copy of 'gpt2'


def test_python_errors_name_arguments_and_cli_errors_name_flags(hub_down, capsys, tmp_path):
    with pytest.raises(inspector.ModelLoadError) as err:
        inspector.load_model("gpt2", device="cpu")
    python, cli = str(err.value), err.value.cli_message
    assert "random_weights=True" in python and "load_model(" in python
    assert "--random-weights" not in python and "--model" not in python
    assert "--random-weights" in cli and "--model" in cli and "random_weights=True" not in cli
    for text in (python, cli):
        assert "`hf download gpt2 --local-dir gpt2`" in text and "huggingface-cli" not in text
        assert ".." not in text.replace("../", "") and len(text.splitlines()) == 1
    rc, shown = _run(["capture", "--model", "gpt2", "--out", str(tmp_path / "c.safetensors")], capsys)
    assert rc == 2 and shown.strip() == f"inspector capture: error: {cli}"


def test_folder_error_has_no_double_full_stop(tmp_path, gpt2_dir):
    folder = tmp_path / "config-only"
    folder.mkdir()
    for name in ("config.json", "tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (folder / name).write_bytes((gpt2_dir / name).read_bytes())
    with pytest.raises(inspector.ModelLoadError) as err:
        inspector.load_model(folder, device="cpu")
    assert ".." not in str(err.value).replace("../", "") and ".." not in err.value.cli_message.replace("../", "")
    assert "random_weights=True" in str(err.value) and "--random-weights" in err.value.cli_message


def test_fallback_message_names_the_failure_once(no_demo_model, hub_down, monkeypatch):
    import inspector._fallback as fallback

    monkeypatch.setattr(fallback, "default_config_dirs", lambda extra=None: [])
    res = fallback.load_with_fallback("gpt2", device="cpu")
    first = res.message.split("\n\n")[0]
    assert first.startswith("Could not load 'gpt2': it is not a local folder")
    assert first.lower().count("could not load") == 1, first


# --------------------------------------------------------------------------- the hub, asked once
def test_hub_is_asked_once_and_the_answer_reused(monkeypatch):
    import socket

    import inspector._hub as hub

    calls = []

    def connect(address, timeout=None):
        calls.append(address)
        raise OSError("unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setattr(socket, "create_connection", connect)
    hub.forget_hub_check()
    try:
        assert model_mod.hub_reachable() is False and model_mod.hub_reachable() is False
        assert len(calls) == 1
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")  # offline: not asked at all
        assert hub.hub_reachable() is False and len(calls) == 1
    finally:
        hub.forget_hub_check()


def test_model_then_data_ask_the_hub_once(monkeypatch, tmp_path, capsys):
    """`inspector run` without data or model offline: one connection attempt, then one line."""
    import socket

    import inspector._hub as hub

    calls = []

    def connect(address, timeout=None):
        calls.append(address)
        raise OSError("unreachable")

    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("INSPECTOR_DAILYDIALOG_DIR", raising=False)
    monkeypatch.setattr("inspector._locations.find_dailydialog_dir", lambda: None)
    monkeypatch.setattr(socket, "create_connection", connect)
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf-home"))
    hub.forget_hub_check()
    try:
        rc, err = _run(["run", "--out", str(tmp_path / "r")], capsys)
        assert rc == 2 and len(err.strip().splitlines()) == 1 and "--data /path/to/dailydialog" in err
        assert "could not be reached" in err and len(calls) == 1
        assert hub.hub_reachable() is False and len(calls) == 1
    finally:
        hub.forget_hub_check()


# --------------------------------------------------------------------------- one lookup for local copies
def test_gpt2_offline_lookup_order(monkeypatch, tmp_path):
    from inspector._locations import find_gpt2_offline_dir, gpt2_offline_dirs

    (tmp_path / "shared" / "models" / "gpt2-offline").mkdir(parents=True)
    (tmp_path / "shared" / "models" / "gpt2-offline" / "config.json").write_text("{}")
    (tmp_path / "here").mkdir()
    monkeypatch.chdir(tmp_path / "here")
    monkeypatch.setenv("INSPECTOR_GPT2_OFFLINE_DIR", str(tmp_path / "env"))
    dirs = gpt2_offline_dirs(tmp_path / "mine")
    assert dirs[:3] == [tmp_path / "mine", tmp_path / "env", tmp_path / "shared" / "models" / "gpt2-offline"]
    assert find_gpt2_offline_dir() == tmp_path / "shared" / "models" / "gpt2-offline"  # env folder has no config
    (tmp_path / "env").mkdir()
    (tmp_path / "env" / "config.json").write_text("{}")
    assert find_gpt2_offline_dir() == tmp_path / "env"
    assert find_gpt2_offline_dir(need_tokenizer=True) != tmp_path / "env"


def test_conftest_benchmarks_and_examples_use_the_package_lookup():
    root = Path(__file__).resolve().parents[1]
    for rel in ("tests/conftest.py", "benchmarks/_common.py", "examples/notebook_flow.py"):
        text = (root / rel).read_text()
        # the package's lookup, directly or through the fallback loader that uses it
        assert ("inspector._locations import" in text or "inspector._fallback import load_with_fallback" in text
                or "inspector.load_with_fallback(" in text), rel
        assert '"gpt2-offline"' not in text and "shared/models/gpt2-offline\"" not in text, rel


def test_dashboard_launcher_passes_the_found_dailydialog(monkeypatch, tmp_path):
    """`inspector dashboard` without --dailydialog or the variable: the page gets the copy the CLI would use."""
    from browser import free_port

    import inspector.cli.dashboard as cli

    monkeypatch.delenv("INSPECTOR_DAILYDIALOG_DIR", raising=False)
    monkeypatch.setattr("inspector._locations.find_dailydialog_dir", lambda: tmp_path / "dd")
    seen: dict = {}
    monkeypatch.setattr(cli, "exec_streamlit", lambda c, env: seen.update(env=env) or 0)
    assert main(["dashboard", "--port", str(free_port())]) == 0
    assert seen["env"]["INSPECTOR_DAILYDIALOG_DIR"] == str(tmp_path / "dd")
    seen.clear()  # a page shared beyond localhost opens only what is given on the command line
    assert main(["dashboard", "--host", "0.0.0.0", "--port", str(free_port())]) == 0
    assert "INSPECTOR_DAILYDIALOG_DIR" not in seen["env"]
