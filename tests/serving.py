"""Helpers for tests that start real dashboard servers: start one in its own process group, wait until it
answers, see which addresses it listens on, stop it and everything it started."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
import subprocess
import time
from pathlib import Path

from browser import free_port, wait_http

__all__ = ["free_port", "listening_hosts", "port_free", "start", "stop", "wait_http"]


def start(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    """``cmd`` in a new process group (so :func:`stop` reaches whatever it starts), output to ``log``."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        return subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)


def stop(proc: subprocess.Popen) -> None:
    """End ``proc``'s process group (the server and nothing else): SIGTERM, then SIGKILL."""
    for sig, wait in ((signal.SIGTERM, 15), (signal.SIGKILL, 15)):
        try:
            os.killpg(proc.pid, sig)
        except ProcessLookupError:
            break
        try:
            proc.wait(timeout=wait)
        except subprocess.TimeoutExpired:
            continue
        deadline = time.monotonic() + wait  # the launcher may be gone while a child of it still runs
        while time.monotonic() < deadline:
            try:
                os.killpg(proc.pid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    """Whether ``host:port`` can be bound now (as a new server would bind it)."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def listening_hosts(port: int) -> set[str] | None:
    """The addresses TCP sockets listen on at ``port`` (from ``/proc/net/tcp*``); ``None`` where unknown."""
    found: set[str] = set()
    tables = [(Path("/proc/net/tcp"), 4), (Path("/proc/net/tcp6"), 6)]
    if not tables[0][0].exists():
        return None
    for table, family in tables:
        try:
            lines = table.read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if len(fields) < 4 or fields[3] != "0A":  # 0A: LISTEN
                continue
            host_hex, port_hex = fields[1].split(":")
            if int(port_hex, 16) != port:
                continue
            raw = bytes.fromhex(host_hex)  # each 32-bit word in host (little-endian) order
            words = b"".join(raw[i : i + 4][::-1] for i in range(0, len(raw), 4))
            ip = ipaddress.IPv4Address(words) if family == 4 else ipaddress.IPv6Address(words)
            found.add(str(ip))
    return found
