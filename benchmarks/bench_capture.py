"""Capture overhead: plain ``generate`` vs the notebook's method vs inspector's capture, in time and peak memory.

Full-size GPT-2 small (random weights, eager attention), prompts of exactly
``--prompt-tokens`` tokens, greedy; by default batch 1 and 16 with 64 new tokens and batch 8
with 32. Methods:

* ``plain``: ``model.generate`` with the KV cache, nothing captured;
* ``plain+cache``: the same, run as the capture runs it (its reserved KV cache, under
  ``torch.inference_mode``), nothing captured; the capture's time over this one's is the recording's
  own cost (``capture_over_same_cache``);
* ``notebook``: the originating notebook's call (``use_cache=False``,
  ``output_attentions``, ``output_logits``, ``return_dict_in_generate``) followed by
  its stacked mean per step, ``torch.stack(output.attentions[step]).mean(dim=0)``;
* ``inspector``: ``model.generate`` with default settings (fp16 attention,
  top-10 logits per step, every attention row kept);
* ``+layers``: the same, also keeping hidden states (fp16) and value norms
  (``keep_hidden_states=True, keep_value_norms=True``); its cost over ``inspector``
  is reported as ``layers_over_capture``;
* ``selective``: 3 layers (0, 6, 11), generated rows only (``attention_rows="generated"``);
* ``+logits``: default settings plus the full-vocabulary logits of every step (``keep_logits=True``);
  its cost over ``inspector`` is reported as ``logits_over_capture``, its peak memory over what it
  keeps like the others'.

Time: every method runs in this one process, interleaved, on the same model; the ratio is
each median over plain's. Peak memory: each method runs again in fresh subprocesses (3 each by
default, in turn, the median counting; in each the model is loaded and a 2-token warm-up done
first), because a process that already ran other
methods keeps freed heap pages and hides the next peak. On the CPU the peak is the resident set
size above its start, with glibc's mmap threshold fixed at 128 kB (see :func:`child_env`):
on Linux the kernel's exact high-water mark ``VmHWM``, reset just before the run
(``/proc/self/clear_refs``); elsewhere ``ru_maxrss`` when the run raised it, else the highest
RSS sampled every 2 ms. torch's CPU allocations are invisible to ``tracemalloc`` and torch
keeps no CPU allocator statistics. On CUDA it is ``torch.cuda.max_memory_allocated``.
``peak_over_kept`` is (peak of the method minus peak of
plain) over the bytes its captures keep; the target is at most 1.5.

Usage::

    python benchmarks/bench_capture.py                       # CPU, batch 1, 8, 16
    python benchmarks/bench_capture.py --device cuda --long  # + the 256+128, batch 16 case
    python benchmarks/bench_capture.py --no-memory           # time only
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import (  # noqa: E402
    PeakMemory,
    add_model_args,
    load_bench_model,
    machine,
    median,
    rss_bytes,
    timed,
    write_json,
)

import inspector  # noqa: E402


def make_prompts(tokenizer: Any, n: int, tokens: int) -> list[str]:
    """``n`` distinct prompts of exactly ``tokens`` tokens each (dialogue-like text): the notebook's
    ``User: ...\nAgent:`` form, or one user message in the tokenizer's chat template where it has one."""
    base = (
        "User: I was wondering whether you could help me find a good restaurant near the station tonight, "
        "somewhere quiet where we can talk about the project and maybe have a glass of wine after work.\nAgent:"
    )
    chat = getattr(tokenizer, "chat_template", None) is not None

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    def wrap(content: str) -> str:
        if not chat:
            return content
        return str(tokenizer.apply_chat_template([{"role": "user", "content": content}], tokenize=False,
                                                 add_generation_prompt=True))

    overhead = count(wrap("")) if chat else 0
    prompts = []
    for i in range(n):
        ids = tokenizer(f"({i}) " + base * (tokens // 16 + 1), add_special_tokens=False)["input_ids"]
        want = tokens - overhead
        text = wrap(tokenizer.decode(ids[:want]))
        while count(text) > tokens and want > 1:  # a merge across the template's edge: one token less
            want -= 1
            text = wrap(tokenizer.decode(ids[:want]))
        assert count(text) == tokens, f"prompt does not round-trip to {tokens} tokens ({count(text)})"
        prompts.append(text)
    return prompts


def tensor_bytes(obj: Any) -> int:
    if isinstance(obj, torch.Tensor):
        return obj.numel() * obj.element_size()
    if isinstance(obj, (tuple, list)):
        return sum(tensor_bytes(x) for x in obj)
    return 0


#: The method that also keeps hidden states and value norms.
LAYERS = "+layers"
#: plain ``generate`` run as the capture runs it, with its reserved KV cache and under ``torch.inference_mode``,
#: nothing recorded: the capture's own cost (the recording) is its time over this one's.
RESERVED = "plain+cache"
#: The method that also keeps every step's full-vocabulary logits.
LOGITS = "+logits"
#: The selective method's settings.
SELECTIVE = {"layers": [0, 6, 11], "attention_rows": "generated"}
#: New tokens per batch size when --new-tokens is not given (the measured cases).
NEW_TOKENS = {1: 64, 8: 32, 16: 64}


def capture_methods(im: Any, prompts: list[str], new_tokens: int) -> dict[str, Any]:
    """The capture methods by name: each returns its list of captures."""
    def make(**kw: Any) -> Any:
        def run() -> list[inspector.Capture]:
            caps = im.generate(prompts, max_new_tokens=new_tokens, **kw)
            return caps if isinstance(caps, list) else [caps]
        return run

    return {"inspector": make(), LAYERS: make(keep_hidden_states=True, keep_value_norms=True),
            "selective": make(**SELECTIVE), LOGITS: make(keep_logits=True)}


def run_case(im: Any, batch: int, prompt_tokens: int, new_tokens: int, reps: int, notebook: bool,
             only: set[str] | None = None, sample_memory: bool = False) -> dict[str, Any]:
    """Every method ``reps`` times, interleaved: the order reverses on odd repetitions (ABBA), so a drift in
    the machine's speed hits all alike. ``only``: these methods (plain always runs)."""
    tok, model, dev = im.tokenizer, im.model, im.device
    prompts = make_prompts(tok, batch, prompt_tokens)
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
    # Exactly what the capture asks of generate: no min_new_tokens (its processor costs plain ~2% at batch
    # 16, a cost the capture does not pay); greedy on the same model stops both at the same step (checked).
    common = dict(max_new_tokens=new_tokens, do_sample=False, pad_token_id=tok.pad_token_id)

    def plain() -> torch.Tensor:
        with torch.no_grad():
            return model.generate(**enc, use_cache=True, **common)

    def notebook_method() -> tuple[Any, list[torch.Tensor]]:
        with torch.no_grad():
            out = model.generate(**enc, use_cache=False, output_attentions=True, output_logits=True,
                                 return_dict_in_generate=True, **common)
            stacked = [torch.stack(out.attentions[step]).mean(dim=0) for step in range(len(out.attentions))]
        return out, stacked

    def plain_reserved() -> torch.Tensor:
        """plain generate as the capture runs it: its KV cache (room reserved, written in place), inference
        mode; nothing recorded"""
        from inspector._capture.reserved_cache import reserved_cache
        from inspector._compat import cache_kwarg

        cache = reserved_cache(model, int(enc["input_ids"].shape[1]) + new_tokens)
        with torch.inference_mode():
            return model.generate(**enc, use_cache=True, **common, **{cache_kwarg(model): cache})

    methods = {"plain": plain, RESERVED: plain_reserved, **capture_methods(im, prompts, new_tokens)}
    if notebook:
        methods["notebook"] = notebook_method
    if only:
        methods = {m: f for m, f in methods.items() if m == "plain" or m in only}
    # warm-up (allocator, kernels): one short run each
    with torch.no_grad():
        model.generate(**enc, max_new_tokens=2, pad_token_id=tok.pad_token_id)
    for fn in capture_methods(im, prompts, 2).values():
        fn()

    times: dict[str, list[float]] = {m: [] for m in methods}
    peaks: dict[str, list[int]] = {m: [] for m in methods}
    kept: dict[str, int] = {}
    steps: dict[str, int] = {}
    failed: dict[str, str] = {}
    for rep in range(reps):
        order = list(methods.items())
        for name, fn in order if rep % 2 == 0 else order[::-1]:
            if name not in methods:  # ran out of memory earlier
                continue
            try:
                seconds, result, peak = timed(fn, dev, memory=sample_memory)
            except (torch.cuda.OutOfMemoryError, MemoryError) as exc:
                # the notebook's method at 256+128 tokens, batch 16, ran out of an 80 GB GPU: say so, go on
                failed[name] = f"out of memory: {str(exc).splitlines()[0][:200]}"
                print(f"  {name}: OUT OF MEMORY ({failed[name]})", flush=True)
                methods.pop(name)
                times.pop(name)
                peaks.pop(name)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
                continue
            times[name].append(seconds)
            peaks[name].append(peak)
            if name in ("plain", RESERVED):
                kept[name] = tensor_bytes(result) // batch
                steps[name] = int(result.shape[1]) - int(enc["input_ids"].shape[1])
            elif name == "notebook":
                out, stacked = result
                kept[name] = (tensor_bytes(out.attentions) + tensor_bytes(out.logits) + tensor_bytes(stacked)) // batch
                steps[name] = len(out.logits)
            else:
                kept[name] = sum(c.nbytes for c in result) // batch
                steps[name] = min(c.num_steps for c in result)
            del result
    med = {m: median(t) for m, t in times.items()}
    # each repetition's pair, run back to back: robust to a slow spell that spans one repetition
    paired = {m: median([a / b for a, b in zip(t, times["plain"], strict=True)]) for m, t in times.items()
              if m != "plain" and len(t) == len(times["plain"])}
    capture_steps = [v for m, v in steps.items() if m not in ("plain", "notebook", RESERVED)]
    if any(v != steps["plain"] for v in capture_steps):
        print(f"  WARNING: the methods generated different numbers of steps: {steps}", flush=True)
    res: dict[str, Any] = {
        "batch": batch,
        "prompt_tokens": prompt_tokens,
        "new_tokens": new_tokens,
        "reps": reps,
        "median_s": med,
        "all_s": times,
        "steps": steps,
        "bytes_kept_per_prompt": kept,
        "peak_mem_above_start_bytes": {m: max(p) for m, p in peaks.items()},
        "capture_over_plain": med["inspector"] / med["plain"] if "inspector" in med else None,
        "paired_over_plain": paired,
        "failed": failed,
    }
    if sample_memory and "inspector" in med:
        res["peak_mem_capture_minus_plain_bytes"] = (
            res["peak_mem_above_start_bytes"]["inspector"] - res["peak_mem_above_start_bytes"]["plain"]
        )
    if RESERVED in med and "inspector" in med:
        # what recording costs on top of the very same generation (same cache), pair by pair
        res["capture_over_same_cache"] = median([a / b for a, b in zip(times["inspector"], times[RESERVED],
                                                                       strict=True)])
    if LAYERS in med and "inspector" in med:
        res["layers_over_capture"] = med[LAYERS] / med["inspector"]
    if LOGITS in med and "inspector" in med:
        res["logits_over_capture"] = med[LOGITS] / med["inspector"]
    if notebook and "notebook" in med:
        res["notebook_over_capture"] = med["notebook"] / med["inspector"]
        res["notebook_bytes_over_capture"] = kept["notebook"] / kept["inspector"]
    return res


def memory_child(im: Any, method: str, batch: int, prompt_tokens: int, new_tokens: int) -> dict[str, Any]:
    """Peak memory above the start of one run of ``method`` in this (fresh) process; see the module docstring."""
    tok, model, dev = im.tokenizer, im.model, im.device
    prompts = make_prompts(tok, batch, prompt_tokens)
    enc = tok(prompts, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)

    def plain(n: int) -> Any:
        with torch.no_grad():
            return model.generate(**enc, use_cache=True, max_new_tokens=n, do_sample=False,
                                  pad_token_id=tok.pad_token_id)

    def run(n: int) -> Any:
        return plain(n) if method == "plain" else capture_methods(im, prompts, n)[method]()

    r = memory_child_run(dev, lambda: run(new_tokens), lambda: run(2),
                         lambda res: tensor_bytes(res) if method == "plain" else sum(c.nbytes for c in res))
    return {"method": method, **r}


def memory_child_run(dev: torch.device, run: Any, warm: Any, kept: Any) -> dict[str, Any]:
    """Peak memory above the start of ``run()`` after ``warm()``, and ``kept(result)``; see the module docstring."""
    import gc

    warm()  # lazy imports, kernels, the allocator's first pages
    gc.collect()
    exact = dev.type == "cpu" and reset_peak_rss()
    max_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    with PeakMemory(dev) as mem:
        result = run()
    max_after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    if exact:  # the kernel's high-water mark since the reset: every transient peak, however short
        above, how = status_kb("VmHWM") * 1024 - mem.start, "VmHWM"
    elif dev.type == "cpu" and max_after > max_before:  # this run set the process's peak: exact too
        above, how = max_after - mem.start, "ru_maxrss"
    else:
        above, how = mem.peak_above_start, "cuda allocator" if dev.type == "cuda" else "sampled rss"
    return {"peak_above_start_bytes": above, "kept_bytes": kept(result), "measured_by": how,
            "rss_after_bytes": rss_bytes()}


def status_kb(key: str) -> int:
    """A ``kB`` field of ``/proc/self/status`` (Linux)."""
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith(key + ":"):
                return int(line.split()[1])
    raise KeyError(key)


def reset_peak_rss() -> bool:
    """Resets the kernel's peak-RSS mark (``VmHWM``; Linux >= 4.0); whether that worked."""
    try:
        with open("/proc/self/clear_refs", "w", encoding="ascii") as fh:
            fh.write("5")
        status_kb("VmHWM")
    except (OSError, KeyError):
        return False
    return True


def child_env() -> dict[str, str]:
    """The environment of a memory subprocess: glibc's mmap threshold fixed at 128 kB.

    By default glibc raises the threshold (up to 32 MB) after large blocks are freed, as loading
    a model does; later allocations then reuse heap pages that are already resident and the RSS
    does not show them. A fixed threshold maps every block over 128 kB afresh and returns it on free.
    """
    import os

    return {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072"}


def memory_case(args: argparse.Namespace, batch: int, new_tokens: int, methods: list[str]) -> dict[str, Any]:
    """Each method's peak memory in fresh subprocesses, and the capture methods' peak over plain's / bytes kept.

    Each method runs ``--memory-reps`` times, the methods in turn; the median peak of each counts. A single
    fresh process's peak moved by about 1 MB between runs at batch 1 (heap pages left resident by the
    warm-up), as much as a selective capture keeps there.
    """
    runs: dict[str, list[dict[str, Any]]] = {m: [] for m in methods}
    errors: dict[str, Any] = {}
    for _ in range(max(1, args.memory_reps)):
        for m in methods:
            if m in errors:
                continue
            cmd = [sys.executable, str(Path(__file__).resolve()), "--memory-child", m, "--batches", str(batch),
                   *(["--model", args.model] if args.model else []), "--weights", args.weights,
                   "--new-tokens", str(new_tokens), "--prompt-tokens", str(args.prompt_tokens), "--device",
                   args.device]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False, env=child_env())
            line = next((x for x in proc.stdout.splitlines() if x.startswith("MEMORY ")), None)
            if proc.returncode or line is None:
                errors[m] = {"error": (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]}
                continue
            runs[m].append(json.loads(line[len("MEMORY "):]))
    out: dict[str, Any] = dict(errors)
    for m, rs in runs.items():
        if m in errors or not rs:
            continue
        peaks = sorted(r["peak_above_start_bytes"] for r in rs)
        out[m] = {**rs[0], "peak_above_start_bytes": median(peaks), "peak_runs_bytes": peaks}
    plain = out.get("plain", {}).get("peak_above_start_bytes")
    for m, r in out.items():
        if m not in ("plain", RESERVED) and plain is not None and "kept_bytes" in r and r["kept_bytes"]:
            r["peak_above_plain_bytes"] = r["peak_above_start_bytes"] - plain
            r["peak_over_kept"] = r["peak_above_plain_bytes"] / r["kept_bytes"]
    return out


def print_case(r: dict[str, Any]) -> None:
    mb = 1e6
    print(f"\n== batch {r['batch']}, {r['prompt_tokens']}+{r['new_tokens']} tokens, median of {r['reps']} ==")
    print(f"{'method':<10} {'median s':>9} {'vs plain':>9} {'paired':>8} {'min s':>8} {'kept/prompt MB':>15} "
          f"{'steps':>6}")
    for m, s in r["median_s"].items():
        pair = r["paired_over_plain"].get(m)
        print(f"{m:<10} {s:>9.3f} {s / r['median_s']['plain']:>8.3f}x {pair or 1.0:>7.3f}x {min(r['all_s'][m]):>8.3f} "
              f"{r['bytes_kept_per_prompt'][m] / mb:>15.2f} {r['steps'][m]:>6}")
    if r["capture_over_plain"] is not None:
        print(f"capture / plain: {r['capture_over_plain']:.3f}x (medians), {r['paired_over_plain']['inspector']:.3f}x "
              "(median of back-to-back pairs)")
    if "capture_over_same_cache" in r:
        print(f"capture / plain generate run as the capture runs it (reserved cache, inference mode): "
              f"{r['capture_over_same_cache']:.3f}x (median of pairs: the recording's own cost)")
    if "peak_mem_capture_minus_plain_bytes" in r:
        print(f"capture peak memory minus plain's (sampled): {r['peak_mem_capture_minus_plain_bytes'] / mb:.1f} MB")
    for m, why in r.get("failed", {}).items():
        print(f"{m}: did not complete ({why})")
    if "layers_over_capture" in r:
        print(f"capture with hidden states and value norms / capture: {r['layers_over_capture']:.3f}x")
    if "logits_over_capture" in r:
        print(f"capture keeping the logits / capture: {r['logits_over_capture']:.3f}x")
    for m, mem in r.get("memory", {}).items():
        if "error" in mem:
            print(f"memory {m}: failed ({mem['error']})")
        elif m != "plain" and "peak_over_kept" in mem:
            print(f"memory {m}: peak above plain {mem['peak_above_plain_bytes'] / mb:.1f} MB, captures keep "
                  f"{mem['kept_bytes'] / mb:.1f} MB: {mem['peak_over_kept']:.2f}x (target <= 1.5x; "
                  f"{mem['measured_by']}, median of {len(mem['peak_runs_bytes'])} processes)")
    if "notebook_over_capture" in r:
        print(f"notebook / capture: {r['notebook_over_capture']:.2f}x slower; "
              f"notebook keeps {r['notebook_bytes_over_capture']:.0f}x the bytes per prompt")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", default="1,8,16", help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=None,
                   help="new tokens (default: 64 at batch 1 and 16, 32 at batch 8, else 64)")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--memory-reps", type=int, default=3,
                   help="fresh processes per method for peak memory; the median counts (default: %(default)s)")
    p.add_argument("--memory-child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--reps", type=int, default=5, help="repetitions at batch 1 (batch>1: max(3, reps//2))")
    p.add_argument("--batch-reps", type=int, default=None, help="repetitions at batch > 1 (default: see --reps)")
    p.add_argument("--methods", default=None,
                   help=f"comma-separated methods besides plain "
                        f"(default: all of inspector,{LAYERS},selective,{LOGITS})")
    p.add_argument("--sample-memory", action="store_true",
                   help="also sample RSS during the timed runs (a thread every 2 ms: adds noise to the time)")
    p.add_argument("--notebook-batches", default="1", help="batch sizes that also run the notebook method")
    p.add_argument("--long", action="store_true", help="also run 256+128 tokens at batch 16 (GPU)")
    p.add_argument("--json", default=None, help="write results as JSON here")
    args = p.parse_args(argv)

    im = load_bench_model(args.model, args.device, args.weights)
    if args.memory_child:
        b = int(args.batches)
        r = memory_child(im, args.memory_child, b, args.prompt_tokens, args.new_tokens or NEW_TOKENS.get(b, 64))
        print("MEMORY " + json.dumps(r))
        return 0
    print(f"model: {im.describe()}")
    nb = {int(x) for x in args.notebook_batches.split(",") if x}
    results = []
    for b in (int(x) for x in args.batches.split(",")):
        reps = args.reps if b == 1 else (args.batch_reps or max(3, args.reps // 2))
        new_tokens = args.new_tokens or NEW_TOKENS.get(b, 64)
        only = set(args.methods.split(",")) if args.methods else None
        r = run_case(im, b, args.prompt_tokens, new_tokens, reps, notebook=b in nb, only=only,
                     sample_memory=args.sample_memory)
        if not args.no_memory:
            kinds = [m for m in ("inspector", LAYERS, "selective", LOGITS) if not only or m in only]
            r["memory"] = memory_case(args, b, new_tokens, ["plain", *kinds])
        print_case(r)
        results.append(r)
    if args.long:
        r = run_case(im, 16, 256, 128, 3, notebook=True, sample_memory=args.sample_memory)
        print_case(r)
        results.append(r)
    write_json(args.json, {"benchmark": "capture", "machine": machine(), "device": str(im.device), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
