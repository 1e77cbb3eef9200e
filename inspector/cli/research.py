"""``inspector order`` (a run's turns from easy to hard, for a curriculum) and ``inspector compare`` (two runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    o = sub.add_parser(
        "order",
        help="write a run's turns from easy to hard with equal-count difficulty bins (a curriculum order)",
        description=(
            "Sort a run's turns by a numeric summary column (lowest = easiest unless --descending), cut them into "
            "equal-count bins (0 = easiest) and write the table as CSV. Turns without a value (e.g. a dialogue's "
            "last turn, which has no reference reply) come last with an empty bin, or are left out with --drop-nan."
        ),
    )
    o.add_argument("run", help="run folder (runs/NAME)")
    o.add_argument("--by", default="ref_ppl",
                   help="numeric summary column to order by (default: %(default)s, the reference reply's "
                        "teacher-forced perplexity)")
    o.add_argument("--bins", type=int, default=5, help="number of equal-count bins (default: %(default)s)")
    o.add_argument("--descending", action="store_true",
                   help="higher values are easier, e.g. chosen_prob_mean (default: off, lower is easier)")
    o.add_argument("--drop-nan", action="store_true",
                   help="leave out turns without a value (default: off, they come last with an empty bin)")
    o.add_argument("--out", required=True, help="CSV file to write, e.g. order.csv")
    o.set_defaults(func=run_order)

    c = sub.add_parser(
        "compare",
        help="compare two runs over the same turns: paired differences (B - A) with bootstrap intervals",
        description=(
            "Match two runs' turns on (split, dial_id, turn), take the paired difference B - A of every numeric "
            "column both have, and print its mean per group with a percentile-bootstrap confidence interval. "
            "Turns in one run only are counted and named."
        ),
    )
    c.add_argument("run_a", help="run folder A (the baseline)")
    c.add_argument("run_b", help="run folder B")
    c.add_argument("--by", default=None,
                   help="label column to group by, e.g. emotion or response_emotion (default: none, all turns)")
    c.add_argument("--column", dest="columns", action="append", default=None, metavar="NAME",
                   help="compare only this numeric column (repeatable; default: every numeric column both share)")
    c.add_argument("--resamples", type=int, default=2000,
                   help="bootstrap resamples per interval (default: %(default)s)")
    c.add_argument("--confidence", type=float, default=0.95, help="interval coverage (default: %(default)s)")
    c.add_argument("--seed", type=int, default=0, help="bootstrap seed (default: %(default)s)")
    c.add_argument("--csv", default=None, help="also write the per-group table to this CSV file (default: none)")
    c.set_defaults(func=run_compare)


def _check_csv_target(path: str, flag: str) -> Path:
    out = Path(path)
    if out.is_dir():
        raise ValueError(f"{flag} {out} is a folder; give a file name, e.g. {out / 'order.csv'}")
    if not out.parent.is_dir():
        raise ValueError(f"{flag}: folder {out.parent} does not exist; create it or choose another path")
    return out


def run_order(args: argparse.Namespace) -> int:
    from inspector.research.curriculum import order_turns, write_order_csv
    from inspector.runs.load import load_run

    out = _check_csv_target(args.out, "--out")
    run = load_run(args.run)
    if not run.complete:
        print(f"note: {run.path} is not finished; ordering the {len(run.summary)} turns so far", file=sys.stderr)
    order = order_turns(run.summary, by=args.by, bins=args.bins, descending=args.descending,
                        nan="drop" if args.drop_nan else "last")
    write_order_csv(order, out)
    ranked = int(order["bin"].notna().sum())
    print(f"wrote {out}: {len(order)} turns ({ranked} ranked into {args.bins} bins by {args.by}, "
          f"{len(order) - ranked} without a value)")
    return 0


def run_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from inspector.research.compare_runs import compare_runs
    from inspector.runs.load import load_run

    csv = _check_csv_target(args.csv, "--csv") if args.csv else None
    runs = [load_run(args.run_a), load_run(args.run_b)]
    for name, run in zip("AB", runs, strict=True):
        if not run.complete:
            print(f"note: run {name} ({run.path}) is not finished; {len(run.summary)} turns so far", file=sys.stderr)
    result = compare_runs(runs[0].summary, runs[1].summary, by=args.by, columns=args.columns,
                          n_resamples=args.resamples, confidence=args.confidence, seed=args.seed)
    print(f"A: {runs[0].path}\nB: {runs[1].path}")
    print(result.describe())
    table = result.to_frame()
    with pd.option_context("display.max_columns", None, "display.max_rows", None, "display.width", 200,
                           "display.float_format", "{:.4f}".format):
        print(table.to_string(index=False))
    if csv is not None:
        from inspector._atomic import atomic_path

        with atomic_path(csv) as tmp:
            table.to_csv(tmp, index=False)
        print(f"wrote {csv}", file=sys.stderr)
    return 0
