"""An unavailable ``--device`` is refused before any model loads: in ``load_model`` and every command."""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
import torch

import inspector._model as model_mod
from inspector._devices import refuse_unavailable_device
from inspector.cli.main import main


@pytest.fixture
def cpu_only(monkeypatch):
    """A machine with neither CUDA nor MPS, on Linux."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    monkeypatch.setattr(torch.backends.mps, "is_available", lambda: False)
    monkeypatch.setattr(sys, "platform", "linux")


@pytest.fixture
def no_model_load(monkeypatch):
    """Any model or config load fails the test."""
    from transformers import AutoConfig, AutoModelForCausalLM

    def refuse(*args, **kwargs):
        pytest.fail("a model was loaded although the device is unavailable")

    monkeypatch.setattr(AutoConfig, "from_pretrained", refuse)
    monkeypatch.setattr(AutoModelForCausalLM, "from_pretrained", refuse)
    monkeypatch.setattr(AutoModelForCausalLM, "from_config", refuse)


@pytest.mark.parametrize("device", ["cuda", "cuda:0", "mps"])
def test_load_model_checks_the_device_before_transformers(cpu_only, monkeypatch, gpt2_dir, device):
    from transformers import AutoConfig

    calls: list[tuple[Any, ...]] = []

    def refuse(*a: Any, **k: Any) -> None:
        calls.append(a)
        pytest.fail("loaded")

    monkeypatch.setattr(AutoConfig, "from_pretrained", refuse)
    with pytest.raises(ValueError, match="not available here"):
        model_mod.load_model(gpt2_dir, device=device, random_weights=True)
    assert calls == []


@pytest.mark.parametrize(
    "argv",
    [
        ["capture", "--device", "{d}", "--prompt", "hi"],
        ["doctor", "--device", "{d}"],
        ["run", "--device", "{d}", "--out", "{out}", "--limit", "1"],
        ["dashboard", "--device", "{d}"],
    ],
)
@pytest.mark.parametrize("device", ["mps", "cuda"])
def test_every_command_refuses_an_unavailable_device(cpu_only, no_model_load, monkeypatch, tmp_path, capsys,
                                                     argv, device):
    import inspector.cli.dashboard as dash

    monkeypatch.setattr(dash, "exec_streamlit", lambda *a, **k: pytest.fail("the dashboard was started"))
    out = tmp_path / "run"
    assert main([a.format(d=device, out=out) for a in argv]) == 2
    err = capsys.readouterr().err
    assert f"device '{device}' is not available here" in err
    assert not out.exists()  # nothing written for a run that cannot start


def test_mps_is_refused_off_macos_without_torch(monkeypatch):
    monkeypatch.setattr(sys, "platform", "linux")
    with pytest.raises(ValueError, match="only on macOS"):
        refuse_unavailable_device("mps:0")
    refuse_unavailable_device("cpu")  # nothing to say about the others without torch
    refuse_unavailable_device("cuda")
    monkeypatch.setattr(sys, "platform", "darwin")
    refuse_unavailable_device("mps")


@pytest.mark.slow
@pytest.mark.skipif(sys.platform == "darwin", reason="mps may exist on macOS")
def test_doctor_mps_is_refused_without_importing_torch():
    code = (
        "import sys\nfrom inspector.cli.main import main\n"
        "rc = main(['doctor', '--device', 'mps'])\n"
        "print(rc, 'torch' in sys.modules, 'transformers' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.stdout.split() == ["2", "False", "False"], done.stderr
    assert "only on macOS" in done.stderr
