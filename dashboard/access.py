"""What the page may do where it is served: refuse to serve when bound beyond this machine unasked, and,
when served beyond it on purpose (``--host``), open only the paths it was started with.

Served to other machines, the page must not browse the server's files: every path a
visitor can type (model, config, run, capture, DailyDialog folder) goes through
:func:`check_path`, which answers one message whether the path is missing or not
allowed, so the page does not reveal which files exist.
"""

from __future__ import annotations

import os
from pathlib import Path

from inspector._fallback import BUILTIN_NAME
from inspector.cli.dashboard import is_local_address

from .launch import LaunchOptions, launch_options


class PathNotAllowed(ValueError):
    """A path the page will not open (missing, or outside what it was started with: one message for both)."""


def exposure_refusal(address: str | None, remote: bool) -> str | None:
    """``None`` when the page may serve; else the message it shows instead of any content.

    ``address`` is Streamlit's ``server.address`` (``None`` or empty: every interface).
    ``remote`` means the dashboard was told to serve beyond this machine (``--host``).
    """
    if remote or is_local_address(address):
        return None
    where = f"address {address}" if address else "every network interface"
    return (
        f"This dashboard is bound to {where}, so other machines can reach it, and it was not started to be "
        "shared: it shows nothing. Start it with `inspector dashboard` (this machine only) or "
        "`streamlit run dashboard/app.py --server.address 127.0.0.1`. To share it on purpose, use "
        "`inspector dashboard --host ADDRESS` (or end the `streamlit run` line with `-- --remote`): the page "
        "then opens only the run, capture, model and data folders it was started with."
    )


def allowed_roots(opts: LaunchOptions) -> list[Path]:
    """The files and folders a remote page may open: those given at launch, and the data folders set for it."""
    given = [opts.run, opts.capture, opts.config_dir, opts.model,
             os.environ.get("INSPECTOR_DAILYDIALOG_DIR"), os.environ.get("INSPECTOR_GPT2_OFFLINE_DIR")]
    roots = []
    for value in given:
        if value and value.strip():
            p = Path(value).expanduser()
            if p.exists():  # a model given as a hub id is no folder
                roots.append(p.resolve())
    return roots


def _refusal(path: str) -> PathNotAllowed:
    return PathNotAllowed(
        f"{path!r} is not available here: this dashboard is shared beyond its machine, so it opens only existing "
        "files and folders it was started with (--run, --capture, --model, --config-dir, --dailydialog) and what "
        "they contain"
    )


def check_path(path: str | os.PathLike[str], opts: LaunchOptions | None = None) -> Path:
    """``path`` with ``~`` expanded, when the page may open it.

    Served locally, any path is allowed (the caller says when it is missing). Served
    remotely (``opts.remote``), only an existing path inside :func:`allowed_roots`;
    otherwise :class:`PathNotAllowed`, with the same message for missing and forbidden.
    """
    opts = opts if opts is not None else launch_options()
    p = Path(path).expanduser()
    if not opts.remote:
        return p
    try:
        real = p.resolve()
    except (OSError, RuntimeError):  # symlink loop and the like: same answer as a missing path
        raise _refusal(str(path)) from None
    if real.exists() and any(real == root or root in real.parents for root in allowed_roots(opts)):
        return p
    raise _refusal(str(path))


def check_model(name: str, opts: LaunchOptions | None = None) -> str:
    """``name`` (hub id or folder) when the page may load it: remotely, only the launch model, the built-in
    one, or a folder inside :func:`allowed_roots` (:class:`PathNotAllowed` otherwise)."""
    opts = opts if opts is not None else launch_options()
    if not opts.remote or name in (opts.model, BUILTIN_NAME):
        return name
    check_path(name, opts)
    return name
