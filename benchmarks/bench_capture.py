"""Capture overhead: plain ``generate`` vs the notebook's method vs inspector's capture.

Full-size GPT-2 small (random weights, eager attention), prompts of exactly
``--prompt-tokens`` tokens, ``--new-tokens`` new tokens, greedy. All methods run
in this one process, interleaved, on the same model:

* ``plain``: ``model.generate`` with the KV cache, nothing captured;
* ``notebook``: the originating notebook's call (``use_cache=False``,
  ``output_attentions``, ``output_logits``, ``return_dict_in_generate``) followed by
  its stacked mean per step, ``torch.stack(output.attentions[step]).mean(dim=0)``;
* ``inspector``: ``inspector.generate`` with default settings (fp16 attention,
  top-10 logits per step, every attention row kept);
* ``+layers``: the same, also keeping hidden states (fp16) and value norms
  (``keep_hidden_states=True, keep_value_norms=True``); its cost over ``inspector``
  is reported as ``layers_over_capture``.

Usage::

    python benchmarks/bench_capture.py                       # CPU, batch 1 and 16
    python benchmarks/bench_capture.py --device cuda --long  # + the 256+128, batch 16 case
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import gpt2_offline_dir, machine, median, timed, write_json  # noqa: E402

import inspector  # noqa: E402


def make_prompts(tokenizer: Any, n: int, tokens: int) -> list[str]:
    """``n`` distinct prompts of exactly ``tokens`` tokens each (dialogue-like text)."""
    base = (
        "User: I was wondering whether you could help me find a good restaurant near the station tonight, "
        "somewhere quiet where we can talk about the project and maybe have a glass of wine after work.\nAgent:"
    )
    prompts = []
    for i in range(n):
        ids = tokenizer(f"({i}) " + base * 8)["input_ids"][:tokens]
        text = tokenizer.decode(ids)
        assert len(tokenizer(text)["input_ids"]) == tokens, "prompt does not round-trip to the same length"
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


def run_case(im: Any, batch: int, prompt_tokens: int, new_tokens: int, reps: int, notebook: bool) -> dict[str, Any]:
    tok, model, dev = im.tokenizer, im.model, im.device
    prompts = make_prompts(tok, batch, prompt_tokens)
    enc = tok(prompts, return_tensors="pt", padding=True).to(dev)
    common = dict(max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                  pad_token_id=tok.pad_token_id)

    def plain() -> torch.Tensor:
        with torch.no_grad():
            return model.generate(**enc, use_cache=True, **common)

    def notebook_method() -> tuple[Any, list[torch.Tensor]]:
        with torch.no_grad():
            out = model.generate(**enc, use_cache=False, output_attentions=True, output_logits=True,
                                 return_dict_in_generate=True, **common)
            stacked = [torch.stack(out.attentions[step]).mean(dim=0) for step in range(len(out.attentions))]
        return out, stacked

    def capture() -> list[inspector.Capture]:
        caps = inspector.generate(im, prompts, max_new_tokens=new_tokens)
        return caps if isinstance(caps, list) else [caps]

    def capture_layers() -> list[inspector.Capture]:
        caps = inspector.generate(im, prompts, max_new_tokens=new_tokens, keep_hidden_states=True,
                                  keep_value_norms=True)
        return caps if isinstance(caps, list) else [caps]

    methods = {"plain": plain, "inspector": capture, LAYERS: capture_layers}
    if notebook:
        methods["notebook"] = notebook_method
    # warm-up (allocator, kernels): one short run each
    with torch.no_grad():
        model.generate(**enc, max_new_tokens=2, pad_token_id=tok.pad_token_id)
    inspector.generate(im, prompts, max_new_tokens=2)
    inspector.generate(im, prompts, max_new_tokens=2, keep_hidden_states=True, keep_value_norms=True)

    times: dict[str, list[float]] = {m: [] for m in methods}
    peaks: dict[str, list[int]] = {m: [] for m in methods}
    kept: dict[str, int] = {}
    steps: dict[str, int] = {}
    failed: dict[str, str] = {}
    for _ in range(reps):
        for name, fn in list(methods.items()):
            try:
                seconds, result, peak = timed(fn, dev)
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
            if name == "plain":
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
        "capture_over_plain": med["inspector"] / med["plain"],
        "failed": failed,
    }
    res["peak_mem_capture_minus_plain_bytes"] = (
        res["peak_mem_above_start_bytes"]["inspector"] - res["peak_mem_above_start_bytes"]["plain"]
    )
    if LAYERS in med:
        res["layers_over_capture"] = med[LAYERS] / med["inspector"]
    if notebook and "notebook" in med:
        res["notebook_over_capture"] = med["notebook"] / med["inspector"]
        res["notebook_bytes_over_capture"] = kept["notebook"] / kept["inspector"]
    return res


def print_case(r: dict[str, Any]) -> None:
    mb = 1e6
    print(f"\n== batch {r['batch']}, {r['prompt_tokens']}+{r['new_tokens']} tokens, median of {r['reps']} ==")
    print(f"{'method':<10} {'median s':>9} {'vs plain':>9} {'kept/prompt MB':>15} {'peak mem +MB':>13} {'steps':>6}")
    for m, s in r["median_s"].items():
        print(f"{m:<10} {s:>9.3f} {s / r['median_s']['plain']:>8.2f}x {r['bytes_kept_per_prompt'][m] / mb:>15.2f} "
              f"{r['peak_mem_above_start_bytes'][m] / mb:>13.1f} {r['steps'][m]:>6}")
    print(f"capture / plain: {r['capture_over_plain']:.3f}x; "
          f"capture peak memory minus plain's: {r['peak_mem_capture_minus_plain_bytes'] / mb:.1f} MB")
    for m, why in r.get("failed", {}).items():
        print(f"{m}: did not complete ({why})")
    if "layers_over_capture" in r:
        print(f"capture with hidden states and value norms / capture: {r['layers_over_capture']:.3f}x")
    if "notebook_over_capture" in r:
        print(f"notebook / capture: {r['notebook_over_capture']:.2f}x slower; "
              f"notebook keeps {r['notebook_bytes_over_capture']:.0f}x the bytes per prompt")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--device", default="cpu")
    p.add_argument("--batches", default="1,16", help="comma-separated batch sizes (default: %(default)s)")
    p.add_argument("--prompt-tokens", type=int, default=64)
    p.add_argument("--new-tokens", type=int, default=64)
    p.add_argument("--reps", type=int, default=5, help="repetitions at batch 1 (batch>1: max(3, reps//2))")
    p.add_argument("--notebook-batches", default="1", help="batch sizes that also run the notebook method")
    p.add_argument("--long", action="store_true", help="also run 256+128 tokens at batch 16 (GPU)")
    p.add_argument("--json", default=None, help="write results as JSON here")
    args = p.parse_args(argv)

    im = inspector.load_model(gpt2_offline_dir(), device=args.device, random_weights=True)
    print(f"model: {im.describe()}")
    nb = {int(x) for x in args.notebook_batches.split(",") if x}
    results = []
    for b in (int(x) for x in args.batches.split(",")):
        reps = args.reps if b == 1 else max(3, args.reps // 2)
        r = run_case(im, b, args.prompt_tokens, args.new_tokens, reps, notebook=b in nb)
        print_case(r)
        results.append(r)
    if args.long:
        r = run_case(im, 16, 256, 128, 3, notebook=True)
        print_case(r)
        results.append(r)
    write_json(args.json, {"benchmark": "capture", "machine": machine(), "device": str(im.device), "results": results})
    return 0


if __name__ == "__main__":
    sys.exit(main())
