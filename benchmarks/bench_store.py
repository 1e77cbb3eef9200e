"""What a capture file's checks cost on load: ``load_capture`` against reading the same file's tensors alone.

``load_capture`` parses the header itself, verifies every checksum (the document, each tensor's bytes, the
header's tensor table) and checks what the values mean (entropy and log-probability ranges, ranks against
the top-k, processed against raw, causal attention rows summing to 1, layout and metadata). The baseline
is ``safetensors.torch.load_file`` of the same file: the bytes read into tensors, nothing checked. Both run
alternately in one process on one saved capture (full-size GPT-2 by default, full float16 attention).

    python benchmarks/bench_store.py [--model ...] [--tokens 64 256] [--repeats 30] [--json out.json]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch
from _common import add_model_args, load_bench_model, machine, median, write_json


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_args(ap)
    ap.add_argument("--tokens", type=int, nargs="+", default=[64, 256], help="generated tokens per capture")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()

    from safetensors.torch import load_file

    import inspector

    model = load_bench_model(args.model, weights=args.weights)
    prompt = "User: hey how are you? \nAgent:"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for tokens in args.tokens:
            cap = model.generate(prompt, max_new_tokens=tokens, stop_strings=None)
            path = Path(tmp) / f"cap-{tokens}.safetensors"
            cap.save(path)
            checked, plain = [], []
            inspector.load_capture(path), load_file(str(path))  # warm-up (page cache, imports)
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                inspector.load_capture(path)
                checked.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                load_file(str(path))
                plain.append(time.perf_counter() - t0)
            row = {"tokens": cap.num_steps, "seq": cap.seq_len, "mb": path.stat().st_size / 1e6,
                   "load_capture_ms": 1e3 * median(checked), "read_only_ms": 1e3 * median(plain),
                   "ratio": median(checked) / median(plain)}
            rows.append(row)
            print(f"{row['tokens']:4d} tokens ({row['mb']:.1f} MB): load_capture {row['load_capture_ms']:.2f} ms, "
                  f"read only {row['read_only_ms']:.2f} ms, {row['ratio']:.1f}x")
    write_json(args.json, {"machine": machine(), "threads": torch.get_num_threads(), "rows": rows})
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
