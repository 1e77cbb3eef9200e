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
from inspector._capture.engine import generate
from inspector.data import build_prompt, chat_text_prompt
from inspector.runs import RunConfig, run_corpus


def reply(text: str) -> Capture:
    model = load_model("smollm2")
    prompt = chat_text_prompt(text, model.tokenizer)
    return model.generate(prompt.text, max_new_tokens=4, layers="0-3", stop_strings="\\n")


def beams(text: str) -> list[Capture]:
    model = load_model("smollm2")
    settings = GenerationSettings(max_new_tokens=4)
    return model.generate([text], settings=settings, num_beams=2, num_return_sequences=2)


def scored(model: inspector.InspectorModel) -> tuple[Capture, list[Capture]]:
    return model.score("User: hi", " there"), model.score(["a", "b"], [" c", " d"])


names = (inspector.load_with_fallback, GenerationSettings, load_capture, attention_head_stats, capture_lens,
         rank_heads, generate, build_prompt, RunConfig, run_corpus)
'''


MISTYPED = '''
from inspector import load_model

model = load_model("gpt2")
model.generate("hi", max_new_token=4)
model.generate("hi", max_new_tokens="4")
'''


def _mypy(tmp_path: Path, code: str) -> subprocess.CompletedProcess[str]:
    user = tmp_path / "user_code.py"
    user.write_text(code, encoding="utf-8")
    return subprocess.run(
        [sys.executable, "-m", "mypy", "--strict", "--follow-imports=silent", "--ignore-missing-imports",
         "--cache-dir", str(tmp_path / "cache"), str(user)],
        cwd=tmp_path, env={"MYPYPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
        timeout=600,
    )


def test_the_typed_overrides_are_the_settings_fields():
    """``generate``'s typed keywords (SettingsOverrides) list exactly GenerationSettings' fields."""
    from dataclasses import fields

    from inspector._capture.overrides import SettingsOverrides
    from inspector._capture.settings import GenerationSettings

    assert set(SettingsOverrides.__annotations__) == {f.name for f in fields(GenerationSettings)}


def test_the_root_is_small_and_every_name_resolves():
    import inspector

    assert len(inspector.__all__) <= 26, inspector.__all__
    for name in inspector.__all__:
        assert getattr(inspector, name) is not None


def test_an_unknown_setting_is_refused_with_the_nearest_name(byte_tiny):
    with pytest.raises(TypeError, match="unknown setting 'max_new_token'; did you mean 'max_new_tokens'"):
        byte_tiny.generate("hi", max_new_token=3)  # type: ignore[call-overload]


def test_keywords_replace_the_fields_of_settings(byte_tiny):
    from inspector._capture.settings import GenerationSettings

    cap = byte_tiny.generate("hi", settings=GenerationSettings(max_new_tokens=5, top_k_logits=3), max_new_tokens=2)
    assert cap.num_steps == 2 and cap.raw.topk_ids.shape[-1] == 3


def test_a_string_prompt_with_several_sequences_asks_for_a_list(byte_tiny):
    with pytest.raises(ValueError, match=r"pass the prompt in a list, \[prompt\]"):
        byte_tiny.generate("hi", max_new_tokens=2, num_beams=2, num_return_sequences=2)
    caps = byte_tiny.generate(["hi"], max_new_tokens=2, num_beams=2, num_return_sequences=2)
    assert isinstance(caps, list) and len(caps) == 2


@pytest.mark.slow
def test_a_misspelt_or_mistyped_setting_is_a_type_error(tmp_path):
    proc = _mypy(tmp_path, MISTYPED)
    assert proc.returncode == 1
    assert 'Unexpected keyword argument "max_new_token"' in proc.stdout or "max_new_token" in proc.stdout, proc.stdout
    assert "user_code.py:6: error" in proc.stdout, proc.stdout


def test_package_is_marked_typed():
    assert (ROOT / "inspector" / "py.typed").is_file()
    assert '"py.typed"' in (ROOT / "pyproject.toml").read_text(encoding="utf-8")


@pytest.mark.slow
def test_public_names_type_check_in_user_code_under_strict_mypy(tmp_path):
    proc = _mypy(tmp_path, USER_CODE)
    assert proc.returncode == 0, proc.stdout + proc.stderr
