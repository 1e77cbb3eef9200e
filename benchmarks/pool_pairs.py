"""Pool the back-to-back ratios of several ``bench_capture.py --json`` runs, with a bootstrap interval.

On a machine whose speed drifts (a shared VM), one run's median of 20-40 pairs moves by a few percent.
Each repetition's ratio (a method's time over plain ``generate``'s, run back to back) is one sample;
pooling the samples of several runs and bootstrapping their median says how well the data pin it down.

Usage::

    python benchmarks/pool_pairs.py run1.json run2.json [--batch 1] [--resamples 4000]
"""

from __future__ import annotations

import argparse
import json
import random
import statistics
from pathlib import Path


def pooled_ratios(paths: list[Path], batch: int) -> dict[str, list[float]]:
    """Per method, every repetition's time over plain's (same repetition) at ``batch``, over all ``paths``."""
    pooled: dict[str, list[float]] = {}
    for path in paths:
        for case in json.loads(path.read_text())["results"]:
            if case["batch"] != batch:
                continue
            plain = case["all_s"]["plain"]
            for method, times in case["all_s"].items():
                if method != "plain" and len(times) == len(plain):
                    pooled.setdefault(method, []).extend(t / p for t, p in zip(times, plain, strict=True))
    return pooled


def bootstrap_median(samples: list[float], resamples: int, seed: int = 0) -> tuple[float, float]:
    """A 95% percentile-bootstrap interval of the median of ``samples``."""
    rng = random.Random(seed)
    medians = sorted(statistics.median(rng.choices(samples, k=len(samples))) for _ in range(resamples))
    return medians[int(0.025 * resamples)], medians[int(0.975 * resamples) - 1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", nargs="+", type=Path, help="JSON files written by bench_capture.py --json")
    p.add_argument("--batch", type=int, default=1)
    p.add_argument("--resamples", type=int, default=4000)
    args = p.parse_args(argv)
    pooled = pooled_ratios(args.runs, args.batch)
    if not pooled:
        raise SystemExit(f"no batch-{args.batch} results with plain timings in {', '.join(map(str, args.runs))}")
    print(f"batch {args.batch}, {len(args.runs)} runs: median of back-to-back ratios to plain generate")
    for method, ratios in pooled.items():
        low, high = bootstrap_median(ratios, args.resamples)
        print(f"{method:<12} {statistics.median(ratios):.3f}x  (95% bootstrap interval {low:.3f}-{high:.3f}x, "
              f"{len(ratios)} pairs)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
