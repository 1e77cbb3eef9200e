"""``inspector dashboard``: launch the Streamlit dashboard on this machine (127.0.0.1 unless ``--host``)."""

from __future__ import annotations

import argparse
import errno
import importlib.util
import ipaddress
import os
import socket
import subprocess
import sys
from pathlib import Path

from inspector._locations import MODEL_NAME_HELP

#: The name the dashboard's folder (``dashboard/`` in a source checkout) is installed under.
APP_PACKAGE = "inspector_dashboard"


def is_local_address(address: str | None) -> bool:
    """Whether a server bound to ``address`` can be reached from this machine only.

    ``None`` or empty (Streamlit's default) means every interface: not local.
    """
    if not address or not address.strip():
        return False
    a = address.strip()
    if a.startswith("unix://") or a.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(a.strip("[]")).is_loopback
    except ValueError:
        return False


def app_path() -> Path:
    """The dashboard's ``app.py``: installed next to this package (``inspector_dashboard``), or in the source
    checkout this package runs from (``dashboard/``)."""
    base = Path(__file__).resolve().parents[2]
    installed = base / APP_PACKAGE / "app.py"
    if installed.is_file():
        return installed.resolve()  # in a checkout, the link inspector_dashboard -> dashboard: the real file
    checkout = base / "dashboard" / "app.py"
    if checkout.is_file() and (base / "pyproject.toml").is_file():
        return checkout
    spec = importlib.util.find_spec(APP_PACKAGE)  # e.g. an editable install
    if spec is not None and spec.origin:
        return Path(spec.origin).with_name("app.py")
    return installed


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "dashboard",
        help="open the Streamlit dashboard (generation, attention, corpus views)",
        description=(
            "Launch the Streamlit dashboard on http://HOST:PORT. Where the model cannot be loaded the page "
            "says so and falls back to a random-weights GPT-2 (its text is meaningless)."
        ),
    )
    p.add_argument("--run", default=None, metavar="out/runs/NAME",
                   help="corpus run folder to open in the Corpus view (default: none; the view asks for one)")
    p.add_argument("--capture", default=None, metavar="FILE.safetensors",
                   help="capture file (from `inspector capture --out`) that every new page opens with (default: none)")
    p.add_argument("--model", default=None, metavar="NAME_OR_DIR",
                   help=f"{MODEL_NAME_HELP}, or 'builtin' (default: gpt2, else smollm2 where gpt2 cannot "
                        "be loaded)")
    p.add_argument("--random-weights", action="store_true",
                   help="random weights from the model folder's config.json (text is meaningless)")
    p.add_argument("--device", default=None, help="auto (default), cpu, cuda, cuda:N or mps")
    p.add_argument("--config-dir", default=None, metavar="DIR",
                   help="folder with GPT-2's config.json and tokenizer for the random-weights fallback "
                   "(default: $INSPECTOR_GPT2_OFFLINE_DIR, else ../shared/models/gpt2-offline)")
    p.add_argument("--dailydialog", default=None, metavar="DIR",
                   help="local DailyDialog copy (sets INSPECTOR_DAILYDIALOG_DIR; default: that variable, else "
                   "../shared/data/dailydialog beside this folder or the project, else the Hub)")
    p.add_argument("--port", type=int, default=8501, help="port (default: %(default)s)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address to bind (default: %(default)s, this machine only); any other address shares "
                   "the page, which then opens only the run, capture, model and data folders given here")
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
    if not is_local_address(args.host):
        out.append("--remote")
    return out


def streamlit_command(args: argparse.Namespace) -> list[str]:
    """The ``python -m streamlit run`` command line for ``args``."""
    app = app_path()
    if not app.is_file():
        raise FileNotFoundError(
            f"dashboard app not found at {app}: reinstall inspector (the wheel ships it as {APP_PACKAGE}), or run "
            "from a source checkout"
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


def check_port_free(host: str, port: int) -> None:
    """Raise ``OSError`` with a one-line message when ``host:port`` cannot be bound (e.g. a server still on it)."""
    try:
        addresses = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise OSError(f"--host {host!r} is not an address of this machine ({exc.strerror})") from None
    for family, kind, proto, _name, address in addresses:
        with socket.socket(family, kind, proto) as s:
            # As Tornado binds: a port left in TIME_WAIT by a stopped server counts as free.
            if os.name != "nt":
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            try:
                s.bind(address)
            except OSError as exc:
                if exc.errno == errno.EADDRINUSE:
                    raise OSError(f"port {port} on {host} is already in use (is another dashboard still "
                                  "running?); stop it, or choose another port with --port") from None
                if exc.errno == errno.EACCES:
                    raise OSError(f"not allowed to listen on {host}:{port} ({exc.strerror}); choose a port "
                                  "above 1023 with --port") from None
                # Anything else (e.g. no IPv6 for 'localhost'): Tornado skips or reports it itself.


def exec_streamlit(cmd: list[str], env: dict[str, str]) -> int:
    """Become the Streamlit server, so that signals sent to this process (``kill PID``, Ctrl-C) reach it."""
    sys.stdout.flush()
    sys.stderr.flush()
    if os.name == "nt":  # no exec there: the child shares the console, so Ctrl-C reaches it too
        return subprocess.call(cmd, env=env)
    os.execve(cmd[0], cmd, env)
    return 0  # pragma: no cover - execve does not return


def run(args: argparse.Namespace) -> int:
    if args.device:  # an unavailable device is refused here, not after the page has loaded a model
        from inspector._devices import resolve_device

        resolve_device(args.device)
    cmd = streamlit_command(args)
    check_port_free(args.host, args.port)
    if args.run and not Path(args.run).expanduser().is_dir():
        print(f"inspector dashboard: note: run folder {args.run!r} does not exist; the Corpus view will say so",
              file=sys.stderr)
    if args.capture and not Path(args.capture).expanduser().is_file():
        print(f"inspector dashboard: note: capture file {args.capture!r} does not exist; the page will say so",
              file=sys.stderr)
    env = dict(os.environ)
    if args.dailydialog:
        env["INSPECTOR_DAILYDIALOG_DIR"] = str(Path(args.dailydialog).expanduser())
    elif is_local_address(args.host) and not env.get("INSPECTOR_DAILYDIALOG_DIR"):
        # The page finds DailyDialog as the other commands do (a shared page opens only folders given here).
        from inspector._locations import find_dailydialog_dir

        found = find_dailydialog_dir()
        if found is not None:
            env["INSPECTOR_DAILYDIALOG_DIR"] = str(found)
    host = f"[{args.host}]" if ":" in args.host else args.host
    print(f"inspector dashboard: serving on http://{host}:{args.port}  (Ctrl-C to stop)", file=sys.stderr)
    if not is_local_address(args.host):
        print(f"inspector dashboard: warning: bound to {args.host}: anyone who can reach this address can use "
              "the dashboard (there is no login); it opens only the run, capture, model and data folders given "
              "here", file=sys.stderr)
    return exec_streamlit(cmd, env)
