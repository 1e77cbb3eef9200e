"""``inspector capture --ablate ... --ablate-mode ...`` and ``--patch-from CAPTURE --patch L:P``: the flags reach
the capture, the file records them, and bad values are refused before the model loads."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

import inspector
import inspector._model as model_mod
from inspector.cli.main import main

PROMPT = "The cat sat on the mat.\\nB:"
CORRUPT = "The dog ran to the car.\\nB:"


def _capture(argv: list[str]) -> int:
    return main(["capture", "--model", "tiny-test", "--random-weights", "--device", "cpu", "--max-new-tokens", "3",
                 *argv])


def test_ablate_flags_reach_the_capture(monkeypatch, capsys, tmp_path, byte_tiny):
    monkeypatch.setattr(model_mod, "load_model", lambda *a, **k: byte_tiny)
    out = tmp_path / "a.safetensors"
    assert _capture(["--prompt", PROMPT, "--ablate", "L0.H1,L1.attn", "--ablate", "L0.mlp", "--ablate-mode", "mean",
                     "--keep-logits", "--out", str(out)]) == 0
    cap = inspector.load_capture(out)
    assert cap.meta.interventions == {"ablate": ["L0.H1", "L1.attn", "L0.mlp"], "ablate_mode": "mean"}
    same = byte_tiny.generate(PROMPT.replace("\\n", "\n"), max_new_tokens=3, keep_logits=True,
                              ablate=["L0.H1", "L1.attn", "L0.mlp"], ablate_mode="mean")
    assert cap.logits is not None and same.logits is not None
    assert torch.equal(cap.token_ids, same.token_ids) and torch.equal(cap.logits, same.logits)
    capsys.readouterr()


def test_patch_flags_read_the_source_file(monkeypatch, capsys, tmp_path, byte_tiny):
    monkeypatch.setattr(model_mod, "load_model", lambda *a, **k: byte_tiny)
    clean, out = tmp_path / "clean.safetensors", tmp_path / "patched.safetensors"
    assert _capture(["--prompt", PROMPT, "--out", str(clean)]) == 0
    assert _capture(["--prompt", CORRUPT, "--patch-from", str(clean), "--patch", "0:6,1:6", "--keep-logits",
                     "--out", str(out)]) == 0
    cap = inspector.load_capture(out)
    assert cap.meta.interventions["patch"] == [[0, 6], [1, 6]]
    assert cap.meta.interventions["patch_source"]["path"] == str(clean)
    same = byte_tiny.generate(CORRUPT.replace("\\n", "\n"), max_new_tokens=3, keep_logits=True, patch="0:6,1:6",
                              patch_from=inspector.load_capture(clean))
    assert cap.logits is not None and same.logits is not None
    assert torch.equal(cap.logits, same.logits)
    capsys.readouterr()


@pytest.mark.parametrize(("argv", "message"), [
    (["--ablate", "L0.H9x"], "unknown part 'L0.H9x'"),
    (["--ablate", "L0.mlp", "--ablate-mode", "zeros"], "invalid choice: 'zeros'"),
    (["--patch", "0:1"], "--patch needs --patch-from"),
    (["--patch", "0-1", "--patch-from", "x.safetensors"], "not LAYER:POSITION"),
    (["--patch", "0:1", "--patch-from", "missing.safetensors"], "no such capture file"),
    (["--ablate", "L0.mlp", "--continuation", " hi"], "leave them out when scoring"),
])
def test_bad_intervention_flags_are_refused_before_loading(monkeypatch, capsys, tmp_path, argv, message):
    def refuse(*a, **k):
        pytest.fail("the model was loaded before the flags were checked")

    monkeypatch.setattr(model_mod, "load_model", refuse)
    monkeypatch.setattr("inspector._fallback.load_with_fallback", refuse)
    monkeypatch.chdir(tmp_path)
    try:
        rc = _capture([*argv, "--out", str(tmp_path / "x.safetensors")])
    except SystemExit as exc:  # argparse's own refusal (a choice)
        rc = int(exc.code or 0)
    err = capsys.readouterr().err
    assert rc == 2 and message in err and "Traceback" not in err


def test_corpus_runs_refuse_patching_and_ablated_reference_scoring():
    from inspector._capture.settings import GenerationSettings
    from inspector.runs.config import RunConfig

    with pytest.raises(ValueError, match="corpus runs do not patch"):
        RunConfig(settings=GenerationSettings(patch=("0:1",)))
    with pytest.raises(ValueError, match="reference scoring of a corpus run does not ablate"):
        RunConfig(settings=GenerationSettings(ablate=("L0.mlp",)), score_reference=True)
    assert RunConfig(settings=GenerationSettings(ablate=("L0.mlp",))).settings.ablate == ("L0.mlp",)


def test_an_ablated_corpus_run_is_said_on_its_command_line(tmp_path):
    """The command that starts or resumes a run (a background run's child) carries the ablation."""
    from inspector._capture.settings import GenerationSettings
    from inspector.cli.main import build_parser
    from inspector.cli.runs import _config_from_args
    from inspector.runs import RunConfig, RunModel, run_command

    config = RunConfig(data=str(tmp_path), settings=GenerationSettings(ablate=("L0.H1", "L1.mlp"), ablate_mode="mean"))
    argv = run_command(config, tmp_path / "out", RunModel("some/model", random_weights=True, device="cpu"))
    assert "--ablate=L0.H1" in argv and "--ablate-mode=mean" in argv
    assert _config_from_args(build_parser().parse_args(argv)) == config


@pytest.mark.slow
def test_cli_end_to_end_on_the_trained_model(smollm2, tmp_path):
    """Two real ``inspector capture`` processes on SmolLM2: an ablated capture, then one patched from it."""
    base = [sys.executable, "-m", "inspector.cli.main", "capture", "--model", "smollm2", "--device", "cpu",
            "--max-new-tokens", "4"]
    first, second = tmp_path / "a.safetensors", tmp_path / "b.safetensors"
    run = subprocess.run([*base, "--prompt", "The capital of France is", "--ablate", "L3.H*,L5.mlp", "--out",
                          str(first)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    a = inspector.load_capture(first)
    assert a.meta.interventions["ablate"][:2] == ["L3.H0", "L3.H1"] and "L5.mlp" in a.meta.interventions["ablate"]
    assert a.meta.model == "smollm2"
    n = a.prompt_len
    run = subprocess.run([*base, "--prompt", "The capital of Spain is", "--patch-from", str(first), "--patch",
                          f"10:{n - 2}", "--out", str(second)], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0, run.stderr
    b = inspector.load_capture(second)
    assert b.meta.interventions["patch"] == [[10, n - 2]] and b.prompt_len == n
