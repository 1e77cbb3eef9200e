"""``inspector order`` (a run's turns from easy to hard, for a curriculum) and ``inspector compare`` (two runs)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


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


def table_text(table: pd.DataFrame) -> str:
    """``table`` as text, every float with three significant digits and its sign
    (:func:`inspector._formatting.format_value`): a difference of ``-3e-07`` prints as ``-3.00e-07``, not
    ``-0.0000``."""
    import pandas as pd

    from inspector._formatting import format_value

    floats = [c for c in table.columns if pd.api.types.is_float_dtype(table[c])]
    shown = table.assign(**{c: table[c].map(format_value) for c in floats})
    with pd.option_context("display.max_columns", None, "display.max_rows", None, "display.width", 200):
        return str(shown.to_string(index=False))


def run_compare(args: argparse.Namespace) -> int:
    from inspector.analysis.compare import run_setting_differences, setting_warnings
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
    for line in setting_warnings(run_setting_differences(runs[0].settings, runs[1].settings)):
        print(f"warning: {line}")
    print(result.describe())
    table = result.to_frame()
    print(table_text(table))
    if csv is not None:
        from inspector._atomic import atomic_path

        with atomic_path(csv) as tmp:
            table.to_csv(tmp, index=False)
        print(f"wrote {csv}", file=sys.stderr)
    return 0
