"""Drawing and exporting long-sequence figures: time of each, against generous bounds.

A synthetic capture (``tests/plot_helpers.synthetic_capture``: random causal attention, fp16) of 520
tokens (400 prompt) with 12 layers x 12 heads, and one of 600 tokens with 2 x 2. Each figure is built
and exported ``--repeats`` times; best and median seconds:

* static head grid, pooled to at most 100 cells a side, PNG at 60 dpi (bound 20 s);
* static attention heatmap, 520 tokens, 50 labels, PNG at 80 dpi (bound 45 s);
* interactive head grid, 520 tokens, 12 x 12, HTML (bound 15 s);
* interactive attention heatmap, 600 tokens, 40 labels, HTML (bound 10 s).

The tests check what keeps these quick (pooling, thinned labels, one image per panel, the HTML's size);
this script reports the times.

    python benchmarks/bench_plots.py [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the synthetic capture shared with the plot tests

from plot_helpers import synthetic_capture  # noqa: E402

from inspector.plots import interactive, static  # noqa: E402
from inspector.plots.export import export_bytes, export_figure  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=3, help="runs of each figure (default: 3)")
    parser.add_argument("--json", default=None, help="also write the results here (default: none)")
    args = parser.parse_args()

    long_cap = synthetic_capture(seq=520, prompt_len=400, n_layer=12, n_head=12)
    wide = synthetic_capture(seq=600, prompt_len=450, n_layer=2, n_head=2)
    with tempfile.TemporaryDirectory() as tmp:
        cases: list[tuple[str, float, Callable[[], Any]]] = [
            ("static head grid, 520 tokens, 12x12, PNG", 20.0,
             lambda: export_bytes(static.head_grid(long_cap, max_cells=100), "png", dpi=60)),
            ("static heatmap, 520 tokens, PNG", 45.0,
             lambda: export_figure(static.attention_heatmap(long_cap, max_labels=50), Path(tmp) / "h.png", dpi=80)),
            ("interactive head grid, 520 tokens, 12x12, HTML", 15.0,
             lambda: export_bytes(interactive.head_grid(long_cap), "html")),
            ("interactive heatmap, 600 tokens, HTML", 10.0,
             lambda: export_bytes(interactive.attention_heatmap(wide, max_labels=40), "html")),
        ]
        results: dict[str, Any] = {"load_average": os.getloadavg(), "figures": {}}
        print(f"load average {os.getloadavg()[0]:.2f}; best / median of {args.repeats} runs, seconds")
        for name, bound, draw in cases:
            times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                draw()
                times.append(time.perf_counter() - t0)
            results["figures"][name] = {"best": min(times), "median": statistics.median(times), "bound": bound}
            flag = "" if min(times) < bound else "  (over the bound)"
            print(f"  {name:<50} {min(times):6.2f} {statistics.median(times):6.2f}  (bound {bound:g}){flag}")
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
