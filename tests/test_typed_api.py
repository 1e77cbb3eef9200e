"""The public names type-check in a user's code under ``mypy --strict`` (the package ships ``py.typed`` and its
lazy tables re-export every name explicitly to type checkers)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

USER_CODE = '''
import inspector
from inspector import Capture, GenerationSettings, load_capture, load_model
from inspector.analysis import attention_head_stats, capture_lens, rank_heads
from inspector.capture import generate
from inspector.data import build_prompt, chat_text_prompt
from inspector.runs import RunConfig, run_corpus


def reply(text: str) -> Capture:
    model = load_model("smollm2")
    prompt = chat_text_prompt(text, model.tokenizer)
    cap = model.generate(prompt.text, max_new_tokens=4)
    assert isinstance(cap, Capture)
    return cap


names = (inspector.load_with_fallback, GenerationSettings, load_capture, attention_head_stats, capture_lens,
         rank_heads, generate, build_prompt, RunConfig, run_corpus)
'''


def test_package_is_marked_typed():
    assert (ROOT / "inspector" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


@pytest.mark.slow
def test_public_names_type_check_in_user_code_under_strict_mypy(tmp_path):
    user = tmp_path / "user_code.py"
    user.write_text(USER_CODE, encoding="utf-8")
    proc = subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--ignore-missing-imports",
         "--cache-dir", str(tmp_path / "cache"), str(user)],
        cwd=tmp_path, env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
