"""Context attribution, inspector against inseq: time per generated token, peak memory, and the values.

Inspector attributes a greedy capture of ``--prompt`` (:func:`inspector.analysis.context_attribution.
context_attribution`, baseline ``unk`` as inseq's integrated gradients); with ``--inseq-python`` the same
weights are saved to ``--save-dir`` and ``benchmarks/compare_inseq.py`` attributes the same prompt with
inseq in that interpreter (a separate virtual environment), and the two are compared: the token ids, the
largest relative difference of each step's scores (``max |a - b| / max |b|``), seconds per generated token
(best of ``--repeats``), peak resident memory above the start of the first call (each side in its own
process, after loading the model and before any attribution). The load average is recorded with each side.

    python benchmarks/bench_context_attribution.py [--model smollm2] [--new-tokens 8] \\
        [--method integrated_gradients] [--steps 32] [--rule gausslegendre] \\
        [--inseq-python /work/inseq-venv/bin/python] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

PROMPT = "The password is 7341. Do not forget it, and do not tell anyone. The password is"


def _max_relative_difference(ours: list[list[float | None]], theirs: list[list[float | None]], prompt_len: int
                             ) -> list[float]:
    out = []
    for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
        n = prompt_len + i
        pairs = [(x, y) for x, y in zip(a[:n], b[:n], strict=True) if x is not None and y is not None]
        scale = max(abs(y) for _, y in pairs) or 1.0
        out.append(max(abs(x - y) for x, y in pairs) / scale)
    return out


def main(argv: list[str] | None = None) -> int:
    import torch
    from _common import add_model_args, load_bench_model, machine, timed, write_json

    from inspector.analysis.choices import IG_RULES
    from inspector.analysis.context_attribution import context_attribution

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    add_model_args(ap)
    ap.add_argument("--prompt", default=PROMPT)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--method", default="integrated_gradients", choices=["input_x_gradient", "integrated_gradients"])
    ap.add_argument("--steps", type=int, default=32)
    ap.add_argument("--rule", default="gausslegendre", choices=IG_RULES,
                    help="inspector's quadrature rule (default: %(default)s, the nodes inseq uses, for a like-for-like "
                         "comparison; bench_ig_completeness.py measures the adaptive rule)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--inseq-python", default=None, help="a Python with inseq installed (default: no comparison)")
    ap.add_argument("--save-dir", default=None, help="where the weights are saved for inseq (default: a temp folder)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    im = load_bench_model(args.model, weights=args.weights)
    cap = im.generate(args.prompt, max_new_tokens=args.new_tokens)
    n = cap.num_steps

    def run() -> Any:
        return context_attribution(cap, im, method=args.method, steps=args.steps, rule=args.rule, baseline="unk")

    runs = [timed(run, im.device) for _ in range(args.repeats)]
    best = min(s for s, _, _ in runs)
    result = runs[0][1]
    ours: dict[str, Any] = {
        "seconds": [s for s, _, _ in runs], "best_seconds": best, "seconds_per_token": best / n,
        "peak_bytes": runs[0][2], "loadavg": os.getloadavg(),
    }
    if result.completeness_error is not None:
        ours["completeness_error_max"] = float(result.completeness_error.max())
    report: dict[str, Any] = {
        "model": im.name, "random_weights": im.random_weights, "method": args.method, "steps": args.steps,
        "rule": args.rule, "prompt_tokens": cap.prompt_len, "generated_tokens": n, "machine": machine(),
        "inspector": ours,
    }
    if args.inseq_python:
        folder = Path(args.save_dir or tempfile.mkdtemp(prefix="inspector-bench-"))
        if not (folder / "config.json").is_file():
            im.model.save_pretrained(folder)
            im.tokenizer.save_pretrained(folder)
        out = folder / "inseq.json"
        subprocess.run([args.inseq_python, str(ROOT / "benchmarks" / "compare_inseq.py"), "--model-dir", str(folder),
                        "--prompt", args.prompt, "--new-tokens", str(args.new_tokens), "--method", args.method,
                        "--steps", str(args.steps), "--repeats", str(args.repeats), "--json", str(out),
                        "--text", im.tokenizer.decode(cap.token_ids)], check=True)
        theirs = json.loads(out.read_text())
        same = theirs["token_ids"] == cap.token_ids.tolist() and theirs["prompt_len"] == cap.prompt_len
        report["inseq"] = {k: theirs[k] for k in ("inseq", "seconds", "best_seconds", "seconds_per_token",
                                                  "peak_bytes", "loadavg")}
        report["same_tokens"] = same
        if same:
            diffs = _max_relative_difference(result.to_dict()["scores"], theirs["scores"], cap.prompt_len)
            report["max_relative_difference_per_step"] = diffs
            report["max_relative_difference"] = max(diffs)
            report["target_max_abs_difference"] = float(
                (result.target - torch.tensor(theirs["target"])).abs().max())
        report["speedup_vs_inseq"] = theirs["best_seconds"] / best
    write_json(args.json, report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
