"""Atomic file writing: write to a temporary file beside the target, then rename.

Every file the package writes goes through :func:`atomic_path`, which

* leaves the target untouched unless the whole write succeeded (no half-written file);
* gives the new file the mode the user's umask asks for (``mkstemp`` alone makes 0600);
* turns "no space left on device", whichever library reports it and however, into one
  :class:`DiskFullError` naming the target;
* removes the temporaries of earlier writes to the same folder whose writer is gone (a killed
  process cannot clean up after itself), never one that a live writer still uses. Listing a
  folder costs time in proportion to its size (a run folder holds thousands of captures), so a
  process looks at each folder on its first write there and then at most every
  :data:`RESCAN_AFTER_S`: leftovers of a killed process go at the next process's first write.
"""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import socket
import tempfile
import threading
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

#: A temporary of another host (or of an old inspector, whose names carry no writer) is stale after this.
STALE_AFTER_S = 3600.0
#: A folder is looked at for stale temporaries on this process's first write there, then at most this often.
RESCAN_AFTER_S = 60.0
_scanned: dict[str, float] = {}  # folder -> time.monotonic() of this process's last look
_scanned_lock = threading.Lock()
_DISK_FULL_ERRNOS = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
# How libraries that do not raise OSError report it (safetensors, pyarrow, the Rust standard library).
_DISK_FULL_TEXT = re.compile(r"no space left on device|os error 28\b|errno 28\b|disk quota exceeded", re.IGNORECASE)
# ``.{target}.{host tag}-{writer pid}-{mkstemp's random part}.tmp``; before temporaries named their
# writer, ``.{target}.{random part}.tmp``.
_TMP = re.compile(r"\.(?P<target>.+)\.(?P<host>[0-9a-f]{8})-(?P<pid>[0-9]+)-[a-z0-9_]{8}\.tmp")
_OLD_TMP = re.compile(r"[a-z0-9_]{8}")


class DiskFullError(OSError):
    """The disk (or quota) filled up while writing a file; the message names the file."""

    @classmethod
    def for_target(cls, target: Path, detail: str = "") -> DiskFullError:
        message = f"cannot write {target}: the disk is full ({detail or 'no space left'}); free some space or " \
                  "write somewhere else"
        return cls(errno.ENOSPC, message, str(target))

    def __str__(self) -> str:
        return str(self.strerror)


def is_disk_full(exc: BaseException) -> bool:
    """Whether ``exc`` (or an exception it was raised from) reports a full disk or quota."""
    seen = 0
    current: BaseException | None = exc
    while current is not None and seen < 8:
        if isinstance(current, OSError) and current.errno in _DISK_FULL_ERRNOS:
            return True
        if _DISK_FULL_TEXT.search(str(current)):
            return True
        current = current.__cause__ or current.__context__
        seen += 1
    return False


def current_umask() -> int:
    """The process umask, read without changing it where the system allows (other threads may be writing)."""
    with contextlib.suppress(OSError, ValueError), open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    mask = os.umask(0o022)  # pragma: no cover - systems without /proc: the only portable way
    os.umask(mask)  # pragma: no cover
    return mask  # pragma: no cover


@functools.lru_cache(maxsize=1)
def _writer_tag() -> str:
    """This host, shortly: process ids are only comparable between temporaries of one host."""
    return f"{zlib.crc32(socket.gethostname().encode('utf-8', 'replace')):08x}"


def pid_alive(pid: int) -> bool:
    """Whether process ``pid`` exists on this host (``True`` when it cannot be told: keep what it owns)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OSError):
        return True  # exists (another user's process) or cannot tell: keep its file
    return True


def _due_for_scan(folder: Path) -> bool:
    key = os.path.realpath(folder)
    now = time.monotonic()
    with _scanned_lock:
        last = _scanned.get(key)
        if last is not None and now - last < RESCAN_AFTER_S:
            return False
        _scanned[key] = now
        return True


def remove_stale_temporaries(folder: Path, target_name: str | None = None, now: float | None = None) -> list[Path]:
    """Remove the temporaries in ``folder`` that no writer will finish; returns the removed paths.

    A temporary :func:`atomic_path` made on this host is removed when its writing process no
    longer exists; one made on another host when it is older than :data:`STALE_AFTER_S`. For
    ``target_name``, temporaries named the way inspector named them before they carried their
    writer are removed when that old too. Errors (a file another cleaner removed first, a
    read-only folder) are ignored: cleaning is a courtesy, the write goes on.
    """
    tag = _writer_tag()
    now = time.time() if now is None else now
    old_prefix = f".{target_name}." if target_name else None
    removed: list[Path] = []
    try:
        entries = list(os.scandir(folder))
    except OSError:
        return removed
    for entry in entries:
        name = entry.name
        if not (name.startswith(".") and name.endswith(".tmp")):
            continue
        ours = _TMP.fullmatch(name)
        if ours:
            stale = not pid_alive(int(ours["pid"])) if ours["host"] == tag else _older_than(entry, now)
        elif old_prefix and name.startswith(old_prefix) and _OLD_TMP.fullmatch(name[len(old_prefix) : -4]):
            stale = _older_than(entry, now)
        else:
            continue  # not a temporary of ours
        if stale:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(Path(entry.path))
    return removed


def _older_than(entry: os.DirEntry[str], now: float) -> bool:
    try:
        return now - entry.stat(follow_symlinks=False).st_mtime > STALE_AFTER_S
    except OSError:
        return False


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike[str]) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; on success rename it over ``path``.

    On any error the temporary file is removed and ``path`` is left untouched, so a
    reader never sees a half-written file. Raises ``OSError`` with the target named
    when its folder cannot be written, and :class:`DiskFullError` when the disk fills up.
    """
    target = Path(path)
    folder = target.parent if str(target.parent) else Path(".")
    if not folder.is_dir():
        raise OSError(f"cannot write {target}: folder {folder} does not exist")
    if _due_for_scan(folder):
        remove_stale_temporaries(folder, target.name)
    try:
        fd, tmp_name = tempfile.mkstemp(prefix=f".{target.name}.{_writer_tag()}-{os.getpid()}-", suffix=".tmp",
                                        dir=folder)
    except OSError as exc:
        if is_disk_full(exc):
            raise DiskFullError.for_target(target, exc.strerror or str(exc)) from exc
        raise OSError(f"cannot write {target}: {exc.strerror or exc}") from exc
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o666 & ~current_umask())
        os.replace(tmp, target)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, Exception) and not isinstance(exc, DiskFullError) and is_disk_full(exc):
            raise DiskFullError.for_target(target, _first_line(exc)) from exc
        raise


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def write_text_atomic(path: str | os.PathLike[str], text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return Path(path)


def write_bytes_atomic(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically."""
    with atomic_path(path) as tmp:
        tmp.write_bytes(data)
    return Path(path)


def check_writable(path: str | os.PathLike[str], what: str, *, folder: bool = False,
                   example: str = "out.file") -> Path:
    """Refuse an output path that cannot be written, before any expensive work; returns it as a ``Path``.

    A file output (``folder=False``) must not be an existing folder, a folder output not an existing
    file; the folders still to be made must be makeable: their nearest existing ancestor is a folder
    this process may write in.

    Args:
        path: the output as the user gave it.
        what: how the user named it (``"--out"``), the start of every message.
        folder: the output is a folder (a run folder) rather than a file.
        example: a file name suggested inside a folder given for a file.

    Raises:
        ValueError: naming ``what`` and ``path`` and saying what to change.
    """
    p = Path(path).expanduser()
    if folder and p.exists() and not p.is_dir():
        raise ValueError(f"{what} {path} is a file, not a folder; give a folder path")
    if not folder and p.is_dir():
        raise ValueError(f"{what} {path} is a folder; give a file path, e.g. {p / example}")
    parent = p if folder else p.parent
    existing = parent
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        made = "it" if folder else f"its folder {parent}"
        raise ValueError(f"{what} {path}: cannot make {made}: {existing} is a file; choose another path")
    if not os.access(existing, os.W_OK | os.X_OK) or (p.is_file() and not os.access(p, os.W_OK)):
        where = p if p.is_file() else existing
        raise ValueError(f"{what} {path}: cannot write there ({where}: permission denied); choose another path")
    return p
