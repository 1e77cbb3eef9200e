"""inseq's attribution of a greedy generation, timed, written as JSON: the other side of bench_context_attribution.py.

Runs in a virtual environment with inseq installed (not the project's; it does not import inspector):

    python -m venv /work/inseq-venv && /work/inseq-venv/bin/pip install torch==2.13.0 inseq
    /work/inseq-venv/bin/python benchmarks/compare_inseq.py --model-dir /tmp/ca_gpt2 --prompt "..." \\
        --new-tokens 8 --method integrated_gradients --steps 32 --json inseq.json

The attributed quantity is the generated token's log-probability (a step function ``logprob`` registered
here), the per-token score the attribution summed over the embedding dimension, as in inspector.
``scores`` is ``[step][position]`` over the full sequence (prompt then generated), ``null`` for positions
that are no input of the step. Timing: ``--repeats`` calls that force the text (``--text``, or the greedy
generation; no generation is timed), best and median; peak memory: the resident set size above the start of
the first timed call, sampled.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import threading
import time
from typing import Any


def _rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


class _Peak:
    def __enter__(self) -> _Peak:
        self.start = self.peak = _rss()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss())
            time.sleep(0.002)

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss())


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model-dir", required=True, help="a saved model folder (weights, config, tokenizer)")
    ap.add_argument("--prompt", required=True)
    ap.add_argument("--new-tokens", type=int, default=8)
    ap.add_argument("--method", default="integrated_gradients", choices=["input_x_gradient", "integrated_gradients"])
    ap.add_argument("--steps", type=int, default=32, help="integrated gradients: n_steps (gausslegendre)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--text", default=None,
                    help="the full text (prompt and reply) to force; default: generate greedily first (that call "
                    "is not timed, and it warms the process, so the peak memory of the timed calls is lower)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from importlib.metadata import version

    import inseq
    import torch
    from inseq.attr.step_functions import probability_fn

    inseq.register_step_function(fn=lambda a: probability_fn(a, logprob=True), identifier="logprob",
                                 overwrite=True)
    model = inseq.load_model(args.model_dir, args.method)
    extra: dict[str, Any] = {"n_steps": args.steps} if args.method == "integrated_gradients" else {}
    if args.text is None:
        first = model.attribute(args.prompt, generation_args={"max_new_tokens": args.new_tokens, "do_sample": False},
                                attributed_fn="logprob", step_scores=["logprob"], show_progress=False,
                                attribution_args=extra)
        ids = [t.id for t in first.sequence_attributions[0].target]
        text = model.tokenizer.decode(ids)
    else:
        text, ids = args.text, []
    times, peaks = [], []
    for _ in range(args.repeats):
        with _Peak() as peak:
            t0 = time.perf_counter()
            out = model.attribute(args.prompt, text, attributed_fn="logprob", step_scores=["logprob"],
                                  show_progress=False, attribution_args=extra)
            times.append(time.perf_counter() - t0)
        peaks.append(peak.peak - peak.start)
    seq = out.sequence_attributions[0]
    forced_ids = [t.id for t in seq.target]
    attr = seq.target_attributions  # [position, step, d]: granular, per embedding dimension
    scores = attr.sum(-1).T  # [step, position]
    prompt_len = len(forced_ids) - scores.shape[0]
    rows = [[None if (j >= prompt_len + i or torch.isnan(v)) else float(v) for j, v in enumerate(row)]
            for i, row in enumerate(scores)]
    new = len(forced_ids) - prompt_len
    doc = {
        "library": "inseq", "inseq": version("inseq"), "torch": torch.__version__, "threads": torch.get_num_threads(),
        "method": args.method, "steps": args.steps, "token_ids": forced_ids, "generated_ids": ids,
        "prompt_len": prompt_len, "scores": rows, "target": seq.step_scores["logprob"].tolist(),
        "seconds": times, "best_seconds": min(times), "median_seconds": statistics.median(times),
        "seconds_per_token": min(times) / new, "peak_bytes": peaks[0], "peaks": peaks, "loadavg": os.getloadavg(),
    }
    text_out = json.dumps(doc)
    if args.json:
        with open(args.json, "w") as fh:
            fh.write(text_out)
    print(json.dumps({k: v for k, v in doc.items() if k not in ("scores", "token_ids", "generated_ids", "target")}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
