"""Corpus runs in the background: the command built from a RunConfig, start, status, stop, kill, resume, refusals."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

import inspector
from inspector._capture.settings import GenerationSettings
from inspector.cli.main import build_parser
from inspector.cli.runs import _config_from_args
from inspector.runs import (
    RunAlreadyRunning,
    RunConfig,
    RunModel,
    load_run,
    resume_run,
    run_command,
    run_corpus,
    run_status,
    start_run,
    stop_run,
)

ROOT = Path(__file__).resolve().parents[1]


def _config(data_dir: Path) -> RunConfig:
    return RunConfig(data=str(data_dir), limit=16, batch_size=2, settings=GenerationSettings(max_new_tokens=6))


@pytest.fixture(scope="module")
def reference(tmp_path_factory, tiny_dir, data_dir):
    """The same run done in this process, uninterrupted (the model loaded here, not by the child)."""
    im = inspector.load_model(tiny_dir, device="cpu", random_weights=True)
    out = tmp_path_factory.mktemp("reference") / "run"
    return run_corpus(_config(data_dir), out, im, progress=False, log=lambda _m: None).summary


def same_summary(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal in every column but the timing."""
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"), check_exact=True)


def wait_for(out: Path, ready, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while True:
        status = run_status(out)
        if ready(status):
            return status
        assert time.monotonic() < deadline, f"timed out; last status: {status.describe()}\n{status.log_tail}"
        time.sleep(0.05)


# --------------------------------------------------------------------------- the command
RUN_CONFIGS = [
    {},
    {"filters": {"act": "question,inform", "emotion": "no emotion", "dial_id": [0, 2, 3]}, "limit": 5,
     "attention": "none", "keep_captures": False, "batch_size": 3},
    {"settings": GenerationSettings(do_sample=True, seed=7, temperature=0.7, top_k=5, top_p=0.9, max_new_tokens=3,
                                    stop_strings=("\n", "User:\t"), repetition_penalty=1.2, keep_value_norms=True),
     "condition": "emotion", "condition_style": "bracket", "context_turns": 1, "template": "plain",
     "max_prompt_tokens": 50},
    {"settings": GenerationSettings(num_beams=3, top_k_logits=4, keep_logits=True, lens_k=2), "score_reference": True,
     "filters": {"has_response": True, "turn": [1]}, "split": "test", "attention": "full"},
]
RUN_IDS = ["defaults", "filters", "sampling", "beams"]


@pytest.mark.parametrize("kw", RUN_CONFIGS, ids=RUN_IDS)
def test_the_command_parses_back_to_the_same_config(kw, tmp_path):
    config = RunConfig(data=str(tmp_path), **kw)
    model = RunModel("some/model", random_weights=True, device="cpu", dtype="bfloat16")
    argv = run_command(config, tmp_path / "out", model)
    args = build_parser().parse_args(argv)  # the real command line reads it
    assert _config_from_args(args) == config
    assert (args.model, args.random_weights, args.device, args.dtype) == ("some/model", True, "cpu", "bfloat16")
    assert args.out == str(tmp_path / "out") and args.progress is False


@pytest.mark.parametrize("kw", RUN_CONFIGS, ids=RUN_IDS)
def test_the_stored_config_reads_back_the_same(kw, tmp_path):
    """What a background run's child starts from: the config through JSON, as write_run_request stores it."""
    from inspector.runs.folder import read_run_request, write_run_request

    config = RunConfig(data=str(tmp_path), **kw)
    write_run_request(tmp_path, config, {"model": "some/model", "random_weights": True})
    stored, model = read_run_request(tmp_path)
    assert stored == config and model == {"model": "some/model", "random_weights": True}
    assert RunConfig.from_dict(config.to_dict()) == config


@pytest.mark.parametrize("layers, heads", [((0, 2), "1"), (slice(0, 2), slice(None, None, -1)),
                                           (slice(-2, None), None)])
def test_a_stored_layer_and_head_selection_reads_back_the_same(layers, heads, tmp_path):
    from inspector.runs.folder import read_run_request, write_run_request

    config = RunConfig(settings=GenerationSettings(layers=layers, heads=heads))
    write_run_request(tmp_path, config, {"model": "m"})
    stored, _ = read_run_request(tmp_path)
    assert stored.settings.layers == config.settings.layers and stored.settings.heads == config.settings.heads


def test_a_stored_config_with_an_unknown_entry_is_refused():
    with pytest.raises(ValueError, match=r"unknown run setting\(s\) \['batchsize'\]"):
        RunConfig.from_dict({"batchsize": 3})
    with pytest.raises(ValueError, match=r"unknown generation setting\(s\) \['max_tokens'\]"):
        RunConfig.from_dict({"settings": {"max_tokens": 3}})


def test_a_stop_string_the_command_line_cannot_say_is_refused(tmp_path):
    config = RunConfig(settings=GenerationSettings(stop_strings=("a\\nb",)))
    with pytest.raises(ValueError, match="backslash"):
        run_command(config, tmp_path / "out", RunModel())


# --------------------------------------------------------------------------- start, watch, stop, resume
@pytest.mark.slow
def test_started_run_finishes_and_matches_an_in_process_run(tmp_path, tiny_dir, data_dir, reference):
    out = tmp_path / "run"
    assert run_status(out).state == "new"
    status = start_run(_config(data_dir), out, RunModel(str(tiny_dir), True, "cpu"), cwd=str(tmp_path))
    assert status.state in ("starting", "running") and status.pid is not None
    seen = {status.state}
    while (status := run_status(out)).running:
        seen.add(status.state)
        time.sleep(0.02)
    assert status.state == "finished", status.log_tail
    assert "running" in seen  # the child held the lock, and the status said so
    status = wait_for(out, lambda s: s.exit_code is not None)  # the supervisor records it a moment later
    assert status.turns_done == status.turns_planned == 16 and status.exit_code == 0
    assert status.rate is not None and status.rate > 0
    run = load_run(out)
    assert run.complete
    same_summary(run.summary, reference)
    assert "wrote" in (out / "run.log").read_text()


@pytest.mark.slow
@pytest.mark.parametrize("how", ["stop", "SIGKILL"])
def test_stopped_or_killed_run_resumes_to_the_uninterrupted_summary(tmp_path, tiny_dir, data_dir, reference, how):
    out = tmp_path / "run"
    config, model = _config(data_dir), RunModel(str(tiny_dir), True, "cpu")
    start_run(config, out, model)
    running = wait_for(out, lambda s: s.state == "running" and s.batches_done >= 2)
    assert running.turns_planned == 16 and 4 <= running.turns_done < 16
    assert running.rate is not None and running.seconds_left is not None
    # a second start of the same run (a second page) is refused, naming the writer
    with pytest.raises(RunAlreadyRunning, match=rf"already running \(pid {running.pid}, started "):
        start_run(config, out, model)
    with pytest.raises(RunAlreadyRunning):
        resume_run(out)
    if how == "stop":
        stopped = stop_run(out)
        assert stopped.exit_code == -signal.SIGTERM
    else:  # a crash: the child dies at once, only the supervisor is left to record it
        os.kill(running.pid, signal.SIGKILL)
        stopped = wait_for(out, lambda s: not s.running)
        assert stopped.exit_code == -signal.SIGKILL
    assert stopped.state == "stopped" and "resumes" in stopped.describe()
    assert not (out / "summary.parquet").exists(), "the run finished before it was stopped; make it longer"
    assert 4 <= stopped.turns_done < 16
    resume_run(out)
    final = wait_for(out, lambda s: not s.running)
    assert final.state == "finished", final.log_tail
    assert "resuming" in final.log_tail
    same_summary(load_run(out).summary, reference)
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


@pytest.mark.slow
def test_a_failing_command_is_failed_with_its_error_in_the_log_tail(tmp_path, tiny_dir):
    out = tmp_path / "run"
    config = RunConfig(data=str(tmp_path / "no-such-dailydialog"), limit=2)
    start_run(config, out, RunModel(str(tiny_dir), True, "cpu"))
    status = wait_for(out, lambda s: not s.running)
    assert status.state == "failed" and status.exit_code == 2
    assert "background run: error:" in status.log_tail and "no-such-dailydialog" in status.log_tail


@pytest.mark.slow
def test_a_run_started_from_a_terminal_shows_as_running_and_stops(tmp_path, tiny_dir, data_dir):
    out = tmp_path / "run"
    argv = run_command(_config(data_dir), out, RunModel(str(tiny_dir), True, "cpu"))
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-m", "inspector.cli.main", *argv], env=env, cwd=tmp_path,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        status = wait_for(out, lambda s: s.state == "running" or proc.poll() is not None)
        assert status.state == "running" and status.pid == proc.pid and status.command is None
        with pytest.raises(RunAlreadyRunning, match=f"pid {proc.pid}"):
            start_run(_config(data_dir), out, RunModel(str(tiny_dir), True, "cpu"))
        stopped = stop_run(out)
        assert proc.wait(timeout=30) == -signal.SIGTERM
        assert stopped.state == "stopped" and stopped.exit_code is None
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def test_a_folder_holding_something_else_is_refused_before_any_process_starts(tmp_path, tiny_dir, data_dir):
    out = tmp_path / "run"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    with pytest.raises(inspector.runs.RunError, match="not an inspector run folder"):
        start_run(_config(data_dir), out, RunModel(str(tiny_dir), True, "cpu"))
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]


# --------------------------------------------------------------------------- status from the folder alone
def test_lock_holder_names_the_process_holding_the_lock(tmp_path):
    import fcntl

    from inspector.runs.status import lock_holder

    assert lock_holder(tmp_path) == (False, None)
    with open(tmp_path / ".lock", "a+") as fh:
        assert lock_holder(tmp_path) == (False, None)  # the file alone is no lock
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        held, pid = lock_holder(tmp_path)
        assert held and pid in (os.getpid(), None)  # None only where /proc/locks is missing
        assert run_status(tmp_path).state == "running"
    assert lock_holder(tmp_path) == (False, None)


def test_progress_rate_and_time_left_come_from_the_part_files(tmp_path):
    """Three parts written 2 s apart (3 turns each) since the run resumed, after one from before: 1.5 turns/s."""
    import datetime as dt
    import json

    from inspector.runs.folder import RUN_FORMAT, RUN_JSON

    resumed = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.timezone.utc)
    # as run_corpus writes it: created an hour earlier, resumed at ``resumed``, updated since (by a
    # batch, or at the end: then ``updated`` is after every part, and the rate must still come from the parts)
    (tmp_path / RUN_JSON).write_text(json.dumps({
        "format": RUN_FORMAT, "schema_version": 1, "status": "running",
        "created": (resumed - dt.timedelta(hours=1)).isoformat(), "resumed": [resumed.isoformat()],
        "updated": (resumed + dt.timedelta(seconds=20)).isoformat(),
        "identity": {"num_turns": 20}, "counts": {"turns": 20}}))
    (tmp_path / "parts").mkdir()
    t0 = resumed.timestamp()
    for b, (rows, when) in enumerate([(5, t0 - 600), (3, t0 + 10), (3, t0 + 12), (3, t0 + 14)]):
        path = tmp_path / "parts" / f"batch-{b:06d}.parquet"
        pd.DataFrame({"x": range(rows)}).to_parquet(path)
        os.utime(path, (when, when))
    status = run_status(tmp_path)
    assert status.state == "stopped" and status.turns_done == 14 and status.turns_planned == 20
    assert status.batches_done == 4
    assert status.rate == pytest.approx(6 / 4)  # the 2nd and 3rd parts since the resume over the 4 s since the 1st
    assert status.seconds_left == pytest.approx(6 / 1.5)
    assert status.fraction == pytest.approx(14 / 20)


def test_a_folder_holding_only_what_a_launch_writes_first_is_still_a_new_run(tmp_path):
    from inspector.runs import check_resumable

    for name in (".lock", "run.log", ".background.json", ".background-exit.json"):
        (tmp_path / name).write_text("")
    assert check_resumable(tmp_path, {}) is None
