"""The hub check is bounded by its timeout, the name lookup included, and its answer is reused."""

from __future__ import annotations

import socket
import time

import pytest

from inspector import hub


@pytest.fixture(autouse=True)
def _fresh(monkeypatch):
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.setenv("HF_ENDPOINT", "https://hub.invalid")
    hub.forget_hub_check()
    yield
    hub.forget_hub_check()


def test_a_hanging_name_lookup_is_not_waited_for(monkeypatch):
    def slow_lookup(*args, **kwargs):
        time.sleep(5)
        raise socket.gaierror("no resolver")

    monkeypatch.setattr(socket, "getaddrinfo", slow_lookup)
    t0 = time.monotonic()
    assert hub.hub_reachable(timeout=0.3) is False
    assert time.monotonic() - t0 < 2.0  # before the fix: 5 s (create_connection's timeout skips the lookup)


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
