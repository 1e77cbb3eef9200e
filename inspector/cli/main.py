"""``inspector`` console entry point: builds the parser from the subcommand modules."""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

# Each module defines ``register(subparsers)``; a parser it adds sets ``func=handler(args) -> int``.
COMMAND_MODULES = (
    "inspector.cli.capture",  # capture, doctor
    "inspector.cli.runs",  # run, stats
    "inspector.cli.plot",  # plot
    "inspector.cli.dashboard",  # dashboard
    "inspector.cli.research",  # order, compare
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="inspector",
        description="See what GPT-2 does inside while it generates: per-step logits and attention.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    from inspector.model import ModelLoadError
    from inspector.records import CaptureError

    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return int(args.func(args) or 0)
    except (ModelLoadError, CaptureError, ValueError, FileNotFoundError, OSError) as exc:
        print(f"inspector {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"inspector {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
