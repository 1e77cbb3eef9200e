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
from pathlib import Path
from typing import Any
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


#: Seconds the Hub is given to answer a model load's one question (and each file's metadata request).
HUB_TIMEOUT = 3.0
#: Files a model needs from its repository: config, tokenizer, chat template, generation config; the
#: weights (safetensors, else PyTorch's .bin) unless the weights are random; the model's own code with
#: ``trust_remote_code``.
_CONFIG_FILES = (".json", ".txt", ".model", ".jinja", ".tiktoken")


class HubUnreachableError(OSError):
    """The Hub did not answer within the time given (or refused the connection)."""


def ask_hub_model(repo_id: str, revision: str | None = None, timeout: float = HUB_TIMEOUT) -> Any:
    """The Hub's one answer about model ``repo_id``: its ``ModelInfo`` (commit ``sha``, file names).

    One request (``HfApi.model_info``), given ``timeout`` seconds in all, the name lookup included (it runs
    in a daemon thread that is not waited for past ``timeout``). The answer decides
    :func:`hub_reachable`'s for the next :data:`REMEMBER_SECONDS`. Raises :class:`HubUnreachableError`
    when the Hub is not reached in time (at once under ``HF_HUB_OFFLINE``); the Hub's own errors
    (no such repository, gated, ...) pass through.
    """
    if hub_offline():
        raise HubUnreachableError("HF_HUB_OFFLINE is set")
    from huggingface_hub import HfApi

    result: list[Any] = []
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            result.append(HfApi().model_info(repo_id, revision=revision, timeout=timeout))
        except BaseException as exc:  # handed to the caller's thread
            errors.append(exc)

    worker = threading.Thread(target=attempt, name="inspector-hub-ask", daemon=True)
    worker.start()
    worker.join(timeout)
    reached = bool(result) or (bool(errors) and not _is_connection_error(errors[0]))
    _answers[hub_address()] = (time.monotonic(), reached)
    if result:
        return result[0]
    if errors and reached:
        raise errors[0]
    raise HubUnreachableError(f"the Hugging Face Hub did not answer within {timeout:g} s")


def _is_connection_error(exc: BaseException) -> bool:
    """Whether ``exc`` says the Hub was not reached (as opposed to an answer such as "no such repository")."""
    if isinstance(exc, (OSError, TimeoutError)):
        return not hasattr(exc, "response")
    names = {c.__name__ for c in type(exc).__mro__}
    return bool(names & {"ConnectError", "TimeoutException", "NetworkError", "ConnectionError", "Timeout"})


def model_files(info: Any, random_weights: bool = False, remote_code: bool = False) -> list[str]:
    """The files of a model repository (``ModelInfo.siblings``) that loading it needs."""
    names = [s.rfilename for s in (getattr(info, "siblings", None) or [])]
    top = [n for n in names if "/" not in n]
    wanted = [n for n in top if n.endswith(_CONFIG_FILES) and not n.endswith(".index.json")]
    if not random_weights:
        safetensors = [n for n in top if n.endswith((".safetensors", ".safetensors.index.json"))]
        wanted += safetensors or [n for n in top if n.startswith("pytorch_model") and n.endswith((".bin", ".json"))]
    if remote_code:
        wanted += [n for n in top if n.endswith(".py")]
    return sorted(set(wanted))


def fetch_model(repo_id: str, revision: str | None = None, random_weights: bool = False,
                remote_code: bool = False, timeout: float = HUB_TIMEOUT) -> Path:
    """Download model ``repo_id`` into the Hugging Face cache after one bounded question; its snapshot folder.

    :func:`ask_hub_model` names the commit and the files; each file is then fetched at that commit
    (``hf_hub_download``, ``etag_timeout=timeout``; a file already in the cache is not asked for again),
    so the loader reads a local folder and makes no Hub request of its own.
    """
    from huggingface_hub import hf_hub_download

    info = ask_hub_model(repo_id, revision, timeout)
    files = model_files(info, random_weights, remote_code)
    if "config.json" not in files:
        raise FileNotFoundError(f"the Hub repository {repo_id!r} has no config.json at the top level")
    folder: Path | None = None
    for name in files:
        path = Path(hf_hub_download(repo_id, name, revision=info.sha, etag_timeout=timeout))
        folder = folder or path.parent
    assert folder is not None
    return folder
