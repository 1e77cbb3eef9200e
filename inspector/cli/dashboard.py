"""``inspector dashboard``: launch the Streamlit dashboard (``dashboard/app.py``) on this machine."""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def app_path() -> Path:
    """``dashboard/app.py`` next to the ``inspector`` package (the dashboard is not part of the installed package)."""
    return Path(__file__).resolve().parents[2] / "dashboard" / "app.py"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "dashboard",
        help="open the Streamlit dashboard (generation, attention, corpus views)",
        description=(
            "Launch the Streamlit dashboard on http://HOST:PORT. Where the model cannot be loaded the page "
            "says so and falls back to a random-weights GPT-2 (its text is meaningless)."
        ),
    )
    p.add_argument("--run", default=None, metavar="runs/NAME", help="corpus run folder to open in the Corpus view")
    p.add_argument("--capture", default=None, metavar="FILE.safetensors",
                   help="capture file (from `inspector capture --out`) that every new page opens with")
    p.add_argument("--model", default=None, metavar="NAME_OR_DIR",
                   help="hub id, local folder, or 'builtin' (default: gpt2)")
    p.add_argument("--random-weights", action="store_true",
                   help="random weights from the model folder's config.json (text is meaningless)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--config-dir", default=None, metavar="DIR",
                   help="folder with GPT-2's config.json and tokenizer for the random-weights fallback")
    p.add_argument("--dailydialog", default=None, metavar="DIR",
                   help="local DailyDialog copy (sets INSPECTOR_DAILYDIALOG_DIR)")
    p.add_argument("--port", type=int, default=8501, help="port (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s, this machine only)")
    p.set_defaults(func=run)


def app_args(args: argparse.Namespace) -> list[str]:
    """Options forwarded to ``dashboard/app.py`` after ``--``."""
    out: list[str] = []
    for flag, value in (("--model", args.model), ("--run", args.run), ("--device", args.device),
                        ("--config-dir", args.config_dir), ("--capture", args.capture)):
        if value:
            out += [flag, str(value)]
    if args.random_weights:
        out.append("--random-weights")
    return out


def streamlit_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m streamlit run`` command line for ``args``."""
    app = app_path()
    if not app.is_file():
        raise FileNotFoundError(
            f"dashboard app not found at {app}: the dashboard lives in the project's dashboard/ folder, next to "
            "the inspector package; run from a source checkout (pip install -e .)"
        )
    if not 0 < args.port < 65536:
        raise ValueError(f"--port must be in 1..65535, got {args.port}")
    return [
        sys.executable, "-m", "streamlit", "run", str(app),
        "--server.address", args.host,
        "--server.port", str(args.port),
        "--server.headless", "true",
        "--server.fileWatcherType", "none",
        "--browser.gatherUsageStats", "false",
        "--client.toolbarMode", "minimal",
        "--", *app_args(args),
    ]


def run(args: argparse.Namespace) -> int:
    cmd = streamlit_command(args)
    if args.run and not Path(args.run).expanduser().is_dir():
        print(f"inspector dashboard: note: run folder {args.run!r} does not exist; the Corpus view will say so",
              file=sys.stderr)
    if args.capture and not Path(args.capture).expanduser().is_file():
        print(f"inspector dashboard: note: capture file {args.capture!r} does not exist; the page will say so",
              file=sys.stderr)
    env = dict(os.environ)
    if args.dailydialog:
        env["INSPECTOR_DAILYDIALOG_DIR"] = str(Path(args.dailydialog).expanduser())
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"inspector dashboard: serving on http://{host}:{args.port}  (Ctrl-C to stop)", file=sys.stderr)
    if args.host not in LOCAL_HOSTS:
        print(f"inspector dashboard: warning: bound to {args.host}: anyone who can reach this address can use "
              "the dashboard (there is no login)", file=sys.stderr)
    return subprocess.call(cmd, env=env)
