"""Integrated gradients: how complete each quadrature rule is, and what it costs, on real dialogue prompts.

For the first turn of each of ``--dialogues`` DailyDialog validation dialogues (as one user message in the
model's chat template; as text where it has none), the model generates ``--new-tokens`` tokens greedily, and
integrated gradients attribute every generated token with each baseline of ``--baselines`` by each
configuration: Gauss-Legendre at each of ``--fixed-steps`` nodes, and the adaptive rule (32 first nodes,
tolerance 5%, at most 512 per token). Per configuration: the share of generated tokens complete within 5%
(``|sum(scores) - (target - baseline_target)| <= 5% of |target - baseline_target|``), the median and largest
completeness error, the mean gradient evaluations per token, and seconds per token (the configurations of one
capture and baseline alternate in one process, so they see the same machine load).

    python benchmarks/bench_ig_completeness.py [--model smollm2] [--dialogues 4] [--new-tokens 6] \\
        [--baselines zero,unk] [--fixed-steps 32,128,512] [--json out.json]
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
sys.path.insert(0, str(ROOT / "benchmarks"))

TOLERANCE = 0.05


def _job(results: dict[str, Any], name: str, capture: Any, model: Any, baseline: str, options: dict[str, Any]
         ) -> Callable[[], None]:
    """A job that attributes ``capture`` with ``options`` and keeps the result in ``results[name]``."""
    from inspector.analysis.context_attribution import context_attribution

    def run() -> None:
        results[name] = context_attribution(capture, model, baseline=baseline, **options)
    return run


def main(argv: list[str] | None = None) -> int:
    from _common import add_model_args, load_bench_model, machine, time_jobs, write_json

    import inspector
    from inspector.data import chat_text_prompt
    from inspector.data.chat import has_chat_template

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--dialogues", type=int, default=4)
    ap.add_argument("--new-tokens", type=int, default=6)
    ap.add_argument("--baselines", default="zero,unk")
    ap.add_argument("--fixed-steps", default="32,128,512")
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args(argv)

    im = load_bench_model(args.model, weights=args.weights)
    dialogues = inspector.load_dailydialog(split="validation")
    texts = [dialogues[i].turns[0] for i in range(args.dialogues)]
    baselines = [b for b in args.baselines.split(",") if b]
    configs: dict[str, dict[str, Any]] = {f"gausslegendre-{n}": {"rule": "gausslegendre", "steps": int(n)}
                                          for n in args.fixed_steps.split(",") if n}
    configs["adaptive"] = {"rule": "adaptive", "steps": 32, "tolerance": TOLERANCE}
    errors: dict[tuple[str, str], list[float]] = {(b, c): [] for b in baselines for c in configs}
    nodes: dict[tuple[str, str], list[int]] = {(b, c): [] for b in baselines for c in configs}
    seconds: dict[tuple[str, str], float] = {(b, c): 0.0 for b in baselines for c in configs}
    tokens = 0
    for text in texts:
        prompt = chat_text_prompt(text, im.tokenizer).text if has_chat_template(im.tokenizer) else text
        cap = im.generate(prompt, max_new_tokens=args.new_tokens)
        tokens += cap.num_steps
        print(f"{text[:60]!r} -> {cap.generated_text!r}", flush=True)
        for b in baselines:
            results: dict[str, Any] = {}
            times, _ = time_jobs({name: _job(results, name, cap, im, b, opts) for name, opts in configs.items()},
                                 repeats=1)
            for name in configs:
                r = results[name]
                errors[b, name] += r.completeness_error.tolist()
                nodes[b, name] += r.nodes.tolist()
                seconds[b, name] += times[name][0]
    rows = []
    print(f"\n{'baseline':8s} {'rule':20s} {'<= 5%':>7s} {'median':>8s} {'max':>9s} {'nodes':>6s} {'s/token':>8s}")
    for (b, name), errs in errors.items():
        row = {"baseline": b, "rule": name, "tokens": len(errs),
               "complete_share": sum(e <= TOLERANCE for e in errs) / len(errs),
               "median_error": statistics.median(errs), "max_error": max(errs),
               "mean_nodes": statistics.mean(nodes[b, name]), "seconds_per_token": seconds[b, name] / tokens}
        rows.append(row)
        print(f"{b:8s} {name:20s} {row['complete_share']:7.0%} {row['median_error']:8.3f} {row['max_error']:9.3f} "
              f"{row['mean_nodes']:6.0f} {row['seconds_per_token']:8.2f}")
    print(f"{tokens} generated tokens from {len(texts)} dialogues; load average {os.getloadavg()}")
    write_json(args.json_out, {"model": im.name, "random_weights": im.random_weights, "tokens": tokens,
                               "tolerance": TOLERANCE, "rows": rows, "machine": machine(),
                               "loadavg": os.getloadavg()})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
