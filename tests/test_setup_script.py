"""``scripts/setup.sh`` says each step, about how long it takes, and how long it took; run against a fake Python."""

from __future__ import annotations

import os
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

FAKE_PYTHON = """#!/usr/bin/env bash
echo "$@" >> "$FAKE_LOG"
if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then mkdir -p "$3/bin"; cp "$0" "$3/bin/python"; exit 0; fi
if [ "$1" = "-c" ]; then exit 1; fi  # `import torch`: not installed yet
if [ "$1" = "--version" ]; then echo "Python 3.11.7"; fi
exit 0
"""


@pytest.mark.slow
def test_setup_announces_each_step_with_its_expected_and_actual_time(tmp_path):
    project = tmp_path / "project"
    (project / "scripts").mkdir(parents=True)
    shutil.copy(ROOT / "scripts" / "setup.sh", project / "scripts" / "setup.sh")
    (project / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    fake = tmp_path / "python3"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    log = tmp_path / "calls.log"
    env = {**os.environ, "PYTHON": str(fake), "FAKE_LOG": str(log)}
    first = subprocess.run(["bash", "scripts/setup.sh"], cwd=project, env=env, capture_output=True, text=True,
                           timeout=120)
    assert first.returncode == 0, first.stderr
    lines = first.stderr.splitlines()
    starts = [ln for ln in lines if re.fullmatch(r"setup: .+ \(about .+\)\.\.\.", ln)]
    ends = [ln for ln in lines if re.fullmatch(r"setup: .+: done in \d+ min \d+ s", ln)]
    assert [s.split(" (about")[0] for s in starts] == [e.split(": done in")[0] for e in ends]
    assert len(starts) == 4  # venv, torch, inspector, the demo model
    assert "creating the virtual environment" in starts[0] and "Python 3.11.7" in starts[0]
    assert "installing torch==2.13.0" in starts[1] and "about 3 minutes" in starts[1]
    assert lines[-1] == "setup: .venv is ready"
    calls = log.read_text()
    assert "-m pip install -q -e .[test,lint,ray,gguf]" in calls
    second = subprocess.run(["bash", "scripts/setup.sh"], cwd=project, env=env, capture_output=True, text=True,
                            timeout=120)
    assert second.returncode == 0 and second.stderr == ""  # up to date: nothing to do, nothing said
