"""Corpus runs in the background: start a run as a child process that outlives its page, stop, resume.

:func:`start_run` stores the :class:`~inspector.runs.config.RunConfig` and the model in the folder
(:func:`~inspector.runs.folder.write_run_request`), and the child (:mod:`inspector.runs.child`) runs
from that stored config with the public API: the command identity is the one ``inspector run``
computes for the same settings, so either resumes a run the other started. The child runs in a
session of its own (a page reload, a Streamlit rerun or the server's exit do not end it) under a
small supervisor (this module run as a script) that records its exit status in the folder; its
output goes to ``run.log`` in the folder. What the run is doing is read from the folder alone by
:func:`inspector.runs.status.run_status`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from inspector._atomic import write_text_atomic
from inspector.runs.child import CHILD_MODULE
from inspector.runs.config import RunConfig, RunError
from inspector.runs.folder import (
    EXIT_RECORD,
    LAUNCH_RECORD,
    LOG_FILE,
    RUN_REQUEST,
    FolderLocked,
    check_resumable,
    command_identity,
    folder_lock,
    now,
    read_run_request,
    write_run_request,
)
from inspector.runs.status import (
    _CHILDREN,
    RunAlreadyRunning,
    RunStatus,
    _alive,
    check_not_running,
    read_record,
    run_status,
)

#: What the supervisor's command line holds (how a live launcher is told from a reused pid).
SUPERVISOR_MODULE = "inspector.runs.background"
#: Seconds :func:`stop_run` waits after SIGTERM before it sends SIGKILL.
STOP_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RunModel:
    """The model a background run loads, named as ``inspector run`` names it.

    Attributes:
        model: hub id or local folder (``--model``).
        random_weights: build it from the folder's config.json with random weights (``--random-weights``).
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps`` (``--device``).
        dtype: ``float32``, ``bfloat16``, ``float16`` or ``None`` (the CLI's default; ``--dtype``).
    """

    model: str = "gpt2"
    random_weights: bool = False
    device: str = "auto"
    dtype: str | None = None


def _code_path(env: Mapping[str, str] | None) -> dict[str, str]:
    """``env`` (default: this process's) with this inspector's folder first on PYTHONPATH: the child runs this code."""
    root = str(Path(__file__).resolve().parents[2])  # the folder holding this `inspector` package
    out = dict(os.environ if env is None else env)
    out["PYTHONPATH"] = os.pathsep.join([root, *[p for p in out.get("PYTHONPATH", "").split(os.pathsep) if p]])
    out.setdefault("PYTHONUNBUFFERED", "1")
    return out


@contextlib.contextmanager
def _launching(out: Path) -> Iterator[None]:
    """Hold the folder's lock while a launch is decided and recorded, so two pages cannot both start it."""
    with contextlib.ExitStack() as stack:
        try:
            stack.enter_context(folder_lock(out))
        except FolderLocked:
            raise RunAlreadyRunning(run_status(out)) from None
        yield


def _launch(out: Path, env: Mapping[str, str] | None, cwd: str | None,
            request: tuple[RunConfig, RunModel] | None = None) -> RunStatus:
    """Start the child for the folder's stored request (first storing ``request`` when given)."""
    check_not_running(out)
    command = ["-m", CHILD_MODULE, str(out)]
    with _launching(out):
        launch = read_record(out / LAUNCH_RECORD)
        ended = read_record(out / EXIT_RECORD)
        if (launch is not None and isinstance(launch.get("pid"), int)
                and (ended is None or ended.get("token") != launch.get("token"))
                and _alive(launch["pid"], SUPERVISOR_MODULE)):
            busy = True  # another page launched it a moment ago
        else:
            busy = False
            if request is not None:
                write_run_request(out, request[0], asdict(request[1]))
            _spawn(out, command, env, cwd)
    if busy:
        raise RunAlreadyRunning(run_status(out))
    return run_status(out)


def _spawn(out: Path, command: Sequence[str], env: Mapping[str, str] | None, cwd: str | None) -> None:
    """Start the supervisor and ``python COMMAND`` (output to run.log) and record the launch; the caller holds
    the lock."""
    token = uuid.uuid4().hex
    with contextlib.suppress(FileNotFoundError):
        (out / EXIT_RECORD).unlink()
    child = [sys.executable, *command]
    supervisor = [sys.executable, "-m", SUPERVISOR_MODULE, "--token", token,
                  "--exit-record", str((out / EXIT_RECORD).resolve()), "--", *child]
    with open(out / LOG_FILE, "ab") as log:
        log.write(f"--- {now()}: python {shlex.join(command)}\n".encode())
        log.flush()
        proc = subprocess.Popen(supervisor, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                cwd=cwd, env=_code_path(env), start_new_session=True)
    _CHILDREN[proc.pid] = proc
    write_text_atomic(out / LAUNCH_RECORD, json.dumps(
        {"token": token, "pid": proc.pid, "command": list(command), "cwd": cwd or os.getcwd(),
         "started": now()}, indent=2))


def start_run(config: RunConfig, out: str | os.PathLike[str], model: RunModel, *,
              env: Mapping[str, str] | None = None, cwd: str | None = None) -> RunStatus:
    """Start a run of ``config`` into ``out`` in the background and return its status.

    The same call on a stopped run resumes it (the run folder's own resume). The child's output
    goes to ``out/run.log``; ``env`` (default: this process's environment) and ``cwd`` are the
    child's, with this inspector first on its ``PYTHONPATH``.

    Raises:
        RunAlreadyRunning: a process writes ``out`` (its pid and start time are in the message).
        RunMismatchError: ``out`` holds a run started with another command.
        RunError, ValueError: bad settings, or ``out`` is not a run folder; before any process starts.
    """
    from inspector._devices import dtype_name, resolve_device, resolve_dtype

    out = Path(out)
    if RunConfig.from_dict(json.loads(json.dumps(config.to_dict()))) != config:
        raise ValueError("this run config does not read back the same from JSON (a filter value that is neither "
                         "a string, a number, a bool nor a list of them?); simplify it")
    check_not_running(out)  # before the identity: a running run is the news, whatever its command
    device = resolve_device(model.device)
    identity = command_identity(config, model.model, model.random_weights, device.type,
                                dtype_name(resolve_dtype(model.dtype, device)))
    check_resumable(out, identity)
    out.mkdir(parents=True, exist_ok=True)
    return _launch(out, env, cwd, (config, model))


def resume_run(out: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> RunStatus:
    """Start the folder's stored run again (in its last launch's directory); a finished run is only read.

    Raises:
        RunAlreadyRunning: a process writes ``out``.
        RunError: no background launch is recorded (say the command that started it instead).
    """
    out = Path(out)
    status = check_not_running(out)
    if status.state == "finished":
        return status
    if not (out / RUN_REQUEST).is_file():
        raise RunError(f"{out} records no background launch; resume it with the command that started it "
                       "(run.json, 'command')")
    read_run_request(out)  # readable, before any process starts
    launch = read_record(out / LAUNCH_RECORD) or {}
    return _launch(out, env, launch.get("cwd"))


def _signal(target: int, group: bool, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError):
        (os.killpg if group else os.kill)(target, sig)


def stop_run(out: str | os.PathLike[str], timeout: float = STOP_TIMEOUT_S) -> RunStatus:
    """Stop the run writing ``out``: SIGTERM, then wait (SIGKILL after ``timeout`` s); returns the status after.

    A run launched by :func:`start_run` is stopped with its whole process group (the supervisor and
    the child run); one started elsewhere (a terminal) gets the signal alone. Nothing is lost
    but the batch in progress: :func:`resume_run` (or the same command) continues.

    Raises:
        RunError: it runs, but this system does not say which process holds the lock.
    """
    out = Path(out)
    status = run_status(out)
    if not status.running:
        return status
    launch = read_record(out / LAUNCH_RECORD) or {}
    supervisor = launch.get("pid") if isinstance(launch.get("pid"), int) else None
    if supervisor is not None and not _alive(supervisor, SUPERVISOR_MODULE):
        supervisor = None
    if supervisor is not None and status.pid is not None and status.pid != supervisor:
        with contextlib.suppress(OSError):
            if os.getpgid(status.pid) != supervisor:
                supervisor = None  # the lock holder is not of that launch (a terminal's run)
    target, group = (supervisor, True) if supervisor is not None else (status.pid, False)
    if target is None:
        raise RunError(f"{out} is being written, but this system does not say by which process; stop it where "
                       "it was started")
    for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 10.0)):
        _signal(target, group, sig)
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            status = run_status(out)
            if not status.running:
                return status
            time.sleep(0.05)
    return run_status(out)


def _supervise(argv: Sequence[str] | None = None) -> int:
    """Run the command after ``--`` and write its exit status to ``--exit-record`` (the supervisor's main)."""
    p = argparse.ArgumentParser(prog=f"python -m {SUPERVISOR_MODULE}")
    p.add_argument("--token", required=True)
    p.add_argument("--exit-record", required=True)
    p.add_argument("command", nargs=argparse.REMAINDER)
    args = p.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    # A stop signals the whole group: the child ends itself; the supervisor stays to record how.
    for sig in (signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        signal.signal(sig, lambda *_: None)
    code = subprocess.Popen(command).wait()
    write_text_atomic(args.exit_record, json.dumps({"token": args.token, "exit_code": code, "ended": now()}))
    return 0 if code == 0 else 1


if __name__ == "__main__":  # pragma: no cover - the supervisor process
    sys.exit(_supervise())
