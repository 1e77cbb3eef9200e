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
    "inspector.cli.attribute",  # attribute
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


# Errors that are the user's to fix (module, class): printed in one line, exit status 2. Looked up only in
# modules already imported, so that `--help` and argument errors never import torch (a class whose module
# was never imported cannot have been raised).
_USER_ERRORS = (
    ("inspector._model", "ModelLoadError"),
    ("inspector._records.capture", "CaptureError"),
)


def _user_error_types() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [ValueError, OSError]
    for module, name in _USER_ERRORS:
        loaded = sys.modules.get(module)
        if loaded is not None:
            found.append(getattr(loaded, name))
    return tuple(found)


def error_text(exc: BaseException) -> str:
    """What the command line shows for ``exc``: its ``cli_message`` (worded with flags) when it has one."""
    return str(getattr(exc, "cli_message", None) or exc)


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        if getattr(args, "device", None):  # --device mps off macOS: refused before torch or a model loads
            from inspector._devices import refuse_unavailable_device

            refuse_unavailable_device(args.device)
        return int(args.func(args) or 0)
    except Exception as exc:
        if not isinstance(exc, _user_error_types()):
            raise
        print(f"inspector {args.command}: error: {error_text(exc)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"inspector {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
