"""How long the CLI takes to answer without a model: ``--help``, argument errors, the offline hub check.

* **parse**: ``inspector --help``, each command's ``--help`` and three argument errors, each in a
  fresh Python process (``-c`` running ``inspector.cli.main.main``): the time from the start of the
  import of the CLI to its exit, best and median of ``--repeats``. Target: best < 0.5 s (no torch, no
  transformers: ``tests/test_cli_help.py`` checks which modules are imported).
* **offline fallback**: ``inspector._fallback.load_with_fallback("gpt2")`` with ``HF_HUB_OFFLINE=1`` and an
  empty Hugging Face cache, in a fresh process (imports included): a local GPT-2 config or the built-in model
  stands in without a hub attempt. Target: < 30 s (a hub client that retries spends about a minute).
* **hanging resolver**: ``inspector._hub.hub_reachable(timeout=0.3)`` while the name lookup hangs for 5 s.
  Target: < 2 s (the lookup is not waited for).

    python benchmarks/bench_cli.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

ARGVS: list[tuple[str, ...]] = [
    ("--help",),
    *[(c, "--help") for c in ("capture", "doctor", "run", "stats", "plot", "dashboard")],
    ("capture", "--num-beams", "two"),
    ("run",),
    ("plot", "x.safetensors", "--kind", "nope", "--out", "x.png"),
]

_PARSE = """
import sys, time
t0 = time.perf_counter()
from inspector.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("SECONDS", time.perf_counter() - t0, file=sys.stderr)
"""

_FALLBACK = """
import time
t0 = time.perf_counter()
import inspector._fallback as fallback
res = fallback.load_with_fallback("gpt2", device="cpu")
print("SECONDS", time.perf_counter() - t0, res.level)
"""

_HANGING = """
import socket, time
import inspector._hub as hub

def slow_lookup(*args, **kwargs):
    time.sleep(5)
    raise socket.gaierror("no resolver")

socket.getaddrinfo = slow_lookup
t0 = time.perf_counter()
answer = hub.hub_reachable(timeout=0.3)
print("SECONDS", time.perf_counter() - t0, answer)
"""


def _seconds(code: str, *argv: str, env: dict[str, str] | None = None, stream: str = "stderr") -> float:
    proc = subprocess.run([sys.executable, "-c", code, *argv], cwd=ROOT, capture_output=True, text=True,
                          timeout=600, env=env)
    text = proc.stderr if stream == "stderr" else proc.stdout
    lines = [line for line in text.splitlines() if line.startswith("SECONDS")]
    if not lines:
        raise RuntimeError(f"no timing from {argv or code[:40]!r}: {proc.stderr[-2000:]}")
    return float(lines[-1].split()[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each measurement (default: 3)")
    parser.add_argument("--json", default=None, help="also write the results here (default: none)")
    args = parser.parse_args()

    results: dict[str, Any] = {"load_average": os.getloadavg(), "parse": {}}
    print(f"load average {os.getloadavg()[0]:.2f}; best / median of {args.repeats} runs, seconds")
    for argv in ARGVS:
        times = [_seconds(_PARSE, *argv) for _ in range(args.repeats)]
        name = "inspector " + " ".join(argv)
        results["parse"][name] = {"best": min(times), "median": statistics.median(times)}
        flag = "" if min(times) < 0.5 else "  (over the 0.5 s target)"
        print(f"  {name:<60} {min(times):6.2f} {statistics.median(times):6.2f}{flag}")

    with tempfile.TemporaryDirectory() as hf_home:
        env = {**os.environ, "HF_HUB_OFFLINE": "1", "HF_HOME": hf_home}
        times = [_seconds(_FALLBACK, env=env, stream="stdout") for _ in range(args.repeats)]
    results["offline_fallback"] = {"best": min(times), "median": statistics.median(times)}
    print(f"  {'offline load_with_fallback(gpt2), imports included':<60} {min(times):6.2f} "
          f"{statistics.median(times):6.2f}  (target < 30)")

    env = {k: v for k, v in os.environ.items() if k != "HF_HUB_OFFLINE"}
    env["HF_ENDPOINT"] = "https://hub.invalid"
    times = [_seconds(_HANGING, env=env, stream="stdout") for _ in range(args.repeats)]
    results["hanging_resolver"] = {"best": min(times), "median": statistics.median(times)}
    print(f"  {'hub_reachable(timeout=0.3), name lookup hanging 5 s':<60} {min(times):6.2f} "
          f"{statistics.median(times):6.2f}  (target < 2)")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
