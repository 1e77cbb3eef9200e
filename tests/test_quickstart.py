"""examples/quickstart.py runs offline as pasted and says which model it loaded and whether its weights are random."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from conftest import ROOT, demo_gguf

SCRIPT = ROOT / "examples" / "quickstart.py"
USER_TURN = "Good morning, sir. Is there a bank near here?"


def _run(code_before: str, args: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess[str]:
    """The script in a fresh interpreter, after ``code_before`` (e.g. hiding the demo model)."""
    argv = [str(SCRIPT), *args]
    code = f"{code_before}\nimport runpy, sys\nsys.argv = {argv!r}\nrunpy.run_path(sys.argv[0], run_name='__main__')"
    env = {**os.environ, "HF_HUB_OFFLINE": "1", **env_extra}
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=600, cwd=ROOT)


def _model_line(stdout: str) -> str:
    lines = [ln for ln in stdout.splitlines() if ln.startswith("loaded: ")]
    assert len(lines) == 1, stdout
    return lines[0]


@pytest.mark.slow
def test_quickstart_on_the_demo_model_sends_a_chat_message(tmp_path):
    if demo_gguf() is None:
        from inspector._locations import DEMO_INSTALL

        pytest.skip(f"the demo model smollm2 is not installed: {DEMO_INSTALL}")
    proc = _run("", ["--model", "smollm2", "--max-new-tokens", "5", "--out", str(tmp_path)], {})
    assert proc.returncode == 0, proc.stderr
    from transformers import AutoTokenizer

    import inspector

    cap = inspector.load_capture(tmp_path / "quickstart.safetensors")
    assert "smollm2" in _model_line(proc.stdout) and "pretrained weights" in _model_line(proc.stdout)
    assert "random weights: no" in proc.stdout and "RANDOM" not in proc.stdout
    assert cap.meta.model == "smollm2" and not cap.meta.random_weights
    # The prompt is the user turn in the model's own chat template, rendered here by transformers directly.
    folder = demo_gguf()
    assert folder is not None
    tok = AutoTokenizer.from_pretrained(folder.parent, gguf_file=folder.name)
    expected = tok.apply_chat_template([{"role": "user", "content": USER_TURN}], tokenize=False,
                                       add_generation_prompt=True)
    assert cap.prompt_text == expected
    assert cap.generated_text in proc.stdout.replace("\\n", "\n") or repr(cap.generated_text) in proc.stdout


@pytest.mark.slow
def test_quickstart_says_when_weights_are_random(gpt2_dir, tmp_path):
    hide_demo = "import inspector._locations as L\nL.find_demo_gguf = lambda: None"
    proc = _run(hide_demo, ["--max-new-tokens", "4", "--out", str(tmp_path)],
                {"INSPECTOR_GPT2_OFFLINE_DIR": str(gpt2_dir), "INSPECTOR_CACHE": str(tmp_path / "cache")})
    assert proc.returncode == 0, proc.stderr
    import inspector

    cap = inspector.load_capture(tmp_path / "quickstart.safetensors")
    if not cap.meta.random_weights:  # a local copy of the trained gpt2 answered: nothing to fall back from
        pytest.skip("gpt2's trained weights are available locally; the random-weights fallback is not used")
    assert "random weights: yes" in proc.stdout and "RANDOM" in _model_line(proc.stdout)
    assert cap.meta.model in _model_line(proc.stdout)
    # GPT-2 has no chat template: the notebook's form.
    assert cap.prompt_text == f"User: {USER_TURN} \nAgent:"
