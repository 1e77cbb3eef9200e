"""The hub check is bounded by its timeout, the name lookup included, and its answer is reused."""

from __future__ import annotations

import socket
import threading

import pytest

import inspector._hub as hub


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    hub.forget_hub_check()
    yield
    hub.forget_hub_check()


def test_a_hanging_name_lookup_is_not_waited_for(monkeypatch):
    """The answer comes while the lookup still hangs (benchmarks/bench_cli.py times it)."""
    started, release, finished = threading.Event(), threading.Event(), threading.Event()

    def hanging_lookup(*args, **kwargs):
        started.set()
        release.wait(60)  # hangs until released (a check that waited for it would see it finish)
        finished.set()
        raise socket.gaierror("no resolver")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    try:
        assert hub.hub_reachable(timeout=0.3) is False
        assert started.wait(30) and not finished.is_set()  # the lookup was asked and is still hanging
    finally:
        release.set()


def test_answer_is_remembered(monkeypatch):
    calls = []

    def fake_connection(address, timeout=None):
        calls.append(address)
        return socket.socket()  # a real (unconnected) socket: the context manager closes it

    monkeypatch.setattr(socket, "create_connection", fake_connection)
    assert hub.hub_reachable(timeout=1.0) is True
    assert hub.hub_reachable(timeout=1.0) is True
    assert calls == [("hub.invalid", 443)]


def test_refused_connection_is_false(monkeypatch):
    def refused(address, timeout=None):
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    assert hub.hub_reachable(timeout=1.0) is False


def test_offline_variable_answers_at_once(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(socket, "create_connection", lambda *a, **k: pytest.fail("asked the network"))
    assert hub.hub_reachable() is False
