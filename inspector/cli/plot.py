"""Placeholder: replaced by the module that implements this command."""

from __future__ import annotations

import argparse


def register(sub: argparse._SubParsersAction) -> None:  # noqa: ARG001 - nothing to register yet
    return None
