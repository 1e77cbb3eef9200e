"""How long a model load takes to give up on the Hub: ``load_model("gpt2")`` with an empty cache.

Each case runs in a fresh process; the time is that of the ``load_model`` call alone (torch and
transformers are imported before the clock starts), so a loaded machine's import time does not count:

* **offline**: the Hub address as configured (on a machine without internet: DNS or the connection fails);
* **HF_HUB_OFFLINE=1**: nothing is asked;
* **silent endpoint**: ``HF_ENDPOINT`` points at a local socket that accepts connections and never answers
  (a proxy or firewall that swallows requests: the case where a loader's own retries took minutes).

Target: each below 3.5 s (one bounded question of 3 s, plus the error's construction).

    python benchmarks/bench_hub.py [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

_LOAD = """
import time
import torch
from transformers import AutoConfig, AutoModelForCausalLM, AutoTokenizer  # imported before the clock starts
from inspector._model import ModelLoadError, load_model
t0 = time.perf_counter()
try:
    load_model("gpt2", device="cpu")
    outcome = "loaded"
except ModelLoadError:
    outcome = "refused"
print("SECONDS", time.perf_counter() - t0, outcome)
"""


def _silent_server() -> tuple[socket.socket, int]:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(64)
    held: list[socket.socket] = []

    def accept() -> None:
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            held.append(conn)  # never answered, never closed until the end

    threading.Thread(target=accept, daemon=True).start()
    return server, server.getsockname()[1]


def _time(env: dict[str, str]) -> tuple[float, str]:
    with tempfile.TemporaryDirectory() as home:
        full = {**os.environ, "HF_HOME": home, **env}
        for key in [k for k, v in env.items() if v == ""]:
            full.pop(key)
        done = subprocess.run([sys.executable, "-c", _LOAD], capture_output=True, text=True, env=full, cwd=ROOT,
                              timeout=600)
    line = next(ln for ln in done.stdout.splitlines() if ln.startswith("SECONDS"))
    _, seconds, outcome = line.split()
    return float(seconds), outcome


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", default=None)
    args = parser.parse_args()
    server, port = _silent_server()
    cases = {
        "offline": {"HF_HUB_OFFLINE": "", "HF_ENDPOINT": ""},
        "HF_HUB_OFFLINE=1": {"HF_HUB_OFFLINE": "1"},
        "silent endpoint": {"HF_HUB_OFFLINE": "", "HF_ENDPOINT": f"http://127.0.0.1:{port}"},
    }
    results = {}
    for name, env in cases.items():
        seconds, outcome = _time(env)
        results[name] = {"seconds": round(seconds, 2), "outcome": outcome}
        print(f"{name:>18}: {seconds:6.2f} s ({outcome})")
    server.close()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
