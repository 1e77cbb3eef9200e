"""``inspector dashboard`` with real processes: ``kill PID`` stops the server it started, and a port in use
is said in one line before any address is printed."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from serving import free_port, listening_hosts, port_free, start, stop, wait_http

pytestmark = pytest.mark.slow


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1")
    return env


def _launcher(port: int, *extra: str) -> list[str]:
    return [sys.executable, "-m", "inspector.cli.main", "dashboard", "--model", "builtin", "--port", str(port),
            *extra]


@pytest.mark.skipif(os.name == "nt", reason="POSIX signals")
def test_sigterm_to_the_launcher_stops_the_server(tmp_path):
    port = free_port()
    proc = start(_launcher(port), ROOT, _env(), tmp_path / "launcher.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", proc)
        hosts = listening_hosts(port)
        assert hosts is None or hosts == {"127.0.0.1"}
        os.kill(proc.pid, signal.SIGTERM)  # what `kill PID` does: the launcher's own PID only
        proc.wait(timeout=30)
        deadline = time.monotonic() + 15
        while not port_free(port) and time.monotonic() < deadline:
            time.sleep(0.2)
        log = (tmp_path / "launcher.log").read_text()
        assert port_free(port), f"the Streamlit server outlived the launcher:\n{log}"
    finally:
        stop(proc)


def test_a_port_in_use_is_said_in_one_line_before_any_address(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        try:
            done = subprocess.run(_launcher(port), cwd=ROOT, env=_env(), capture_output=True, text=True, timeout=120,
                                  start_new_session=True)
        except subprocess.TimeoutExpired as exc:  # the server started anyway: stop what it left
            pytest.fail(f"the launcher did not stop on a port in use: {exc.stderr!r}")
    lines = done.stderr.strip().splitlines()
    assert done.returncode == 2, done.stderr
    assert len(lines) == 1 and "serving on" not in done.stderr, done.stderr
    assert f"port {port} on 127.0.0.1 is already in use" in lines[0] and "--port" in lines[0]
