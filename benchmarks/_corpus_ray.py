"""bench_corpus.py's Ray and batching measurements: 1 vs N local Ray workers, length-bucketed vs unsorted batches.

* ``--ray-workers 1,2``: the same corpus run (the plan's batches, captures and summary written)
  on a local Ray cluster with each worker count, interleaved over ``--repeats`` (order reversed
  on odd repeats). Reports wall turns/s (model loading in the actors included) and steady
  turns/s (from the first finished batch to the last, so actor start-up is left out).
* ``--batching``: capture throughput (``inspector._capture.generate`` with attention, the run's
  settings) of the plan's batches, which are cut from turns sorted by prompt length, against
  batches cut from the same turns in ``(dial_id, turn)`` order; interleaved batch pass by batch
  pass. Reports turns/s of each and the share of prompt positions that are padding.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # this checkout's inspector, not whichever one is installed
    sys.path.insert(0, str(ROOT))


def _setup(args: argparse.Namespace) -> tuple[Any, Any, Any]:
    from _common import load_bench_model

    from inspector._capture.settings import GenerationSettings
    from inspector.runs import RunConfig, plan_run

    im = load_bench_model(args.model, args.device, args.weights)
    cfg = RunConfig(split="validation", data=args.data, limit=args.turns, batch_size=args.batch_size,
                    attention=args.attention, settings=GenerationSettings(max_new_tokens=args.max_new_tokens))
    return im, cfg, plan_run(cfg, im.tokenizer, im.context_length)


def _padding_share(batches: list[list[int]]) -> float:
    real = sum(sum(b) for b in batches)
    padded = sum(max(b) * len(b) for b in batches)
    return 1.0 - real / padded


def bench_batching(args: argparse.Namespace) -> dict[str, Any]:
    from inspector._capture.engine import generate

    im, cfg, plan = _setup(args)
    sorted_batches = [list(b) for b in plan.batches]
    bs = cfg.batch_size
    unsorted_batches = [list(plan.items[i : i + bs]) for i in range(0, len(plan.items), bs)]
    kinds = {"bucketed": sorted_batches, "unsorted": unsorted_batches}
    generate(im, [it.prompt.text for it in sorted_batches[0]], settings=cfg.batch_settings(0))  # warm-up
    seconds = {k: 0.0 for k in kinds}
    for r in range(args.repeats):
        for kind in (("bucketed", "unsorted") if r % 2 == 0 else ("unsorted", "bucketed")):
            t = time.perf_counter()
            for b, batch in enumerate(kinds[kind]):
                generate(im, [it.prompt.text for it in batch], settings=cfg.batch_settings(b))
            seconds[kind] += time.perf_counter() - t
            print(f"repeat {r} {kind}: {seconds[kind]:.2f} s so far", file=sys.stderr, flush=True)
    n = len(plan.items) * args.repeats
    result: dict[str, Any] = {
        "benchmark": "bench_corpus --batching", "device": str(im.device), "turns": len(plan.items),
        "batch_size": bs, "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
        "load_average": list(os.getloadavg()),
    }
    for kind, batches in kinds.items():
        result[f"{kind}_turns_per_s"] = round(n / seconds[kind], 3)
        result[f"{kind}_padding_share"] = round(_padding_share([[len(it.prompt) for it in b] for b in batches]), 3)
    result["speedup"] = round(result["bucketed_turns_per_s"] / result["unsorted_turns_per_s"], 3)
    print(f"bucketed: {result['bucketed_turns_per_s']} turns/s (padding {result['bucketed_padding_share']:.1%}); "
          f"unsorted: {result['unsorted_turns_per_s']} turns/s (padding {result['unsorted_padding_share']:.1%}); "
          f"speedup {result['speedup']}x")
    return result


def bench_ray_workers(args: argparse.Namespace) -> dict[str, Any]:
    from inspector.runs import run_corpus
    from inspector.runs.ray_backend import RayRunner, ray_cluster

    counts = [int(x) for x in str(args.ray_workers).split(",")]
    im, cfg, plan = _setup(args)
    n = len(plan.items)
    wall: dict[int, list[float]] = {w: [] for w in counts}
    steady: dict[int, list[float]] = {w: [] for w in counts}
    tmp = Path(tempfile.mkdtemp(prefix="bench-corpus-ray-"))
    try:
        with ray_cluster("auto", num_cpus=max(counts)):
            for r in range(args.repeats):
                for w in (counts if r % 2 == 0 else counts[::-1]):
                    marks: list[float] = []
                    runner = RayRunner.for_model(im, args.model, workers=w)
                    t0 = time.perf_counter()
                    run = run_corpus(cfg, tmp / f"run-{r}-{w}", im, model_id=args.model, progress=False, plan=plan,
                                     log=lambda m: None, runner=runner,
                                     on_batch=lambda b, marks=marks: marks.append(time.perf_counter()))
                    wall[w].append(time.perf_counter() - t0)
                    first_batch = len(plan.batches[0])  # batches differ in size only at the end
                    steady[w].append((n - first_batch) / (marks[-1] - marks[0]) if len(marks) > 1 else float("nan"))
                    assert len(run.summary) == n
                    print(f"repeat {r}, {w} worker(s): {wall[w][-1]:.1f} s wall, {steady[w][-1]:.2f} turns/s steady",
                          file=sys.stderr, flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    result: dict[str, Any] = {
        "benchmark": "bench_corpus --ray-workers", "device": args.device, "turns": n,
        "batch_size": cfg.batch_size, "max_new_tokens": args.max_new_tokens, "repeats": args.repeats,
        "cpus_per_worker": 1, "load_average": list(os.getloadavg()),
    }
    for w in counts:
        result[f"workers_{w}_wall_turns_per_s"] = round(n * len(wall[w]) / sum(wall[w]), 3)
        result[f"workers_{w}_steady_turns_per_s"] = round(sum(steady[w]) / len(steady[w]), 3)
        print(f"{w} worker(s): {result[f'workers_{w}_wall_turns_per_s']} turns/s wall (model loading included), "
              f"{result[f'workers_{w}_steady_turns_per_s']} turns/s steady")
    return result
