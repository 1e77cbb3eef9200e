"""Corpus runs on Ray: the same summary as one process, a killed worker retried, resume across backends.

Each test starts (and shuts down) its own local Ray cluster with 2 CPU workers and the tiny
byte-level GPT-2 (random weights). Sampling is on, so every batch's own seed matters: a worker
that ran a batch with other settings or other prompts would change the summary.
"""

from __future__ import annotations

import os
import signal
import sys
from pathlib import Path

import pandas as pd
import pytest
from run_helpers import NUM_TURNS

import inspector
from inspector._capture.settings import GenerationSettings
from inspector.cli.main import main as cli_main
from inspector.runs import RunConfig, load_run, run_corpus
from inspector.runs.ray_backend import RAY_INSTALL_HINT, RayRunner

try:
    import ray.data  # noqa: F401

    HAVE_RAY = True
except ImportError:  # pragma: no cover - depends on the environment
    HAVE_RAY = False

needs_ray = pytest.mark.skipif(not HAVE_RAY, reason="ray[data] is not installed (pip install 'inspector[ray]')")
BATCH = 4
NUM_BATCHES = -(-NUM_TURNS // BATCH)


@pytest.fixture(scope="module")
def cfg(data_dir):
    return RunConfig(data=str(data_dir), batch_size=BATCH, attention="summary",
                     settings=GenerationSettings(max_new_tokens=6, do_sample=True, temperature=1.5, seed=7))


@pytest.fixture(scope="module")
def reference(cfg, tiny_model, tiny_dir, tmp_path_factory):
    """The run in this process, one batch after the other (no Ray)."""
    out = tmp_path_factory.mktemp("single") / "run"
    return run_corpus(cfg, out, tiny_model, model_id=str(tiny_dir), progress=False)


def _rows(run) -> pd.DataFrame:
    return run.summary.drop(columns=["seconds"]).reset_index(drop=True)


def _assert_same_run(run, reference) -> None:
    keys = list(zip(run.summary["dial_id"], run.summary["turn"], strict=True))
    assert len(keys) == len(set(keys)) == NUM_TURNS  # no turn lost or duplicated
    pd.testing.assert_frame_equal(_rows(run), _rows(reference))
    assert run.complete and run.settings["identity"] == reference.settings["identity"]
    parts = sorted(p.name for p in (run.path / "parts").iterdir())
    # every batch's summary part and its head statistics, written by whichever backend ran it
    assert parts == sorted([f"batch-{b:06d}.parquet" for b in range(NUM_BATCHES)]
                           + [f"headstats-{b:06d}.safetensors" for b in range(NUM_BATCHES)])
    for name in parts:
        if name.startswith("headstats-"):
            assert (run.path / "parts" / name).stat().st_size > 0
    for rel in reference.summary["capture_file"]:
        a, b = inspector.load_capture(run.path / rel), inspector.load_capture(reference.path / rel)
        assert a.token_ids.tolist() == b.token_ids.tolist()
        assert a.attentions is not None and b.attentions is not None
        assert (a.attentions == b.attentions).all()
    leftovers = [p for p in run.path.rglob("*.tmp")]
    assert not leftovers


def test_ray_without_ray_installed_says_what_to_install(monkeypatch, tmp_path, capsys, data_dir):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray -> ImportError
    monkeypatch.setitem(sys.modules, "ray.data", None)
    code = cli_main(["run", "--ray", "--model", str(tmp_path / "no-such-model"), "--data", str(data_dir),
                     "--out", str(tmp_path / "run")])
    err = capsys.readouterr().err
    assert code == 2
    assert "pip install 'inspector[ray]'" in err and err.strip().count("\n") == 0
    assert RAY_INSTALL_HINT in err
    assert "no-such-model" not in err  # refused before the model was looked for
    assert not (tmp_path / "run").exists()


def test_workers_without_ray_is_refused(tmp_path, capsys, data_dir):
    code = cli_main(["run", "--workers", "2", "--model", str(tmp_path / "m"), "--data", str(data_dir),
                     "--out", str(tmp_path / "run")])
    assert code == 2 and "--workers and --gpus-per-worker need --ray" in capsys.readouterr().err


@needs_ray
@pytest.mark.slow
def test_cli_ray_run_equals_single_process_run(tiny_dir, data_dir, reference, tmp_path, capsys):
    out = tmp_path / "ray-run"
    code = cli_main(["run", "--ray", "auto", "--workers", "2", "--model", str(tiny_dir), "--random-weights",
                     "--device", "cpu", "--data", str(data_dir), "--batch-size", str(BATCH), "--max-new-tokens", "6",
                     "--do-sample", "--temperature", "1.5", "--seed", "7", "--out", str(out), "--no-progress"])
    assert code == 0, capsys.readouterr().err
    import ray

    assert not ray.is_initialized()  # the local cluster it started is shut down
    _assert_same_run(load_run(out), reference)


class KillOnce:
    """Kill the worker process that reaches ``batch`` the first time (the marker file records it)."""

    def __init__(self, batch: int, marker: Path) -> None:
        self.batch, self.marker = batch, marker

    def __call__(self, b: int) -> None:
        if b == self.batch and not self.marker.exists():
            self.marker.write_text(str(os.getpid()))
            os.kill(os.getpid(), signal.SIGKILL)


@needs_ray
@pytest.mark.slow
def test_killed_worker_is_retried_and_no_turn_is_lost_or_duplicated(cfg, tiny_model, tiny_dir, reference, tmp_path):
    import ray.cloudpickle

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # workers cannot import this test module
    marker = tmp_path / "killed"
    runner = RayRunner.for_model(tiny_model, str(tiny_dir), workers=2, before_batch=KillOnce(3, marker))
    run = run_corpus(cfg, tmp_path / "run", tiny_model, model_id=str(tiny_dir), progress=False, runner=runner)
    assert marker.exists()  # a worker really died at batch 3 ...
    assert runner.pids[3] != int(marker.read_text())  # ... and another process ran it again
    assert sorted(runner.pids) == list(range(NUM_BATCHES))
    _assert_same_run(run, reference)


@needs_ray
@pytest.mark.slow
def test_resume_across_backends(cfg, tiny_model, tiny_dir, reference, tmp_path):
    def stop_after(n: int):
        seen: list[int] = []

        def on_batch(b: int) -> None:
            seen.append(b)
            if len(seen) == n:
                raise KeyboardInterrupt
        return on_batch

    # half on Ray, the rest in this process
    out = tmp_path / "ray-then-local"
    runner = RayRunner.for_model(tiny_model, str(tiny_dir), workers=2)
    with pytest.raises(KeyboardInterrupt):
        run_corpus(cfg, out, tiny_model, model_id=str(tiny_dir), progress=False, runner=runner, on_batch=stop_after(3))
    assert not load_run(out).complete
    resumed_here: list[int] = []
    run = run_corpus(cfg, out, tiny_model, model_id=str(tiny_dir), progress=False, on_batch=resumed_here.append)
    assert 0 < len(resumed_here) <= NUM_BATCHES - 3
    _assert_same_run(run, reference)

    # half in this process, the rest on Ray: only the missing batches are dispatched
    out = tmp_path / "local-then-ray"
    with pytest.raises(KeyboardInterrupt):
        run_corpus(cfg, out, tiny_model, model_id=str(tiny_dir), progress=False, on_batch=stop_after(3))
    runner = RayRunner.for_model(tiny_model, str(tiny_dir), workers=2)
    run = run_corpus(cfg, out, tiny_model, model_id=str(tiny_dir), progress=False, runner=runner)
    assert sorted(runner.pids) == list(range(3, NUM_BATCHES))
    _assert_same_run(run, reference)


def test_batches_hold_turns_of_similar_prompt_length(cfg, tiny_model):
    """The plan (both backends run it) cuts batches from turns sorted by prompt length: less padding."""
    from inspector.runs import plan_run

    plan = plan_run(cfg, tiny_model.tokenizer, tiny_model.context_length)
    length = {it.key: len(tiny_model.tokenizer(it.prompt.text, add_special_tokens=False)["input_ids"])
              for it in plan.items}
    lengths = [[length[it.key] for it in batch] for batch in plan.batches]
    for a, b in zip(lengths, lengths[1:], strict=False):
        assert max(a) <= min(b)
    unsorted = [[length[it.key] for it in plan.items[i : i + BATCH]] for i in range(0, NUM_TURNS, BATCH)]

    def padding(batches):
        return sum(max(b) * len(b) - sum(b) for b in batches)

    assert padding(lengths) < padding(unsorted)


# --------------------------------------------------------------------------- a killed driver cleans up after itself
def _processes_below(root: int) -> dict[int, tuple[str, str]]:
    """``pid -> (start time, command line)`` of every process below ``root``, read from /proc here."""
    table: dict[int, tuple[int, str, str]] = {}
    for p in Path("/proc").iterdir():
        if p.name.isdigit():
            try:
                fields = (p / "stat").read_text().rpartition(")")[2].split()
                cmdline = (p / "cmdline").read_bytes().replace(b"\0", b" ").decode("utf-8", "replace")
            except OSError:
                continue
            table[int(p.name)] = (int(fields[1]), fields[19], cmdline)
    found, todo = {}, [root]
    while todo:
        parent = todo.pop()
        for pid, (ppid, start, cmdline) in table.items():
            if ppid == parent and pid not in found:
                found[pid] = (start, cmdline)
                todo.append(pid)
    return found


def _still_running(pid: int, start: str) -> bool:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    except OSError:
        return False
    return fields[19] == start and fields[0] not in ("Z", "X")


@needs_ray
@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/stat").is_file(), reason="reads the process table from /proc")
def test_a_killed_ray_driver_leaves_no_process_or_temporary_folder(tiny_dir, data_dir, tmp_path):
    import re
    import subprocess
    import time

    out = tmp_path / "run"
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "PYTHONPATH": str(root)}
    log = open(tmp_path / "stderr.txt", "w+")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "inspector.cli.main", "run", "--ray", "auto", "--workers", "2", "--model", str(tiny_dir),
         "--random-weights", "--device", "cpu", "--data", str(data_dir), "--batch-size", "1", "--max-new-tokens",
         "200", "--no-progress", "--out", str(out)],
        stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=tmp_path)
    try:
        deadline = time.monotonic() + 300
        while not any((out / "parts").glob("batch-*.parquet")) and proc.poll() is None:
            assert time.monotonic() < deadline, "the run never got going"
            time.sleep(0.05)
        below = _processes_below(proc.pid)
        assert proc.poll() is None, log.seek(0) or log.read()
        temps = {m.group(1) for _, cmd in below.values()
                 for m in re.finditer(r"(/\S*?/inspector-ray-[^/\s]+)", cmd)}
        assert len(temps) == 1, below  # the local cluster's folder, named in its processes' command lines
        temp = Path(temps.pop())
        assert temp.is_dir() and len(below) >= 4  # gcs, raylet, agents, workers: a real cluster to clean up
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=60) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert not (out / "summary.parquet").exists(), "the run finished before it was killed; make it longer"
    deadline = time.monotonic() + 60  # a bound on the wait, polled: the agents used to outlive it
    alive = {pid: cmd for pid, (start, cmd) in below.items() if _still_running(pid, start)}
    while (alive or temp.exists()) and time.monotonic() < deadline:
        time.sleep(0.2)
        alive = {pid: cmd for pid, (start, cmd) in below.items() if _still_running(pid, start)}
    assert not alive, f"processes of the killed run still running: {sorted(alive.values())}"
    assert not temp.exists(), f"{temp} was left behind"


def test_the_next_local_cluster_removes_folders_whose_driver_is_gone(tmp_path):
    from inspector.runs.ray_backend import remove_dead_clusters

    gone = 2**22 + 1  # above the largest process id Linux (4194304) and macOS (99999) give: no process has it
    dead = tmp_path / f"inspector-ray-{gone}-abc123"
    live = tmp_path / f"inspector-ray-{os.getpid()}-def456"
    other = tmp_path / "inspector-ray-notapid"
    for folder in (dead, live, other):
        (folder / "session_latest").mkdir(parents=True)
    assert remove_dead_clusters(str(tmp_path)) == [dead]
    assert not dead.exists() and live.is_dir() and other.is_dir()


@pytest.mark.parametrize("ending, cleaned", [(b"done", False), (b"", True)], ids=["shut-down", "driver-died"])
def test_the_watcher_cleans_up_only_when_the_driver_dies(tmp_path, ending, cleaned):
    from inspector.runs.ray_backend import watch_driver

    temp = tmp_path / "inspector-ray-1-abc"
    (temp / "session_latest").mkdir(parents=True)
    read, write = os.pipe()
    os.write(write, ending)
    os.close(write)  # the driver's end: closed on exit, however it exits
    with os.fdopen(read, "rb", buffering=0) as pipe:
        assert watch_driver(2**22 + 1, str(temp), pipe=pipe, before={}) is cleaned
    assert temp.exists() is not cleaned
