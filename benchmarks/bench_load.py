"""Loading a GGUF model: the first load (conversion into an empty cache) and cached loads, against the targets.

Each load runs in a fresh Python process (``--child``) with ``INSPECTOR_CACHE`` pointing at a new
temporary folder, so nothing is warm but the operating system's file cache: first the load that converts
the file (de-quantising it with transformers and writing the cached folder), then ``--repeats`` loads
that read the cache. ``load_s`` is the time of ``inspector.load_model(model, device="cpu")``, model plus
tokenizer, after ``import inspector, torch, transformers`` (timed apart as ``import_s``); ``process_s``
is the whole child process, start-up included. ``cpu_s`` is the child's CPU time over all threads during
the load (on a busy machine CPU time / threads estimates what a quiet one would take). Targets: first
load < 60 s, cached load < 5 s (``load_s``; the cached figure is the median of the repeats).

    python benchmarks/bench_load.py [--model smollm2] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

#: Seconds: (first load, cached load) targets, model plus tokenizer.
TARGETS = {"first": 60.0, "cached": 5.0}


def child(model: str) -> dict[str, Any]:
    """One load in this (fresh) process; what the parent records."""
    start = time.perf_counter()
    import torch
    import transformers  # noqa: F401

    import inspector
    from inspector._gguf import cache_root

    imported = time.perf_counter()
    cached_before = sorted(p.name for p in (cache_root() / "gguf").glob("*") if not p.name.startswith("."))
    cpu0, t0 = time.process_time(), time.perf_counter()
    im = inspector.load_model(model, device="cpu")
    load_s = time.perf_counter() - t0
    cpu_s = time.process_time() - cpu0
    ids = im.tokenizer("Hello, world!")["input_ids"]
    return {
        "import_s": imported - start, "load_s": load_s, "cpu_s": cpu_s, "threads": torch.get_num_threads(),
        "converted": not cached_before, "model_file": im.model_file, "describe": im.describe(),
        "tokens": len(ids),
    }


def run_child(model: str, cache: Path) -> dict[str, Any]:
    env = {**os.environ, "INSPECTOR_CACHE": str(cache), "HF_HUB_OFFLINE": "1"}
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, __file__, "--model", model, "--child"], env=env, capture_output=True,
                          text=True, timeout=1800)
    process_s = time.perf_counter() - t0
    lines = [line for line in proc.stdout.splitlines() if line.startswith("LOAD ")]
    if proc.returncode != 0 or not lines:
        raise SystemExit(f"the load of {model!r} failed (exit {proc.returncode}):\n{proc.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(lines[-1][len("LOAD "):])
    result["process_s"] = process_s
    result["loadavg"] = os.getloadavg()
    return result


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", default="smollm2", help="'smollm2' or a .gguf file (default: smollm2)")
    ap.add_argument("--repeats", type=int, default=3, help="cached loads, each in a fresh process (default: 3)")
    ap.add_argument("--json", dest="json_out", default=None, help="also write the results as JSON here")
    ap.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.child:
        print("LOAD " + json.dumps(child(args.model)), flush=True)
        return 0
    if args.repeats < 1:
        ap.error("--repeats must be at least 1")
    from _common import machine, write_json

    cache = Path(tempfile.mkdtemp(prefix="inspector-bench-cache-"))
    try:
        first = run_child(args.model, cache)
        cached = [run_child(args.model, cache) for _ in range(args.repeats)]
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    if not first["converted"] or any(r["converted"] for r in cached):
        raise SystemExit("the first load did not convert, or a later one converted again: the timings are not "
                         "what they claim")
    cached_s = statistics.median(r["load_s"] for r in cached)
    verdict = {"first": first["load_s"] < TARGETS["first"], "cached": cached_s < TARGETS["cached"]}
    print(first["describe"])
    print(f"file {first['model_file'].get('file')}  sha256 {first['model_file'].get('sha256', '')[:16]}...  "
          f"quantization {first['model_file'].get('quantization')}")
    print(f"{'load':14s} {'load s':>8s} {'cpu s':>8s} {'import s':>9s} {'process s':>10s}")
    for name, r in [("first", first), *((f"cached #{i + 1}", r) for i, r in enumerate(cached))]:
        print(f"{name:14s} {r['load_s']:8.2f} {r['cpu_s']:8.2f} {r['import_s']:9.2f} {r['process_s']:10.2f}")
    print(f"first load  {first['load_s']:.2f} s  (target < {TARGETS['first']:.0f} s: "
          f"{'met' if verdict['first'] else 'MISSED'})")
    print(f"cached load {cached_s:.2f} s median of {len(cached)}  (target < {TARGETS['cached']:.0f} s: "
          f"{'met' if verdict['cached'] else 'MISSED'})")
    print(f"threads {first['threads']}, load average {first['loadavg']}")
    result = {"model": args.model, "model_file": first["model_file"], "targets_s": TARGETS, "met": verdict,
              "first": first, "cached": cached, "cached_median_s": cached_s, "machine": machine()}
    write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
