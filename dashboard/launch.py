"""Launch options: what ``inspector dashboard`` (or ``streamlit run dashboard/app.py -- ...``) was started with."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class LaunchOptions:
    """The dashboard's start-up options.

    ``remote``: the page is served beyond this machine on purpose (``inspector dashboard --host``
    passes it); it then opens only the paths given here (see :mod:`dashboard.access`).
    """

    model: str = "gpt2"
    random_weights: bool = False
    device: str = "auto"
    run: str | None = None
    config_dir: str | None = None
    capture: str | None = None
    remote: bool = False


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def launch_options(argv: list[str] | None = None) -> LaunchOptions:
    """Options from ``-- --model X --run Y ...`` after the app's path, else ``INSPECTOR_DASHBOARD_*`` env vars.

    Env vars: ``INSPECTOR_DASHBOARD_MODEL``, ``INSPECTOR_DASHBOARD_RANDOM_WEIGHTS``,
    ``INSPECTOR_DASHBOARD_DEVICE``, ``INSPECTOR_DASHBOARD_RUN``, ``INSPECTOR_DASHBOARD_CONFIG_DIR``,
    ``INSPECTOR_DASHBOARD_CAPTURE`` (a capture file every new session opens with),
    ``INSPECTOR_DASHBOARD_REMOTE`` (served beyond this machine on purpose).
    """
    env = os.environ
    defaults = LaunchOptions(
        model=env.get("INSPECTOR_DASHBOARD_MODEL") or "gpt2",
        random_weights=_truthy(env.get("INSPECTOR_DASHBOARD_RANDOM_WEIGHTS")),
        device=env.get("INSPECTOR_DASHBOARD_DEVICE") or "auto",
        run=env.get("INSPECTOR_DASHBOARD_RUN") or None,
        config_dir=env.get("INSPECTOR_DASHBOARD_CONFIG_DIR") or None,
        capture=env.get("INSPECTOR_DASHBOARD_CAPTURE") or None,
        remote=_truthy(env.get("INSPECTOR_DASHBOARD_REMOTE")),
    )
    if argv is None:
        # Only parse sys.argv when streamlit runs this app (``streamlit run app.py -- args``);
        # under pytest/AppTest sys.argv belongs to someone else.
        argv = sys.argv[1:] if sys.argv and Path(sys.argv[0]).name == "app.py" else []
    if not argv:
        return defaults
    p = argparse.ArgumentParser(prog="dashboard/app.py", add_help=False)
    p.add_argument("--model", default=defaults.model)
    p.add_argument("--random-weights", action="store_true", default=defaults.random_weights)
    p.add_argument("--device", default=defaults.device)
    p.add_argument("--run", default=defaults.run)
    p.add_argument("--config-dir", default=defaults.config_dir)
    p.add_argument("--capture", default=defaults.capture)
    p.add_argument("--remote", action="store_true", default=defaults.remote)
    args, _unknown = p.parse_known_args(argv)
    return LaunchOptions(args.model, bool(args.random_weights), args.device, args.run, args.config_dir,
                         args.capture, bool(args.remote))
