"""Time of the analysis functions on a 128-token sequence of full-size GPT-2 (random weights), against targets.

One teacher-forced forward pass (eager attention, hidden states and attention kept)
gives ``[13, 128, 768]`` hidden states and ``[12, 12, 128, 128]`` attention; then, each
``--repeats`` times: the logit lens (all 13 entries x 128 positions, top-10, targets),
attention rollout, head statistics, and value norms (one extra forward pass with
pre-hooks). Reports the best and the median wall time of each (best is robust to a
shared machine's load spikes), the best process CPU time over all threads (on a busy
machine, CPU time / threads estimates the wall time a quiet one would give) and the
load average. Targets on the CPU: lens < 2 s, rollout
and head statistics < 1 s.

    python benchmarks/bench_analysis.py [--tokens 128] [--repeats 5] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))


def main(argv: list[str] | None = None) -> int:
    import torch
    from _common import time_jobs

    import inspector
    from inspector._atomic import write_text_atomic
    from inspector._lens_math import logit_lens, next_token_targets
    from inspector.analysis.head_stats import attention_head_stats
    from inspector.analysis.rollout import attention_rollout
    from inspector.analysis.value_norms import model_value_norms

    default = os.environ.get("INSPECTOR_GPT2_OFFLINE_DIR") or str(ROOT.parent / "shared" / "models" / "gpt2-offline")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=default, help="folder with GPT-2's config.json and tokenizer")
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--json", dest="json_out", default=None)
    args = ap.parse_args(argv)
    if not Path(args.model, "config.json").is_file():
        print(f"no GPT-2 config in {args.model}; pass --model", file=sys.stderr)
        return 2
    im = inspector.load_model(args.model, device="cpu", random_weights=True)
    ids = torch.randint(0, im.model.config.vocab_size, (args.tokens,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        out = im.model(ids[None], output_hidden_states=True, output_attentions=True)
    hidden = torch.stack(out.hidden_states)[:, 0].to(torch.float16)  # stored as a capture would keep it
    att = torch.stack(out.attentions)[:, 0].to(torch.float16)
    targets = next_token_targets(ids)
    prompt_len = args.tokens // 2
    jobs = {
        "lens": lambda: logit_lens(hidden, im, targets=targets, k=10),
        "rollout": lambda: attention_rollout(att),
        "head_stats": lambda: attention_head_stats(att, prompt_len),
        "value_norms": lambda: model_value_norms(im, ids),
    }
    times, cpu = time_jobs(jobs, args.repeats)
    result = {
        "tokens": args.tokens, "threads": torch.get_num_threads(), "loadavg": os.getloadavg(),
        **{name: {"best_s": min(t), "median_s": statistics.median(t), "cpu_best_s": min(cpu[name])}
           for name, t in times.items()},
    }
    for name in jobs:
        r = result[name]
        print(f"{name:12s} best {r['best_s']:.3f} s   median {r['median_s']:.3f} s   "
              f"cpu {r['cpu_best_s']:.3f} s (all threads)")
    print(f"threads {result['threads']}, load average {result['loadavg']}")
    if args.json_out:
        write_text_atomic(args.json_out, json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
