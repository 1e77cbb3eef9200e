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
    "lens": ("k", "layers", "positions", "max_labels"),
    "rollout": ("layers", "heads", "residual_weight", "norm_weighted", "gamma", "max_labels"),
    "head-stats": ("rows", "statistics"),
    "compare": ("align", "kl", "distributions", "layer", "head", "max_labels"),
    "logit-attribution": ("step", "target", "max_labels"),
    "attribution": ("step",),
}
# Options that pick where a kind's input comes from rather than going to the figure.
_SOURCE_OPTIONS: dict[str, tuple[str, ...]] = {
    "lens": ("model", "random_weights", "seed", "device"),
    "logit-attribution": ("model", "random_weights", "seed", "device"),
    "attribution": ("model", "random_weights", "seed", "device"),
    "head-stats": ("by", "group"),
    "compare": ("compare", "beams"),
}
# = inspector._aggregate.AGGREGATE_MODES (a test keeps them equal); that module imports torch, which
# `inspector plot --help` must not.
AGG_CHOICES = ("mean", "max", "stacked-mean", "contribution-norm", "norm-weighted-renormalised", "norm-weighted")
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
    "layers": "--layers",
    "heads": "--heads",
    "positions": "--positions",
    "residual_weight": "--residual-weight",
    "norm_weighted": "--norm-weighted",
    "rows": "--rows",
    "statistics": "--statistics",
    "align": "--align",
    "kl": "--kl",
    "distributions": "--distributions",
    "compare": "--compare",
    "beams": "--beams",
    "group": "--group",
    "model": "--model",
    "step": "--step",
    "target": "--target",
    "random_weights": "--random-weights",
    "seed": "--seed",
    "device": "--device",
}


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
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
        help="heatmap: attention of a layer/head or an aggregate; heads: all layers x heads; topk: candidates per "
        "step, entropy; text: coloured by probability or entropy; token: where one token looks, per layer; corpus: a "
        "run's metrics by label; logit-attribution: what each head and MLP wrote to each chosen logit; attribution: "
        "text coloured by each token's effect on one step (both need --model) (default: heatmap; corpus for a run)",
    )
    p.add_argument("--out", "-o", required=True, metavar="FILE", help="output file: .png, .svg, .pdf or .html")
    g = p.add_argument_group("attention (heatmap, heads, token)")
    g.add_argument("--layer", type=int, default=None, help="heatmap: one layer (default: all, combined by --agg)")
    g.add_argument("--head", type=int, default=None, help="heatmap, token: one head (default: all)")
    g.add_argument("--agg", choices=AGG_CHOICES, default=None,
                   help="heatmap: how to combine the layers/heads not chosen; contribution-norm: ||alpha f(x)|| "
                   "(Kobayashi et al. 2020), norm-weighted(-renormalised): rows rescaled to sum to 1 (default: mean)")
    g.add_argument("--position", type=int, default=None,
                   help="token: position of the token (negative counts from the end; default: first generated)")
    g.add_argument("--gamma", type=float, default=None,
                   help="colour ~ weight^gamma (default 0.5, so small weights show; 1 is linear)")
    g.add_argument("--max-cells", type=int, default=None,
                   help="heads: longer sequences are averaged into blocks so a panel has at most this many cells "
                   "(default: 128 in .png/.svg/.pdf, 64 in .html)")
    g = p.add_argument_group("generation (topk, text)")
    g.add_argument("--k", type=int, default=None,
                   help="topk: candidates per step (default: all kept); lens: top-k kept per cell (default: 5)")
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
    _register_analysis(p)
    g = p.add_argument_group("size")
    g.add_argument("--max-labels", type=int, default=None,
                   help="at most about this many token labels per axis (default: 60 to 80, by kind)")
    g.add_argument("--width", type=int, default=None, help="width in pixels (default: from the data)")
    g.add_argument("--height", type=int, default=None, help="height in pixels (default: from the data)")
    g.add_argument("--dpi", type=float, default=150.0, help="pixels per inch of .png output (default: %(default)s)")
    p.set_defaults(func=handler)


def _register_analysis(p: argparse.ArgumentParser) -> None:
    from inspector.analysis.choices import (
        ALIGN_CHOICES,
        ATTRIBUTION_TARGETS,
        DISTRIBUTION_CHOICES,
        KL_CHOICES,
        ROW_CHOICES,
        STATISTICS,
    )

    g = p.add_argument_group("analysis (lens, rollout, head-stats, compare, logit-attribution)")
    g.add_argument("--layers", default=None, metavar="LIST",
                   help="lens: hidden-state entries to show, comma-separated (0 = embeddings, l = after layer l-1; "
                   "default: all); rollout: layers to multiply through (default: all)")
    g.add_argument("--heads", default=None, metavar="LIST",
                   help="rollout: heads averaged in every layer, comma-separated (default: all)")
    g.add_argument("--positions", default=None, metavar="START:STOP",
                   help="lens: the positions to show, a Python-style slice (default: all)")
    g.add_argument("--residual-weight", type=float, default=None,
                   help="rollout: r in (1 - r) A + r I, within 0..1 (default: 0.5, as in Abnar & Zuidema)")
    g.add_argument("--norm-weighted", action="store_const", const=True, default=None,
                   help="rollout: weigh attention by the value norms the capture kept (default: raw attention)")
    g.add_argument("--rows", choices=ROW_CHOICES, default=None,
                   help="head-stats of a capture: the query rows the statistics are over (default: all)")
    g.add_argument("--statistics", default=None, metavar="LIST",
                   help=f"head-stats: comma-separated panels from {', '.join(STATISTICS)} (default: all)")
    g.add_argument("--group", default=None, metavar="VALUE",
                   help="head-stats of a run with --by: the label value to show, e.g. --by act --group question "
                   "(default: without --by, the whole run)")
    g.add_argument("--compare", default=None, metavar="CAPTURE_B",
                   help="compare: the second capture (B), required; the figure shows CAPTURE_OR_RUN (A) against it "
                   "(default: none)")
    g.add_argument("--beams", default=None, metavar="I,J",
                   help="compare: two sequences of one search instead of --compare: CAPTURE_OR_RUN is the --out given "
                   "to `inspector capture --num-beams N --num-return-sequences N` (it wrote X-0.safetensors, "
                   "X-1.safetensors, ...) or any one of those files; compares sequence I with J, aligned by their "
                   "shared prefix (default: none)")
    g.add_argument("--align", choices=ALIGN_CHOICES, default=None,
                   help="compare: prefix (same context), generated (step i vs step i) or auto (default: auto)")
    g.add_argument("--kl", choices=KL_CHOICES, default=None,
                   help="compare: exact (needs --keep-logits captures), topk (a lower bound) or auto (default: auto)")
    g.add_argument("--distributions", choices=DISTRIBUTION_CHOICES, default=None,
                   help="compare: processed (what each run decoded from) or raw (the model's) (default: processed)")
    g.add_argument("--step", type=int, default=None,
                   help="logit-attribution: this generated step's 10 largest parts as bars (default: every step); "
                   "attribution: the step explained (default: the last); from 0, negative from the end")
    g.add_argument("--target", choices=ATTRIBUTION_TARGETS, default=None,
                   help="logit-attribution: explain the chosen token's logit, or its margin over the runner-up "
                   "(default: chosen)")
    g.add_argument("--model", default=None, metavar="NAME_OR_PATH",
                   help="lens, logit-attribution, attribution: the model that made the capture, to run or decode it "
                   "(the lens needs the final norm and unembedding; default: none, an error for those kinds)")
    g.add_argument("--random-weights", action="store_const", const=True, default=None,
                   help="lens: build --model with random weights seeded by --seed, as the capture was "
                   "(default: off)")
    g.add_argument("--seed", type=int, default=None, help="lens: seed of --random-weights (default: 0)")
    g.add_argument("--device", default=None, help="lens: device for --model (default: cpu)")


def _int_list(text: str, flag: str) -> list[int]:
    try:
        out = [int(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise ValueError(f"{flag} takes comma-separated integers, e.g. 0,2,5; got {text!r}") from None
    if not out:
        raise ValueError(f"{flag} needs at least one integer")
    return out


def _positions(text: str, seq_len: int) -> list[int]:
    parts = text.split(":")
    try:
        if len(parts) != 2:
            raise ValueError
        start, stop = (int(x) if x.strip() else None for x in parts)
    except ValueError:
        raise ValueError(f"--positions takes START:STOP (e.g. 10:40, or -20: for the last 20); got {text!r}") from None
    out = list(range(seq_len))[slice(start, stop)]
    if not out:
        raise ValueError(f"--positions {text} selects no position of a {seq_len}-token capture")
    return out


def _options(args: argparse.Namespace, kind: str) -> dict[str, Any]:
    given = {dest: getattr(args, dest) for dest in _FLAG if getattr(args, dest) is not None}
    given = {d: v for d, v in given.items() if d not in _SOURCE_OPTIONS.get(kind, ())}
    wrong = [d for d in given if d not in _KIND_OPTIONS[kind]]
    if wrong:
        flags = ", ".join(_FLAG[d] for d in wrong)
        takes = ", ".join(_FLAG[d] for d in _KIND_OPTIONS[kind])
        raise ValueError(f"{flags} does not apply to --kind {kind} (it takes {takes})")
    if "metrics" in given:
        given["metrics"] = [m.strip() for m in given["metrics"].split(",") if m.strip()]
    for name in ("layers", "heads"):
        if name in given:  # the same reading as `inspector capture --layers` (ids and ranges, e.g. 0,3,5-7)
            from inspector._capture.selection import parse_ids

            ids = parse_ids(str(given[name]), name)  # text gives a tuple of ids
            given[name] = list(ids) if isinstance(ids, tuple) else ids
    if "statistics" in given:
        given["statistics"] = [m.strip() for m in given["statistics"].split(",") if m.strip()]
    for name in ("max_labels", "max_cells", "k"):
        if name in given and given[name] < 1:
            raise ValueError(f"{_FLAG[name]} must be at least 1, got {given[name]}")
    for name in ("layer", "head"):
        if name in given and given[name] < 0:
            raise ValueError(f"{_FLAG[name]} must be 0 or more (ids count from 0), got {given[name]}")
    if "gamma" in given and not given["gamma"] > 0:
        raise ValueError(f"--gamma must be positive, got {given['gamma']}")
    return given


#: Bounds of a figure's size on the command line: a bigger one would not fit in memory (a 20,000-pixel square
#: RGBA image is 1.6 GB) and no screen or page shows it.
MAX_PIXELS = 20_000
MAX_DPI = 1200.0


def _size_options(args: argparse.Namespace, kind: str, interactive: bool) -> dict[str, Any]:
    w, h = args.width, args.height
    if w is None and h is None:
        return {}
    for name, v in (("--width", w), ("--height", h)):
        if v is not None and not 16 <= v <= MAX_PIXELS:
            raise ValueError(f"{name} must be 16 to {MAX_PIXELS} pixels, got {v}")
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

    from inspector._atomic import check_writable
    from inspector.plots import load_source, make_figure
    from inspector.plots.analysis_data import comparison_summary
    from inspector.plots.export import format_of

    fmt = format_of(args.out)  # a bad suffix fails before anything is loaded
    check_writable(args.out, "--out", example=f"figure.{fmt}")
    if not 0 < args.dpi <= MAX_DPI:
        raise ValueError(f"--dpi must be above 0 and at most {MAX_DPI:g}, got {args.dpi:g}")
    if args.beams is not None:
        if args.kind != "compare":
            raise ValueError("--beams applies to --kind compare (two sequences of one search)")
        beams = _load_beams(args)
        fig = make_figure("compare", beams, interactive=fmt == "html", pair=(0, 1),
                          **_options(args, "compare"), **_size_options(args, "compare", fmt == "html"))
        print(comparison_summary(beams, **_options(args, "compare")))
        return _save(fig, args, fmt)
    source = load_source(args.source)
    is_run = isinstance(source, pd.DataFrame)
    kind = args.kind or ("corpus" if is_run else "heatmap")
    if kind == "head-stats" and is_run:
        source = _run_head_stats(args)
        is_run = False
    if kind == "corpus" and not is_run:
        raise ValueError(f"--kind corpus needs a run folder (with summary.parquet); {args.source} is a capture")
    if kind != "corpus" and is_run:
        raise ValueError(
            f"--kind {kind} needs a capture file; {args.source} is a run folder: use --kind corpus, or plot one "
            f"of its captures ({args.source}/captures/*.safetensors)"
        )
    interactive = fmt == "html"
    opts = {**_options(args, kind), **_size_options(args, kind, interactive)}
    opts.update(_analysis_inputs(args, kind, source, opts))
    fig = make_figure(kind, source, interactive=interactive, **opts)
    if kind == "compare":  # what was compared, in words, with a warning per setting that differs
        print(comparison_summary(source, **opts))
    return _save(fig, args, fmt)


def _save(fig: Any, args: argparse.Namespace, fmt: str) -> int:
    from pathlib import Path

    from inspector.plots.export import export_figure

    folder = Path(args.out).parent
    try:
        folder.mkdir(parents=True, exist_ok=True)  # --out figs/new/x.png needs no mkdir first
    except OSError as exc:
        raise OSError(f"cannot write {args.out}: cannot make its folder {folder} ({exc.strerror or exc})") from exc
    print(f"wrote {export_figure(fig, args.out, dpi=None if fmt == 'html' else args.dpi)}")
    return 0


def _run_head_stats(args: argparse.Namespace) -> Any:
    """The head-statistics table of a run folder, one group of it with --by/--group."""
    from inspector.runs import load_run

    if (args.by is None) != (args.group is None):
        raise ValueError("give --by and --group together (e.g. --by act --group question), or neither for the "
                         "whole run")
    table = load_run(args.source).head_stats(by=args.by)
    if args.by is None:
        return table
    picked = table[table[args.by].astype(str) == args.group]
    if picked.empty:
        values = ", ".join(sorted(table[args.by].astype(str).unique()))
        raise ValueError(f"no turn of the run has {args.by}={args.group!r}; its values: {values}")
    return picked.drop(columns=[args.by])


def _analysis_inputs(args: argparse.Namespace, kind: str, source: Any, opts: dict[str, Any]) -> dict[str, Any]:
    """The second capture of ``compare``, the lens of ``lens`` (computed with --model, checked against the capture)."""
    if kind == "head-stats" and hasattr(source, "require_attentions") and (args.by or args.group) is not None:
        raise ValueError("--by/--group apply to the head statistics of a run folder, not of one capture")
    if kind == "compare":
        if args.compare is None:
            raise ValueError("--kind compare needs the second capture: --compare B.safetensors, or --beams I,J for "
                             f"two sequences of the search that wrote {args.source}")
        from inspector._store import load_capture

        return {"other": load_capture(args.compare)}
    if kind == "attribution":  # integrated gradients, 32 steps (`inspector attribute` has the other methods)
        return {"model": _model(args, kind)}
    if kind == "logit-attribution":
        from inspector.analysis.direct_logit import logit_attribution

        return {"attribution": logit_attribution(source, _model(args, kind), target=opts.pop("target", "chosen"))}
    if kind != "lens":
        return {}
    if args.positions is not None:
        opts["positions"] = _positions(args.positions, source.seq_len)
    if getattr(source, "lens", None) is not None:
        return {}
    from inspector.analysis.lens import capture_lens

    lens = capture_lens(source, _model(args, kind), k=opts.get("k", 5), positions=opts.get("positions"))
    opts.pop("k", None)
    return {"lens": lens}


def _model(args: argparse.Namespace, kind: str) -> Any:
    """The model of ``--model`` for ``--kind lens`` or ``logit-attribution``, which a capture does not hold."""
    if args.model is None:
        what = ("decodes hidden states through the model's final norm and unembedding" if kind == "lens" else
                "runs the model over the capture's tokens")
        raise ValueError(
            f"--kind {kind} {what}, which a capture does not hold: give --model NAME_OR_PATH (the model that made "
            "the capture; add --random-weights --seed N for a random-weights capture)"
        )
    from inspector._model import load_model

    return load_model(args.model, device=args.device or "cpu", random_weights=bool(args.random_weights),
                      seed=args.seed or 0)


def _load_beams(args: argparse.Namespace) -> list[Any]:
    """Sequences ``I`` and ``J`` of ``--beams I,J``: the files ``X-I``/``X-J`` that ``inspector capture`` wrote."""
    from pathlib import Path

    from inspector._sequence_files import load_sequences

    if args.compare is not None or args.align is not None:
        raise ValueError("--beams compares two sequences of one search, aligned by their shared prefix: leave out "
                         "--compare and --align")
    pair = _int_list(args.beams, "--beams")
    if len(pair) != 2 or pair[0] == pair[1] or min(pair) < 0:
        raise ValueError(f"--beams takes two different sequence numbers, e.g. 0,1; got {args.beams!r}")
    return load_sequences(Path(args.source), (pair[0], pair[1]))
