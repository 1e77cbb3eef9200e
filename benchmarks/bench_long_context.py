"""Selective capture at a long context: time and memory of full, generated-rows and head-mean attention.

Full-size GPT-2 small (config from ../shared, random weights, eager attention), one prompt of
``--prompt-tokens`` tokens (default 960) and ``--new-tokens`` new ones (default 64): the whole
1,024-token context. Methods:

* ``plain``: ``model.generate`` with the KV cache, nothing captured (the baseline);
* ``full``: every layer and head, ``[layer, head, query, key]`` (fp16);
* ``generated rows``: ``attention_rows="generated"``, ``[layer, head, step, key]``;
* ``head mean``: ``head_reduce="mean"``, ``[layer, 1, query, key]``;
* ``rows + mean``: both.

Time is the median of ``--reps`` runs, interleaved in this process. Peak memory is measured
in a fresh subprocess per method as in ``bench_capture.py`` (see its docstring): the resident set
size above the start of the run on the CPU, the allocator's peak on CUDA. ``estimate`` is
:func:`inspector._capture.budget.estimate_capture`'s bound on the bytes kept.

Usage::

    python benchmarks/bench_long_context.py                  # 960 + 64 tokens, CPU
    python benchmarks/bench_long_context.py --json out.json  # also write the results
    python benchmarks/bench_long_context.py --prompt-tokens 64 --new-tokens 8 --reps 1   # a quick check
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import gpt2_offline_dir, machine, median, timed, write_json  # noqa: E402
from bench_capture import child_env, make_prompts, memory_child_run, tensor_bytes  # noqa: E402

import inspector  # noqa: E402

#: Capture settings of each method (``plain`` is ``model.generate``).
METHODS: dict[str, dict[str, Any]] = {
    "full": {},
    "generated rows": {"attention_rows": "generated"},
    "head mean": {"head_reduce": "mean"},
    "rows + mean": {"attention_rows": "generated", "head_reduce": "mean"},
}


def runner(im: Any, method: str, prompt: str, new_tokens: int) -> Any:
    """A no-argument callable running ``method`` once."""
    tok, model = im.tokenizer, im.model
    if method == "plain":
        enc = tok([prompt], return_tensors="pt").to(im.device)

        def plain() -> Any:
            with torch.no_grad():
                # what the capture asks of generate (no min_new_tokens: greedy stops both at the same step)
                return model.generate(**enc, use_cache=True, max_new_tokens=new_tokens, do_sample=False,
                                      pad_token_id=tok.eos_token_id)
        return plain
    return lambda: [im.generate(prompt, max_new_tokens=new_tokens, **METHODS[method])]


def kept_bytes(method: str, result: Any) -> int:
    return tensor_bytes(result) if method == "plain" else sum(c.nbytes for c in result)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--prompt-tokens", type=int, default=960)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--json", default=None, help="write results as JSON here")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)

    im = inspector.load_model(gpt2_offline_dir(), device=args.device, random_weights=True)
    if args.prompt_tokens + args.new_tokens > im.context_length:
        raise SystemExit(f"--prompt-tokens + --new-tokens must fit the {im.context_length}-token context")
    prompt = make_prompts(im.tokenizer, 1, args.prompt_tokens)[0]
    names = ["plain", *METHODS]
    if args.memory_child:
        run = runner(im, args.memory_child, prompt, args.new_tokens)
        warm = runner(im, args.memory_child, prompt, 2)
        r = memory_child_run(im.device, run, warm, lambda res: kept_bytes(args.memory_child, res))
        print("MEMORY " + json.dumps(r))
        return 0
    print(f"model: {im.describe()}; {args.prompt_tokens} + {args.new_tokens} tokens")
    fns = {m: runner(im, m, prompt, args.new_tokens) for m in names}
    for m in names:
        runner(im, m, prompt, 2)()  # warm-up
    times: dict[str, list[float]] = {m: [] for m in names}
    kept: dict[str, int] = {}
    for _ in range(args.reps):
        for m in names:
            seconds, result, _ = timed(fns[m], im.device)
            times[m].append(seconds)
            kept[m] = kept_bytes(m, result)
            del result
    from inspector._capture.budget import ModelSizes, estimate_capture
    from inspector._capture.settings import GenerationSettings

    sizes = ModelSizes.of(im.model)
    rows: list[dict[str, Any]] = []
    for m in names:
        row: dict[str, Any] = {"method": m, "median_s": median(times[m]), "all_s": times[m], "kept_bytes": kept[m]}
        row["over_plain"] = row["median_s"] / median(times["plain"])
        if m != "plain":
            settings = GenerationSettings(max_new_tokens=args.new_tokens, **METHODS[m]).selected(
                im.num_layers, im.num_heads)
            row["estimate_bytes"] = estimate_capture(settings, sizes, [args.prompt_tokens]).kept
        if not args.no_memory:
            cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", m, "--device", args.device,
                   "--prompt-tokens", str(args.prompt_tokens), "--new-tokens", str(args.new_tokens)]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env())
            line = next((x for x in proc.stdout.splitlines() if x.startswith("MEMORY ")), None)
            row["memory"] = json.loads(line[7:]) if line and not proc.returncode else {
                "error": (proc.stderr or "no output").strip().splitlines()[-1:]}
        rows.append(row)
    plain_peak = rows[0].get("memory", {}).get("peak_above_start_bytes")
    mb = 1e6
    print(f"{'method':<15} {'median s':>9} {'vs plain':>9} {'kept MB':>9} {'estimate MB':>12} {'peak +MB':>9} "
          f"{'peak-plain MB':>14}")
    for row in rows:
        mem = row.get("memory", {})
        peak = mem.get("peak_above_start_bytes")
        skip = peak is None or plain_peak is None or row["method"] == "plain"
        above = "" if skip else f"{(peak - plain_peak) / mb:.1f}"
        est = f"{row['estimate_bytes'] / mb:.1f}" if "estimate_bytes" in row else ""
        print(f"{row['method']:<15} {row['median_s']:>9.3f} {row['over_plain']:>8.2f}x {row['kept_bytes'] / mb:>9.1f} "
              f"{est:>12} {'' if peak is None else f'{peak / mb:.1f}':>9} {above:>14}")
        if "error" in mem:
            print(f"  memory of {row['method']} failed: {mem['error']}")
    write_json(args.json, {"benchmark": "long_context", "machine": machine(), "device": str(im.device),
                           "prompt_tokens": args.prompt_tokens, "new_tokens": args.new_tokens, "results": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
