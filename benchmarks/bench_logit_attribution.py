"""Time of direct logit attribution on a 64-token generation of full-size GPT-2 (random weights), against a target.

One capture of ``--tokens`` generated tokens (a teacher-forced continuation of random
tokens when the model stops early, so the length is always what was asked), then,
``--repeats`` times each: :func:`inspector.analysis.logit_attribution` for the
``chosen`` and the ``margin`` targets, and a plain forward pass over the same final
sequence (the floor: attribution is one such pass with hooks, plus the arithmetic).
Reports the best and the median wall time, the best process CPU time (all threads),
and each median's ratio to the plain pass's. Target on the CPU: under 1 s for 64 tokens.

    python benchmarks/bench_logit_attribution.py [--model NAME] [--tokens 64] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import add_model_args, load_bench_model, machine, time_jobs, write_json  # noqa: E402

PROMPT = "User: what time does the last train leave tonight?\nAgent:"
TARGET_S = 1.0


def _capture(im: Any, tokens: int) -> Any:
    import torch

    cap = im.generate(PROMPT, max_new_tokens=tokens)
    if cap.num_steps == tokens:
        return cap
    ids = torch.randint(0, im.model.config.vocab_size, (tokens,), generator=torch.Generator().manual_seed(0))
    return im.score(PROMPT, ids.tolist())


def main(argv: list[str] | None = None) -> int:
    import torch

    from inspector.analysis import logit_attribution

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args(argv)
    im = load_bench_model(args.model, weights=args.weights)
    cap = _capture(im, args.tokens)
    ids = cap.token_ids[None]

    def forward() -> None:
        with torch.no_grad():
            im.model(input_ids=ids, use_cache=False)

    jobs: dict[str, Callable[[], Any]] = {
        "forward": forward,
        "chosen": lambda: logit_attribution(cap, im),
        "margin": lambda: logit_attribution(cap, im, target="margin"),
    }
    for job in jobs.values():  # warm-up: first-call allocations and lazy imports
        job()
    times, cpu = time_jobs(jobs, args.repeats)
    base = statistics.median(times["forward"])
    result: dict[str, Any] = {
        "model": im.name, "generated_tokens": cap.num_steps, "sequence": cap.seq_len, "target_s": TARGET_S,
        "loadavg": os.getloadavg(), "machine": machine(),
        **{name: {"best_s": min(t), "median_s": statistics.median(t), "cpu_best_s": min(cpu[name]),
                  "median_over_forward": statistics.median(t) / base} for name, t in times.items()},
    }
    for name in jobs:
        r = result[name]
        print(f"{name:8s} best {r['best_s']:.3f} s   median {r['median_s']:.3f} s   cpu {r['cpu_best_s']:.3f} s   "
              f"x{r['median_over_forward']:.2f} of a plain forward pass")
    print(f"{cap.num_steps} generated tokens, {cap.seq_len} in all; target < {TARGET_S:g} s; "
          f"load average {result['loadavg']}")
    write_json(args.json_out, result)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
