"""A run folder's live state, read from the folder alone: who holds its lock, how far it got, how fast, how it ended.

:func:`run_status` answers the same for any page or process that looks at the folder: a run
started from the dashboard (:mod:`inspector.runs.background`) or from a terminal shows as
running while a process holds the folder's ``.lock`` (see :mod:`inspector.runs.folder`).
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from inspector.runs.config import RunError
from inspector.runs.folder import EXIT_RECORD, LAUNCH_RECORD, LOCK_FILE, LOG_FILE, RUN_JSON, read_run_json
from inspector.runs.summary import describe_missing, missing_files

#: ``new``: nothing run yet; ``starting``: launched, loading the model (no lock yet); ``running``: a live
#: process holds the lock; ``finished``: run.json complete; ``stopped``: turns on disk, nobody writing
#: (stopped, killed, crashed: the same command resumes it); ``failed``: the command exited with an error.
STATES = ("new", "starting", "running", "finished", "stopped", "failed")
#: Lines of run.log kept in :attr:`RunStatus.log_tail`.
LOG_TAIL_LINES = 12
#: Exit status of an interrupted command (``inspector`` returns 130 on Ctrl-C): a stop, not a failure.
INTERRUPTED = 130

# Processes this process started (``start_run``), reaped on every status read: an exited child that
# nobody waits for stays a zombie, and a zombie still answers ``kill(pid, 0)``.
_CHILDREN: dict[int, subprocess.Popen[bytes]] = {}


@dataclass(frozen=True)
class RunStatus:
    """Where a run folder stands.

    Attributes:
        path: the run folder.
        state: one of :data:`STATES`.
        pid: the process writing the folder (the lock holder; while ``starting``, the launcher).
        started: when the current (or last) session began writing, ISO UTC (run.json ``updated``,
            or the launch time before run.json exists).
        turns_done: turns whose summary part is on disk.
        turns_planned: turns the run selects (``None`` before run.json exists).
        batches_done: summary parts on disk.
        rate: turns per second in the current (or last) session, from its part files' times
            (``None`` until one batch of it is done).
        seconds_left: at ``rate``, for the turns not done (``None`` without a rate).
        exit_code: of the last background launch (negative: killed by that signal; ``None``: unknown,
            still running, or not launched from :mod:`inspector.runs.background`).
        log_tail: the last lines of ``run.log`` (empty without one).
        command: the last background launch's arguments after ``python`` (``None``: none recorded).
        missing: files of a run that run.json records as complete but that are not in the folder
            (relative paths, see :attr:`inspector.runs.load.Run.missing`); such a run is ``stopped``.
    """

    path: Path
    state: str
    pid: int | None = None
    started: str | None = None
    turns_done: int = 0
    turns_planned: int | None = None
    batches_done: int = 0
    rate: float | None = None
    seconds_left: float | None = None
    exit_code: int | None = None
    log_tail: str = ""
    command: tuple[str, ...] | None = None
    missing: tuple[str, ...] = ()

    @property
    def running(self) -> bool:
        """Someone is writing the folder (or is about to): another start must wait."""
        return self.state in ("starting", "running")

    @property
    def fraction(self) -> float:
        """Turns done over turns planned, in [0, 1] (0 before the plan is known)."""
        if not self.turns_planned:
            return 1.0 if self.state == "finished" else 0.0
        return min(1.0, self.turns_done / self.turns_planned)

    def describe(self) -> str:
        """One line for people: state, pid, turns, rate and time left."""
        done = f"{self.turns_done} of {self.turns_planned if self.turns_planned is not None else '?'} turns"
        speed = ""
        if self.rate:
            speed = f", {self.rate:.2f} turns/s"
            if self.seconds_left is not None and self.state == "running":
                speed += f", about {_duration(self.seconds_left)} left"
        since = f", started {self.started}" if self.started else ""
        if self.state == "running":
            return f"running (pid {self.pid}{since}): {done}{speed}"
        if self.state == "starting":
            return f"starting (pid {self.pid}{since}): loading the model and planning the turns"
        if self.state == "finished":
            return f"finished: {done}{speed}"
        if self.state == "failed":
            return f"failed (exit status {self.exit_code}): {done}; see run.log"
        if self.state == "stopped":
            how = f" (exit status {self.exit_code})" if self.exit_code not in (None, 0) else ""
            if self.missing:
                return (f"stopped{how}: {done}; {describe_missing(self.missing)} missing from the folder; the same "
                        "command redoes them")
            return f"stopped{how}: {done}{speed}; the same command resumes it"
        return "not started"


def _duration(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s // 3600}h{s % 3600 // 60:02d}m" if s >= 3600 else (f"{s // 60}m{s % 60:02d}s" if s >= 60 else f"{s}s")


def reap() -> None:
    """Wait for the children of this process that have exited (see ``_CHILDREN``)."""
    for pid, proc in list(_CHILDREN.items()):
        if proc.poll() is not None:
            _CHILDREN.pop(pid, None)


def _alive(pid: int, marker: str | None = None) -> bool:
    """Whether ``pid`` runs (not a zombie) and, where /proc tells, its command line holds ``marker``."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    proc = Path(f"/proc/{pid}")
    if not proc.is_dir():
        return True  # no /proc (macOS): kill(pid, 0) is all there is
    try:
        if (proc / "stat").read_text().rpartition(")")[2].split()[0] in ("Z", "X"):
            return False
        return marker is None or marker in (proc / "cmdline").read_bytes().decode("utf-8", "replace")
    except OSError:
        return False  # gone between the checks


def lock_holder(out: str | os.PathLike[str]) -> tuple[bool, int | None]:
    """``(held, pid)`` of the folder's ``.lock``; ``pid`` is ``None`` where the system does not say.

    Linux lists flock holders in ``/proc/locks`` (pid and inode), which this reads without touching
    the lock. Elsewhere it tries the lock itself for an instant (a writer starting in that instant
    would be refused, and says so).
    """
    lock = Path(out) / LOCK_FILE
    try:
        st = lock.stat()
    except OSError:
        return False, None
    try:
        table = Path("/proc/locks").read_text()
    except OSError:
        return _try_lock(lock), None
    device = f"{os.major(st.st_dev):02x}:{os.minor(st.st_dev):02x}:{st.st_ino}"
    for line in table.splitlines():
        fields = line.split()
        if len(fields) >= 6 and fields[1] == "FLOCK" and fields[5] == device:
            return True, int(fields[4])
    return False, None


def _try_lock(lock: Path) -> bool:
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock to see
        return False
    try:
        with open(lock, "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                return True
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
    except OSError:
        return False
    return False


def read_record(path: Path) -> dict[str, Any] | None:
    """A launch or exit record (``None`` when absent or unreadable: a record is advice, never needed)."""
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return doc if isinstance(doc, dict) else None


def log_tail(out: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last ``lines`` lines of ``run.log`` (progress-bar carriage returns folded)."""
    try:
        with open(out / LOG_FILE, "rb") as fh:
            fh.seek(0, os.SEEK_END)
            fh.seek(max(0, fh.tell() - 16384))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    rows = [row.rstrip("\r").rsplit("\r", 1)[-1] for row in text.split("\n")]
    return "\n".join([row for row in rows if row.strip()][-lines:])


def _timestamp(text: Any) -> float | None:
    try:
        return _dt.datetime.fromisoformat(str(text)).timestamp()
    except ValueError:
        return None


def _parts(out: Path) -> list[tuple[float, int]]:
    """``(mtime, rows)`` of every summary part, oldest first (the row count from the Parquet footer)."""
    import pyarrow.parquet as pq

    found = []
    for p in (out / "parts").glob("batch-*.parquet"):
        try:
            found.append((p.stat().st_mtime, int(pq.read_metadata(p).num_rows)))
        except (OSError, ValueError):
            continue  # being replaced, or damaged: the run itself will say
    return sorted(found)


def _session_start(doc: dict[str, Any] | None) -> float | None:
    """When the run's current (or last) session began: its last resume, else its creation.

    Not ``updated``: a finished run's ``updated`` is its end, after every part, which left no part to
    take a rate from (a test saw ``rate=None`` for a finished run whenever the last part and the end fell
    in different seconds).
    """
    if doc is None:
        return None
    resumed = doc.get("resumed")
    if isinstance(resumed, list) and resumed:
        return _timestamp(resumed[-1])
    return _timestamp(doc.get("created")) or _timestamp(doc.get("updated"))


def _rate(parts: list[tuple[float, int]], session_start: float | None) -> float | None:
    """Turns per second over the parts written since ``session_start`` (one second's resolution)."""
    if session_start is None:
        return None
    recent = [(t, n) for t, n in parts if t >= session_start]
    if len(recent) >= 2 and recent[-1][0] > recent[0][0]:
        return sum(n for _, n in recent[1:]) / (recent[-1][0] - recent[0][0])
    if recent and recent[0][0] > session_start:
        return recent[0][1] / (recent[0][0] - session_start)
    return None


def run_status(out: str | os.PathLike[str]) -> RunStatus:
    """Where the run folder ``out`` stands (see :class:`RunStatus`); a folder that does not exist is ``new``.

    Raises:
        RunError: ``out`` holds a damaged run.json (the message names it).
    """
    out = Path(out)
    reap()
    held, holder = lock_holder(out)
    launch = read_record(out / LAUNCH_RECORD)
    ended = read_record(out / EXIT_RECORD)
    if launch is not None and (ended is None or ended.get("token") != launch.get("token")):
        ended = None
    exit_code = ended.get("exit_code") if ended is not None else None
    launcher_alive = (launch is not None and ended is None and isinstance(launch.get("pid"), int)
                      and _alive(launch["pid"], "inspector.runs.background"))
    doc = read_run_json(out) if (out / RUN_JSON).is_file() else None
    parts = _parts(out) if (out / "parts").is_dir() else []
    identity = (doc or {}).get("identity") or {}
    planned = identity.get("num_turns", ((doc or {}).get("counts") or {}).get("turns"))
    missing = missing_files(out, doc) if not held else ()
    complete = doc is not None and doc.get("status") == "complete" and not missing
    started = (doc or {}).get("updated") or (launch or {}).get("started")
    if launch is not None and doc is not None and _timestamp(launch.get("started")) is not None \
            and (_timestamp(doc.get("updated")) or 0) < (_timestamp(launch.get("started")) or 0):
        started = launch.get("started")  # relaunched, still loading: run.json is the previous launch's
    rate = _rate(parts, _session_start(doc))
    done = sum(n for _, n in parts)
    if held:
        state, pid = "running", holder if holder is not None else (launch or {}).get("pid")
    elif complete:
        state, pid = "finished", None
    elif launcher_alive:
        state, pid = "starting", (launch or {}).get("pid")
    elif isinstance(exit_code, int) and exit_code > 0 and exit_code != INTERRUPTED:
        state, pid = "failed", None
    elif doc is not None or parts or isinstance(exit_code, int):
        state, pid = "stopped", None
    else:
        state, pid = "new", None
    if complete and not held:
        done = int(planned) if isinstance(planned, int) else done
    left = (max(0, planned - done) / rate) if rate and isinstance(planned, int) else None
    command = (launch or {}).get("command")
    return RunStatus(
        path=out, state=state, pid=pid if isinstance(pid, int) else None, started=started, turns_done=done,
        turns_planned=planned if isinstance(planned, int) else None, batches_done=len(parts), rate=rate,
        seconds_left=left, exit_code=exit_code if isinstance(exit_code, int) else None, log_tail=log_tail(out),
        command=tuple(str(a) for a in command) if isinstance(command, list) else None, missing=missing,
    )


def check_not_running(out: str | os.PathLike[str]) -> RunStatus:
    """The folder's status; :class:`RunAlreadyRunning` when a process writes it (or is about to)."""
    status = run_status(out)
    if status.running:
        raise RunAlreadyRunning(status)
    return status


class RunAlreadyRunning(RunError):
    """The run folder is being written by another process; ``status`` says which (pid, since when)."""

    def __init__(self, status: RunStatus):
        pid = f"pid {status.pid}" if status.pid is not None else "pid unknown"
        since = f", started {status.started}" if status.started else ""
        super().__init__(f"this run is already running ({pid}{since}): {status.path}. Stop it first, or wait "
                         "for it to finish")
        self.status = status

