"""The CLI's capture and doctor commands and the examples, run as a user would."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import demo_gguf

import inspector
from inspector.cli.main import main

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def tiny_dir(tmp_path_factory, gpt2_dir):
    """A folder with a tiny GPT-2 config.json and the real tokenizer files."""
    folder = tmp_path_factory.mktemp("tiny-gpt2")
    config = json.loads((gpt2_dir / "config.json").read_text())
    config.update(n_layer=2, n_head=2, n_embd=32)
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        (folder / name).write_bytes((gpt2_dir / name).read_bytes())
    return folder


def test_capture_command_prints_table_and_writes_file(tiny_dir, tmp_path, capsys):
    out = tmp_path / "c.safetensors"
    rc = main(["capture", "--model", str(tiny_dir), "--random-weights", "--prompt", "User: hi\\nAgent:",
               "--max-new-tokens", "5", "--out", str(out)])
    assert rc == 0
    text = capsys.readouterr().out
    assert "random weights" in text.lower()
    assert "top alternatives" in text and "entropy" in text
    cap = inspector.load_capture(out)
    assert cap.prompt_text == "User: hi\nAgent:" and cap.num_steps == 5
    assert cap.meta.random_weights is True
    for step in cap.steps:  # every step's chosen token is printed in the table
        assert f"{step.step:>4}  " in text


def test_capture_command_bad_input_is_one_line(tiny_dir, tmp_path, capsys):
    rc = main(["capture", "--model", str(tiny_dir), "--random-weights", "--max-new-tokens", "0",
               "--out", str(tmp_path / "x.safetensors")])
    err = capsys.readouterr().err
    assert rc == 2 and "max_new_tokens must be a positive integer" in err and "Traceback" not in err
    assert not (tmp_path / "x.safetensors").exists()


@pytest.mark.slow
def test_capture_command_missing_model_no_traceback(tmp_path):
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "inspector.cli.main", "capture", "--model", "gpt2",
         "--out", str(tmp_path / "c.safetensors")],
        capture_output=True, text=True, env=env, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "'gpt2'" in proc.stderr and "local folder" in proc.stderr


def test_doctor_reports_parity(tiny_dir, tmp_path, capsys):
    report = tmp_path / "doctor.json"
    rc = main(["doctor", "--model", str(tiny_dir), "--random-weights", "--device", "cpu",
               "--max-new-tokens", "4", "--json", str(report)])
    text = capsys.readouterr().out
    assert rc == 0 and "PARITY OK" in text and "max |attention diff|" in text
    data = json.loads(report.read_text())
    assert data["ok"] is True and data["max_attention_diff"] <= 1e-3
    assert data["nan"] == {"cpu": False, "cpu (second copy)": False}


@pytest.mark.slow
def test_notebook_example_runs_offline(gpt2_dir, tmp_path):
    env = {**os.environ, "INSPECTOR_GPT2_OFFLINE_DIR": str(gpt2_dir), "HF_HUB_OFFLINE": "1"}
    proc = subprocess.run(
        [sys.executable, str(ROOT / "examples" / "notebook_flow.py"), "--max-new-tokens", "6", "--out", str(tmp_path)],
        capture_output=True, text=True, env=env, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    if demo_gguf() is not None:  # no real GPT-2 offline: the trained demo model stands in, in its chat form
        assert "Using 'smollm2' instead" in proc.stderr and "<|im_start|>assistant" in proc.stdout
        assert "stacked-mean attention (9," in proc.stdout
    else:
        assert "RANDOM weights" in proc.stderr + proc.stdout and "stacked-mean attention (12," in proc.stdout
    assert "argmax agrees with greedy choice: True" in proc.stdout
    assert "identical attention: True" in proc.stdout
    assert (tmp_path / "notebook_flow.safetensors").is_file()
