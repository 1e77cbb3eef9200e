"""``inspector plot``: draw a figure of a capture or a corpus run and save it; the format follows the suffix."""

from __future__ import annotations

import argparse
from typing import Any

# Options each kind takes (dest names); any other option given is an error, not silently ignored.
_KIND_OPTIONS: dict[str, tuple[str, ...]] = {
    "heatmap": ("layer", "head", "agg", "gamma", "max_labels"),
    "heads": ("gamma", "max_cells"),
    "topk": ("k", "scores", "max_labels"),
    "text": ("color_by",),
    "token": ("position", "head", "gamma", "max_labels"),
    "corpus": ("by", "metrics"),
}
# = inspector.aggregate.AGGREGATE_MODES (a test keeps them equal); that module imports torch, which
# `inspector plot --help` must not.
AGG_CHOICES: tuple[str, ...] = ("mean", "max", "stacked-mean")
_FLAG = {
    "layer": "--layer",
    "head": "--head",
    "agg": "--agg",
    "gamma": "--gamma",
    "max_labels": "--max-labels",
    "max_cells": "--max-cells",
    "k": "--k",
    "scores": "--scores",
    "color_by": "--color-by",
    "position": "--position",
    "by": "--by",
    "metrics": "--metrics",
}


def register(sub: argparse._SubParsersAction) -> None:
    from inspector.plots.options import COLOR_BY, GROUP_COLUMNS, KINDS, SCORES

    p = sub.add_parser(
        "plot",
        help="draw a figure of a capture or a corpus run (.png/.svg/.pdf with matplotlib, .html with plotly)",
        description=(
            "Draw a figure of a capture (.safetensors) or of a corpus run (a folder with summary.parquet) and save "
            "it to --out. The suffix picks the format: .png, .svg and .pdf are drawn with matplotlib; .html is the "
            "interactive plotly figure with plotly.js embedded (opens offline). Without --layer and --head, "
            "'heatmap' shows the mean over all layers and heads."
        ),
    )
    p.add_argument("source", metavar="CAPTURE_OR_RUN", help="a capture file (.safetensors) or a run folder")
    p.add_argument(
        "--kind",
        choices=KINDS,
        default=None,
        help="heatmap: attention of a layer/head or an aggregate; heads: all layers x heads; topk: candidates "
        "per step and entropy; text: the text coloured by probability or entropy; token: where one token "
        "looks, per layer; corpus: a run's metrics by label (default: heatmap for a capture, corpus for a run)",
    )
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="output file: .png, .svg, .pdf or .html")
    g = p.add_argument_group("attention (heatmap, heads, token)")
    g.add_argument("--layer", type=int, default=None, help="heatmap: one layer (default: all, combined by --agg)")
    g.add_argument("--head", type=int, default=None, help="heatmap, token: one head (default: all)")
    g.add_argument("--agg", choices=AGG_CHOICES, default=None,
                   help="heatmap: how to combine the layers/heads not chosen (default: mean)")
    g.add_argument("--position", type=int, default=None,
                   help="token: position of the token (negative counts from the end; default: first generated)")
    g.add_argument("--gamma", type=float, default=None,
                   help="colour ~ weight^gamma (default 0.5, so small weights show; 1 is linear)")
    g.add_argument("--max-cells", type=int, default=None,
                   help="heads: longer sequences are averaged into blocks so a panel has at most this many cells "
                   "(default: 128 in .png/.svg/.pdf, 64 in .html)")
    g = p.add_argument_group("generation (topk, text)")
    g.add_argument("--k", type=int, default=None, help="topk: candidates per step (default: all kept)")
    g.add_argument("--scores", choices=SCORES, default=None,
                   help="topk: raw model logits or the processed scores decoding used (default: raw)")
    g.add_argument("--color-by", choices=COLOR_BY, default=None,
                   help="text: colour by the chosen token's probability or by entropy (default: prob)")
    g = p.add_argument_group("corpus")
    g.add_argument("--by", choices=GROUP_COLUMNS, default=None,
                   help="corpus: group turns by this label (default: emotion)")
    g.add_argument("--metrics", default=None,
                   help="corpus: comma-separated summary columns (default: entropy, chosen probability and the "
                   "attention shares the run kept)")
    g = p.add_argument_group("size")
    g.add_argument("--max-labels", type=int, default=None,
                   help="at most about this many token labels per axis (default: 60 to 80, by kind)")
    g.add_argument("--width", type=int, default=None, help="width in pixels (default: from the data)")
    g.add_argument("--height", type=int, default=None, help="height in pixels (default: from the data)")
    g.add_argument("--dpi", type=float, default=150.0, help="pixels per inch of .png output (default: %(default)s)")
    p.set_defaults(func=handler)


def _options(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    given = {dest: getattr(args, dest) for dest in _FLAG if getattr(args, dest) is not None}
    wrong = [d for d in given if d not in _KIND_OPTIONS[kind]]
    if wrong:
        flags = ", ".join(_FLAG[d] for d in wrong)
        takes = ", ".join(_FLAG[d] for d in _KIND_OPTIONS[kind])
        raise ValueError(f"{flags} does not apply to --kind {kind} (it takes {takes})")
    if "metrics" in given:
        given["metrics"] = [m.strip() for m in given["metrics"].split(",") if m.strip()]
    for name in ("max_labels", "max_cells", "k"):
        if name in given and given[name] < 1:
            raise ValueError(f"{_FLAG[name]} must be at least 1, got {given[name]}")
    if "gamma" in given and not given["gamma"] > 0:
        raise ValueError(f"--gamma must be positive, got {given['gamma']}")
    return given


def _size_options(args: argparse.Namespace, kind: str, interactive: bool) -> dict[str, Any]:
    w, h = args.width, args.height
    if w is None and h is None:
        return {}
    for name, v in (("--width", w), ("--height", h)):
        if v is not None and v < 16:
            raise ValueError(f"{name} must be at least 16 pixels, got {v}")
    if kind == "text":
        if interactive:
            raise ValueError("--width/--height do not apply to the HTML text view (it flows with the window)")
        if h is not None:
            raise ValueError("the text figure's height follows the text's length: give only --width")
        return {"width": w / args.dpi}
    if interactive:
        return {k: v for k, v in (("width", w), ("height", h)) if v is not None}
    if w is None or h is None:
        raise ValueError("give both --width and --height for a .png/.svg/.pdf figure")
    return {"figsize": (w / args.dpi, h / args.dpi)}


def handler(args: argparse.Namespace) -> int:
    import pandas as pd

    from inspector.plots import load_source, make_figure
    from inspector.plots.export import export_figure, format_of

    fmt = format_of(args.out)  # a bad suffix fails before anything is loaded
    if not args.dpi > 0:
        raise ValueError(f"--dpi must be positive, got {args.dpi}")
    source = load_source(args.source)
    is_run = isinstance(source, pd.DataFrame)
    kind = args.kind or ("corpus" if is_run else "heatmap")
    if kind == "corpus" and not is_run:
        raise ValueError(f"--kind corpus needs a run folder (with summary.parquet); {args.source} is a capture")
    if kind != "corpus" and is_run:
        raise ValueError(
            f"--kind {kind} needs a capture file; {args.source} is a run folder: use --kind corpus, or plot one "
            f"of its captures ({args.source}/captures/*.safetensors)"
        )
    interactive = fmt == "html"
    opts = {**_options(args, kind), **_size_options(args, kind, interactive)}
    fig = make_figure(kind, source, interactive=interactive, **opts)
    path = export_figure(fig, args.out, dpi=None if interactive else args.dpi)
    print(f"wrote {path}")
    return 0
