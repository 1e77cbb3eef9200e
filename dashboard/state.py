"""Dashboard state: session keys, cached loaders (model, captures, DailyDialog, runs) and serialised generation.

* The model loads once per process (``st.cache_resource``), through
  :func:`inspector._fallback.load_with_fallback`, so the page always gets a model.
* Captures are cached process-wide by model, prompt, source and settings; changing
  a view (layer, head, aggregate, colouring) never generates again.
* One process-wide lock serialises generation: every session shares the model, and
  capture attaches hooks to it.
* :func:`generate_calls` counts real model generations (tests use it).
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import streamlit as st

from .access import check_model, check_path

#: The server log (stderr): says once per load when the page serves random weights instead of the model asked for.
log = logging.getLogger("inspector.dashboard")

# ----------------------------------------------------------------------------- limits
#: Hard cap on new tokens per generation in the dashboard (long generations are capped, not queued).
MAX_NEW_TOKENS_CAP = 256
#: Captures kept in the process-wide cache.
CAPTURE_CACHE_ENTRIES = 32

# ----------------------------------------------------------------------------- session keys
#: The capture shown in every view (an :class:`inspector.Capture`).
CAPTURE = "capture"
#: Where the current capture came from, a short human line.
CAPTURE_ORIGIN = "capture_origin"
#: The settings key of the current capture (to tell the user when the sidebar has changed since).
CAPTURE_SETTINGS = "capture_settings_key"
#: Tab to switch to on the next run (a tab can only be switched before it is drawn).
PENDING_VIEW = "_pending_view"
#: Message to show once after a rerun.
FLASH = "_flash"
#: The generation this browser session started (a :class:`dashboard.jobs.GenerationJob`), running in the
#: background until it ends; the page takes its capture (or says why it stopped) and forgets it.
JOB = "_generation_job"
#: Model box and switch values to apply before the sidebar is drawn (what a fallback loaded).
PENDING_MODEL = "_pending_model"
#: The model requests the sidebar shows after a fallback, each mapped to the request that loaded it.
MODEL_ALIASES = "_model_aliases"
#: The path of the open corpus run (see :func:`open_run`).
RUN_PATH = "run_path"
#: Tab widget key.
VIEW = "view"

VIEWS = ("Prompt", "Generation", "Attention", "Analysis", "Why this token?", "Corpus", "Export")


# ----------------------------------------------------------------------------- model
@dataclass(frozen=True)
class ModelRequest:
    """What the sidebar asks for; hashable, so it keys the model cache."""

    name: str
    device: str = "auto"
    random_weights: bool = False
    config_dir: str | None = None

    @property
    def key(self) -> str:
        return json.dumps([self.name, self.device, self.random_weights, self.config_dir or ""])


@st.cache_resource(show_spinner=False, max_entries=2)
def _load_model(name: str, device: str, random_weights: bool, config_dir: str | None) -> Any:
    from inspector._fallback import load_with_fallback

    result = load_with_fallback(name, device=device, random_weights=random_weights, config_dir=config_dir)
    if result.fell_back:
        # Logged here, inside the cache, so the line appears once per load and not on every rerun.
        why = " ".join(str(result.errors[0]).split()) if result.errors else "unknown error"
        if result.level == "demo":
            log.warning("could not load model %r; the page uses the trained demo model %r instead. Error: %s",
                        name, result.model.name, why)
            return result
        log.warning("could not load model %r; the page uses %s with RANDOM WEIGHTS instead (generated text is "
                    "meaningless). Error: %s", name, result.model.name, why)
    return result


def load_model(req: ModelRequest) -> Any:
    """A :class:`inspector._fallback.LoadResult`, loaded once per process per request.

    ``ValueError`` for an unavailable device (the caller shows it);
    :class:`dashboard.access.PathNotAllowed` for a model or config folder a shared page may not open.
    """
    check_model(req.name)
    if req.config_dir:
        check_path(req.config_dir)
    result = _load_model(req.name, req.device, req.random_weights, req.config_dir)
    _LOADED.add(req.key)
    return result


#: Keys of the requests loaded in this process (the page shows no loading message for them).
_LOADED: set[str] = set()


def model_loaded(req: ModelRequest) -> bool:
    return req.key in _LOADED


def model_key(load: Any, req: ModelRequest) -> str:
    """Identifies the model that actually generates (the fallback level is part of it)."""
    return json.dumps([req.key, load.level, load.model.name])


# ----------------------------------------------------------------------------- generation
@st.cache_resource(show_spinner=False)
def generation_lock() -> threading.Lock:
    """One lock for the whole process: sessions take turns at the shared model."""
    return threading.Lock()


_COUNTS = {"generate": 0}
_COUNTS_LOCK = threading.Lock()


def generate_calls() -> int:
    """How many times the dashboard has run the model to generate, in this process."""
    return _COUNTS["generate"]


def settings_key(settings: Any) -> str:
    return json.dumps(settings.to_dict(), sort_keys=True, default=str)


class CaptureStore:
    """Process-wide LRU cache of captures, keyed by model, prompt, settings and source.

    Not ``st.cache_resource`` on the generating function: generation reports progress to
    the page while it runs (which is also where a Stop click interrupts it), and cached
    functions may not draw into elements created outside them.
    """

    def __init__(self, entries: int = CAPTURE_CACHE_ENTRIES):
        self.entries = entries
        self._items: OrderedDict[tuple[str, ...], Any] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple[str, ...]) -> Any:
        with self._lock:
            cap = self._items.get(key)
            if cap is not None:
                self._items.move_to_end(key)
            return cap

    def put(self, key: tuple[str, ...], cap: Any) -> None:
        with self._lock:
            self._items[key] = cap
            self._items.move_to_end(key)
            while len(self._items) > self.entries:
                self._items.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()


@st.cache_resource(show_spinner=False)
def capture_store() -> CaptureStore:
    return CaptureStore()


def generate(load: Any, req: ModelRequest, prompt: str, settings: Any, source: dict[str, Any],
             on_step: Callable[[int, int], None] | None = None, on_start: Callable[[], None] | None = None,
             store: CaptureStore | None = None, lock: threading.Lock | None = None) -> Any:
    """A capture of ``prompt`` (cached by model, prompt, source and settings).

    Generation holds the process-wide lock; ``on_start()`` is called once it is held (before the model
    runs), ``on_step(done, total)`` after every step (see :func:`inspector._capture.generate`; an exception
    raised from either cancels). ``store`` and ``lock`` default to :func:`capture_store` and
    :func:`generation_lock` (a background thread passes them, resolved on the page's own thread).
    Raises ``ValueError`` (empty prompt, too long for the context, bad settings) before any model work.
    """
    if not isinstance(prompt, str) or not prompt.strip():
        raise ValueError("the prompt is empty: pick a DailyDialog turn or type some text")
    key = (model_key(load, req), prompt, settings_key(settings), json.dumps(source, sort_keys=True, default=str))
    store = store if store is not None else capture_store()
    cap = store.get(key)
    if cap is not None:
        return cap
    with lock if lock is not None else generation_lock():
        cap = store.get(key)  # another page may have made it while this one waited
        if cap is not None:
            return cap
        if on_start is not None:
            on_start()
        t0 = time.perf_counter()
        cap = load.model.generate(prompt, settings=settings, sources=source, on_step=on_step)
        cap.meta.extra["dashboard_seconds"] = round(time.perf_counter() - t0, 3)
        with _COUNTS_LOCK:
            _COUNTS["generate"] += 1
    store.put(key, cap)
    return cap


def clear_caches() -> None:
    """Forget cached models and captures (tests)."""
    _load_model.clear()
    _LOADED.clear()
    capture_store().clear()
    with _COUNTS_LOCK:
        _COUNTS["generate"] = 0


# ----------------------------------------------------------------------------- DailyDialog
def load_dialogues(split: str, source: str | None) -> Any:
    """A DailyDialog split (``DailyDialogError`` with a message when unavailable).

    ``source``: a local folder or table file; ``None`` means ``INSPECTOR_DAILYDIALOG_DIR``,
    else the Hub, which, when it cannot be reached, fails at once rather than after the
    download client's retries. A folder a shared page may not open raises
    :class:`dashboard.access.PathNotAllowed`.
    """
    return _load_dialogues(split, _dailydialog_where(source))


def load_turns(split: str, source: str | None) -> Any:
    """The turn table of a DailyDialog split (see :func:`load_dialogues`)."""
    return _load_turns(split, _dailydialog_where(source))


def _dailydialog_where(source: str | None) -> str:
    if source:
        check_path(source)
        return source
    return dailydialog_source() or "hub"


@st.cache_data(show_spinner=False, max_entries=4)
def _load_dialogues(split: str, source: str) -> Any:
    from inspector._hub import hub_reachable
    from inspector.data.dailydialog import DailyDialogError, load_dailydialog

    if source == "hub" and not hub_reachable():
        raise DailyDialogError("no local copy is configured and the Hugging Face Hub cannot be reached from here")
    return load_dailydialog(split, source=source)


@st.cache_data(show_spinner=False, max_entries=4)
def _load_turns(split: str, source: str) -> Any:
    from inspector.data.dailydialog import turn_table

    return turn_table(_load_dialogues(split, source))


def dailydialog_source() -> str | None:
    """The local DailyDialog folder from the environment (``None``: the Hub)."""
    return os.environ.get("INSPECTOR_DAILYDIALOG_DIR") or None


# ----------------------------------------------------------------------------- runs
def _run_stamp(path: Path) -> tuple[Any, ...]:
    """Changes when the run's summary or run.json is rewritten or a batch's part lands.

    So a finished run reloads, and a run still being written is read again as batches finish. The
    parts are counted by name, not by the folder's time: two writes within the file system's clock
    tick leave the same time, and a page read between them kept a stale table.
    """
    times = tuple(p.stat().st_mtime_ns if p.exists() else 0 for p in (path / "summary.parquet", path / "run.json"))
    parts = path / "parts"
    names = sorted(n for n in os.listdir(parts) if n.startswith("batch-") and n.endswith(".parquet")) \
        if parts.is_dir() else []
    return (*times, len(names), names[-1] if names else "")


@st.cache_resource(show_spinner=False, max_entries=4)
def _open_run(path: str, stamp: tuple[Any, ...]) -> Any:  # noqa: ARG001 - stamp only keys the cache
    from inspector.runs import load_run

    run = load_run(path)
    _ = run.summary  # read (and so validate) the table now, where the caller shows errors
    return run


def open_run(path: str) -> Any:
    """A loaded corpus run (``inspector.runs.load_run``); errors propagate with their message."""
    if not str(path).strip():
        raise ValueError("no run folder given: type the path of a folder written by `inspector run`")
    p = check_path(path)
    if not p.exists():
        raise FileNotFoundError(f"run folder {str(p)!r} does not exist")
    if not p.is_dir():
        raise NotADirectoryError(f"{str(p)!r} is not a folder; a run is the folder written by `inspector run --out`")
    return _open_run(str(p.resolve()), _run_stamp(p))


@st.cache_resource(show_spinner=False, max_entries=CAPTURE_CACHE_ENTRIES)
def _run_capture(path: str, stamp: tuple[Any, ...], dial_id: int, turn: int) -> Any:  # noqa: ARG001
    from inspector._store import load_capture

    # the capture file itself may be a link: served remotely, it too must lie where the page may read
    return load_capture(check_path(_open_run(path, stamp).capture_path(dial_id, turn)))


def run_capture(path: str, dial_id: int, turn: int) -> Any:
    p = check_path(path).resolve()
    return _run_capture(str(p), _run_stamp(p), int(dial_id), int(turn))


@st.cache_resource(show_spinner=False, max_entries=8)
def _capture_file(path: str, mtime: float) -> Any:  # noqa: ARG001
    from inspector._store import load_capture

    return load_capture(path)


def capture_file(path: str) -> Any:
    """A capture loaded from a ``.safetensors`` file (``CaptureFileError`` when it isn't one)."""
    p = check_path(path)
    if not p.is_file():
        raise FileNotFoundError(f"capture file {str(p)!r} does not exist")
    return _capture_file(str(p.resolve()), p.stat().st_mtime)


# ----------------------------------------------------------------------------- session helpers
_SHADOW = "_keep_"


def sticky(key: str, default: Any, options: Any = None) -> None:
    """Give the widget ``key`` its remembered value (or ``default``) before it is drawn.

    Only the open tab runs (lazy tabs), and Streamlit forgets the state of widgets
    that were not drawn; a shadow copy keeps choices (filters, layer, head, ...)
    across tab switches. Widgets using this take no ``value``/``index``/``default``.
    A remembered value that ``options`` no longer offers falls back to ``default``
    (or the first option).
    """
    ss = st.session_state
    value = ss[key] if key in ss else ss.get(_SHADOW + key, default)
    if options is not None:
        options = list(options)
        if value not in options:
            value = default if default in options else (options[0] if options else None)
    ss[key] = value
    ss[_SHADOW + key] = value


def remembered(key: str, default: Any = None) -> Any:
    """A widget's current or remembered value, even while its tab is closed."""
    ss = st.session_state
    return ss[key] if key in ss else ss.get(_SHADOW + key, default)


def remember(key: str, value: Any) -> None:
    """Set the widget ``key`` (and its remembered copy) to ``value``, e.g. from another widget's callback."""
    st.session_state[key] = value
    st.session_state[_SHADOW + key] = value


def forget(key: str) -> None:
    st.session_state.pop(key, None)
    st.session_state.pop(_SHADOW + key, None)


def set_capture(capture: Any, origin: str, skey: str | None = None, switch_to: str | None = None) -> None:
    """Make ``capture`` the one every view shows; optionally switch tab on the next run."""
    st.session_state[CAPTURE] = capture
    st.session_state[CAPTURE_ORIGIN] = origin
    st.session_state[CAPTURE_SETTINGS] = skey
    if switch_to:
        st.session_state[PENDING_VIEW] = switch_to


def current_capture() -> Any:
    return st.session_state.get(CAPTURE)


def apply_pending_view() -> None:
    """Switch tab if a previous run asked to (must run before ``st.tabs`` is drawn)."""
    view = st.session_state.pop(PENDING_VIEW, None)
    if view in VIEWS:
        st.session_state[VIEW] = view


def flash(message: str, kind: str = "success") -> None:
    st.session_state[FLASH] = (kind, message)


def pop_flash() -> tuple[str, str] | None:
    flash: tuple[str, str] | None = st.session_state.pop(FLASH, None)
    return flash
