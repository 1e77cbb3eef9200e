"""The run folder protocol: its layout, identity and run.json, the lock, stale temporaries, named writes.

A run folder (``runs/NAME/``) holds::

    run.json                      settings, model, versions, counts, status (running/complete)
    summary.parquet               one row per turn, sorted by (dial_id, turn); written at the end
    parts/batch-000012.parquet    the summary rows of batch 12: written last, it marks the batch done
    captures/00012-003.safetensors  one capture per turn (dial_id 12, turn 3), unless --no-captures;
                                    each loads with :func:`inspector.load_capture`
    .lock                         held (flock) by the process writing the folder
    run.log, .background*.json    a run started in the background: its output, what it runs (the config and
                                  model its child starts from), its launch and exit records

A batch's captures are written first, then its summary part; every file is written
atomically (temporary file + rename). A run killed at any moment (Ctrl-C or SIGKILL) and
started again with the same command redoes only the batches without a part, with exactly
the same batch composition, so the final ``summary.parquet`` equals that of an
uninterrupted run (except the ``seconds`` timing column) and holds no duplicated or
half-written rows. A different command against an existing run folder is refused
(:class:`~inspector.runs.config.RunMismatchError`), naming what differs; the same command
against a complete run writes nothing.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import json
import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from inspector._atomic import check_writable, write_text_atomic
from inspector.data.prompts import template_identity
from inspector.runs.config import RunConfig, RunError, RunMismatchError

RUN_FORMAT = "inspector.run"
RUN_SCHEMA_VERSION = 1
RUN_JSON = "run.json"
SUMMARY_FILE = "summary.parquet"
#: What a run started in the background (:mod:`inspector.runs.background`) writes beside it: the launch
#: (command, supervisor pid, time), how it ended (exit status), and the command's output.
LAUNCH_RECORD = ".background.json"
EXIT_RECORD = ".background-exit.json"
#: What a background run's child runs: ``{"config": RunConfig.to_dict(), "model": {...}}``.
RUN_REQUEST = ".background-run.json"
LOG_FILE = "run.log"
#: Held (flock) by the process writing the folder, and for an instant by a launch being decided.
LOCK_FILE = ".lock"
#: Files a run folder may hold before its run.json: the lock, and what a background launch writes first.
LAUNCH_FILES = (LOCK_FILE, LAUNCH_RECORD, EXIT_RECORD, RUN_REQUEST, LOG_FILE)
#: run.json entries that hold a JSON object when present.
_OBJECT_ENTRIES = ("identity", "counts", "model", "generation", "prompt", "storage", "versions")


def now() -> str:
    """The current UTC time as recorded in run.json."""
    return _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")


def _model_id(name: str) -> str:
    p = Path(name).expanduser()
    return str(p.resolve()) if p.is_dir() else name


def command_identity(config: RunConfig, model: str, random_weights: bool, device: str, dtype: str,
                     tokenizer: Any = None) -> dict[str, Any]:
    """What must match to resume a run.

    Everything is known before the model is loaded except what the ``auto`` prompt template resolves
    to: without ``tokenizer`` its entry is ``{"requested": "auto"}`` (no ``"name"``), which
    :func:`check_resumable` lets pass; with the model's tokenizer it is the resolved style (see
    :func:`~inspector.data.prompts.template_identity`).
    """
    return {
        "split": config.split,
        "filters": {k: (list(v) if isinstance(v, (list, tuple, set)) else v)
                    for k, v in sorted(config.filters.items())},
        "limit": config.limit,
        "batch_size": config.batch_size,
        "context_turns": config.context_turns,
        "template": template_identity(config.template, tokenizer),
        "max_prompt_tokens": config.max_prompt_tokens,
        "attention": config.attention,
        "keep_captures": config.keep_captures,
        "generation": config.settings.to_dict(),
        "model": _model_id(model),
        "random_weights": bool(random_weights),
        "device": device,
        "dtype": dtype,
        "research": config.research,  # None when off; older folders have no entry (see check_resumable)
    }


def _generation_defaults() -> dict[str, Any]:
    from inspector._capture.settings import GenerationSettings

    return GenerationSettings().to_dict()


def _diff(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    out = []
    for k in sorted(set(old) | set(new)):
        a, b = old.get(k, "<unset>"), new.get(k, "<unset>")
        if a == "<unset>" and prefix == "generation." and _generation_defaults().get(k, "<unset>") == b:
            continue  # a setting added after the run started, left at its default: the same command
        if isinstance(a, Mapping) and isinstance(b, Mapping):
            out += _diff(a, b, f"{prefix}{k}.")
        elif json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            out.append(f"{prefix}{k}: {a!r} -> {b!r}")
    return out


def read_run_json(path: str | os.PathLike[str]) -> dict[str, Any]:
    """The run.json of a run folder, checked (``RunError`` naming the file when missing, unreadable or not a run)."""
    f = Path(path) / RUN_JSON
    if not f.is_file():
        raise RunError(f"{path} is not an inspector run folder (no run.json)")
    try:
        doc = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:  # UnicodeDecodeError and JSONDecodeError are ValueErrors
        raise RunError(f"{f}: unreadable run.json ({exc})") from exc
    if not isinstance(doc, dict):
        raise RunError(f"{f}: not an inspector run.json (a JSON {type(doc).__name__}, not an object)")
    if doc.get("format") != RUN_FORMAT:
        raise RunError(f"{f}: not an inspector run.json (format {doc.get('format')!r})")
    version = doc.get("schema_version", 0)
    if isinstance(version, bool) or not isinstance(version, int):
        raise RunError(f"{f}: schema_version {version!r} is not an integer; the file was modified")
    if version > RUN_SCHEMA_VERSION:
        raise RunError(f"{f}: run schema version {version} is newer than this inspector reads")
    for key in _OBJECT_ENTRIES:
        if doc.get(key) is not None and not isinstance(doc[key], dict):
            raise RunError(f"{f}: {key!r} must be a JSON object, not {type(doc[key]).__name__}; the file was modified")
    if doc.get("status") is not None and not isinstance(doc["status"], str):
        raise RunError(f"{f}: 'status' must be a string; the file was modified")
    return doc


def check_resumable(out: str | os.PathLike[str], identity: Mapping[str, Any]) -> dict[str, Any] | None:
    """Refuse a folder that is not a run, or a run started with a different command.

    Returns the existing run.json, or ``None`` for a new or empty folder.

    Raises:
        RunMismatchError: naming every setting that differs.
        RunError: the path is a file, a folder that cannot be made, or a non-empty folder that is not a run.
    """
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise RunError(f"{out} exists and is not a folder")
    if not out.exists():
        try:
            check_writable(out, "run folder", folder=True)
        except ValueError as exc:
            raise RunError(str(exc)) from None
        return None
    if not (out / RUN_JSON).is_file():
        if any(p.name not in LAUNCH_FILES for p in out.iterdir()):
            raise RunError(f"{out} is not empty and is not an inspector run folder; choose another --out")
        return None
    doc = read_run_json(out)
    # a folder written before the research options existed ran without them
    old = {"research": None, **(doc.get("identity") or {})}
    new = {**old, **identity}
    old_template, new_template = old.get("template"), new.get("template")
    if isinstance(old_template, Mapping) and isinstance(new_template, Mapping):
        if "name" not in new_template:  # "auto" before the tokenizer is loaded: checked again once it is
            new_template = old_template
        # "auto" and the style it resolved to name the same prompts
        old = {**old, "template": {k: v for k, v in old_template.items() if k != "requested"}}
        new = {**new, "template": {k: v for k, v in new_template.items() if k != "requested"}}
    diffs = _diff(old, new)
    if diffs:
        raise RunMismatchError(
            f"{out} holds a run started with a different command ({'; '.join(diffs)}). Rerun the original "
            "command to resume it, or choose another --out folder"
        )
    return doc


class FolderLocked(RunError):
    """Another process holds the run folder's lock."""


@contextlib.contextmanager
def folder_lock(out: Path) -> Iterator[None]:
    """Hold the folder's lock (:data:`LOCK_FILE`) while writing it (a run) or deciding a launch, so two
    processes never write one folder, nor two pages start it.

    Raises:
        FolderLocked: another process holds it.
    """
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no lock
        yield
        return
    fh = open(out / LOCK_FILE, "a+")  # noqa: SIM115 - held for the whole run
    try:
        try:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise FolderLocked(f"another inspector run is writing to {out} right now") from exc
        yield
    finally:
        fh.close()


def part_path(out: Path, batch: int) -> Path:
    """Where the summary part of batch ``batch`` lives."""
    return out / "parts" / f"batch-{batch:06d}.parquet"


def head_stats_path(out: Path, batch: int) -> Path:
    """Where the head statistics of batch ``batch`` live."""
    return out / "parts" / f"headstats-{batch:06d}.safetensors"


def capture_relpath(dial_id: int, turn: int) -> str:
    """Where a turn's capture lives inside a run folder."""
    return f"captures/{dial_id:05d}-{turn:03d}.safetensors"


def remove_stale_temporaries(out: Path) -> None:
    """Delete temporary files left by a writer that was killed (only the lock holder calls this)."""
    for sub in ("parts", "captures", "."):
        folder = out / sub
        if folder.is_dir():
            for p in folder.glob(".*.tmp"):
                with contextlib.suppress(OSError):
                    p.unlink()


@contextlib.contextmanager
def writing(path: Path) -> Iterator[None]:
    """Make an ``OSError`` raised while writing ``path`` name it.

    A full disk surfaces as a bare ``[Errno 28] No space left on device`` from the write
    or the fsync; the command line prints ``OSError`` as one line, which must say which file.
    """
    try:
        yield
    except OSError as exc:
        if str(path) in str(exc):
            raise
        message = f"cannot write {path}: {exc.strerror or exc}"
        raise (OSError(exc.errno, message) if exc.errno is not None else OSError(message)) from exc


def write_run_json(out: Path, doc: Mapping[str, Any]) -> None:
    """Write ``out/run.json`` atomically."""
    path = out / RUN_JSON
    with writing(path):
        write_text_atomic(path, json.dumps(doc, indent=2, ensure_ascii=False))


def write_run_request(out: Path, config: RunConfig, model: Mapping[str, Any]) -> None:
    """Store what a background run's child runs (:data:`RUN_REQUEST`): ``config`` and ``model`` (the
    :class:`~inspector.runs.background.RunModel` fields)."""
    write_text_atomic(out / RUN_REQUEST, json.dumps({"config": config.to_dict(), "model": dict(model)}, indent=2,
                                                    ensure_ascii=False))


def read_run_request(out: Path) -> tuple[RunConfig, dict[str, Any]]:
    """``(config, model fields)`` stored by :func:`write_run_request`.

    Raises:
        RunError: none stored, or unreadable (the message names the file).
    """
    path = out / RUN_REQUEST
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
        return RunConfig.from_dict(doc["config"]), dict(doc["model"])
    except FileNotFoundError:
        raise RunError(f"{out} holds no background run request ({RUN_REQUEST}); start the run again") from None
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise RunError(f"{path}: unreadable background run request ({exc})") from exc
