"""Whether the Hugging Face Hub can be reached: checked once, quickly, and the answer reused.

Without this, a hub client on an offline machine spends half a minute on retries
before it fails; here one TCP connection attempt, name lookup included (3 s at most:
a resolver that hangs is not waited for), decides, and the answer is kept for
:data:`REMEMBER_SECONDS` so that a command that asks twice (model, then data) waits once.
"""

from __future__ import annotations

import os
import socket
import threading
import time
from urllib.parse import urlparse

#: How long an answer is reused before the hub is asked again (a dashboard lives for hours).
REMEMBER_SECONDS = 300.0
_TRUE = ("1", "true", "yes", "on")
_answers: dict[tuple[str, int], tuple[float, bool]] = {}


def hub_offline() -> bool:
    """Whether ``HF_HUB_OFFLINE`` asks for no hub access at all."""
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def hub_address() -> tuple[str, int]:
    """``(host, port)`` of the hub (``HF_ENDPOINT`` respected)."""
    url = urlparse(os.environ.get("HF_ENDPOINT") or "https://huggingface.co")
    return url.hostname or "huggingface.co", url.port or (80 if url.scheme == "http" else 443)


def hub_reachable(timeout: float = 3.0) -> bool:
    """Whether the Hugging Face Hub answers a TCP connection within ``timeout`` seconds.

    ``False`` at once when ``HF_HUB_OFFLINE`` is set. The answer for an address is
    remembered for :data:`REMEMBER_SECONDS`; :func:`forget_hub_check` clears it.
    """
    if hub_offline():
        return False
    address = hub_address()
    now = time.monotonic()
    known = _answers.get(address)
    if known is not None and now - known[0] < REMEMBER_SECONDS:
        return known[1]
    answer = _connects(address, timeout)
    _answers[address] = (time.monotonic(), answer)
    return answer


def _connects(address: tuple[str, int], timeout: float) -> bool:
    """Whether a TCP connection to ``address`` opens within ``timeout`` seconds, the name lookup included.

    ``socket.create_connection``'s timeout does not cover ``getaddrinfo``, which can hang for
    the resolver's own retries (tens of seconds on a machine without DNS), so the attempt runs in a
    daemon thread and is given up after ``timeout``; the thread ends on its own.
    """
    result: list[bool] = []

    def attempt() -> None:
        try:
            with socket.create_connection(address, timeout=timeout):
                result.append(True)
        except OSError:
            result.append(False)

    worker = threading.Thread(target=attempt, name="inspector-hub-check", daemon=True)
    worker.start()
    worker.join(timeout)
    return bool(result and result[0])


def forget_hub_check() -> None:
    """Ask the hub again on the next :func:`hub_reachable` (e.g. after the network came back)."""
    _answers.clear()
