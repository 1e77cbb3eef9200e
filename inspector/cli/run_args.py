"""The ``inspector run`` command line that runs a :class:`~inspector.runs.config.RunConfig`: the inverse of the
``run`` command's reading of its arguments (what a terminal types to run, or resume, the same run).

A background run does not go through it: its child starts from the stored config
(:mod:`inspector.runs.child`).
"""

from __future__ import annotations

import argparse
import os
from dataclasses import fields
from typing import Any

from inspector.cli.main import build_parser
from inspector.runs.background import RunModel
from inspector.runs.config import RunConfig

__all__ = ["run_command"]


def _run_parser() -> argparse.ArgumentParser:
    for action in build_parser()._actions:
        if isinstance(action, argparse._SubParsersAction):
            run: argparse.ArgumentParser = action.choices["run"]
            return run
    raise RuntimeError("the inspector parser has no 'run' command")  # pragma: no cover


def _filter_arg(key: str, value: Any) -> str:
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif isinstance(value, (list, tuple, set, frozenset)):
        text = ",".join(str(v) for v in (sorted(value) if isinstance(value, (set, frozenset)) else value))
    else:
        text = str(value)
    return f"{key}={text}"


def _stop_arg(text: str) -> str:
    if "\\n" in text or "\\t" in text:
        raise ValueError(f"stop string {text!r} holds a backslash sequence that the command line reads as a "
                         "newline or tab; remove the backslash")
    return text.replace("\n", "\\n").replace("\t", "\\t")


def _values(config: RunConfig, out: str, model: RunModel, progress: bool) -> dict[str, Any]:
    """The ``run`` parser's destinations and the value each must parse to (the inverse of the CLI's reading)."""
    from inspector._capture.settings import GenerationSettings

    values: dict[str, Any] = {f.name: getattr(config.settings, f.name) for f in fields(GenerationSettings)
                              if f.metadata.get("flag") is not None}
    values["stop_strings"] = [_stop_arg(s) for s in config.settings.stop_strings]
    values.update(
        split=config.split, data=config.data, filters=[_filter_arg(k, v) for k, v in config.filters.items()],
        limit=config.limit, batch_size=config.batch_size, context_turns=config.context_turns,
        template=config.template, max_prompt_tokens=config.max_prompt_tokens, attention=config.attention,
        keep_captures=config.keep_captures, score_reference=config.score_reference, condition=config.condition,
        condition_style=config.condition_style, model=model.model, random_weights=model.random_weights,
        device=model.device, dtype=model.dtype, out=out, progress=progress,
    )
    return values


def run_command(config: RunConfig, out: str | os.PathLike[str], model: RunModel, *,
                progress: bool = False) -> list[str]:
    """The arguments of ``inspector`` that run ``config`` into ``out`` with ``model`` (``["run", "--out=...", ...]``).

    Every value is written out, so the command means the same under a later version's defaults.

    Raises:
        ValueError: a setting the command line cannot say (the message names it).
    """
    values = _values(config, str(out), model, progress)
    args = ["run"]
    for action in _run_parser()._actions:
        if action.dest not in values or not action.option_strings:
            continue
        flag = next(s for s in action.option_strings if s.startswith("--"))
        value = values.pop(action.dest)
        if isinstance(action, argparse._StoreTrueAction):
            args += [flag] if value else []
        elif isinstance(action, argparse._StoreFalseAction):
            args += [] if value else [flag]
        elif isinstance(action, argparse._AppendAction):
            args += [f"{flag}={item}" for item in value]
        elif value is not None:
            args.append(f"{flag}={value}")
    from inspector._capture.settings import GenerationSettings

    defaults = GenerationSettings()
    # Settings `inspector run` sets itself (RunConfig forces them): nothing to say, unless they differ.
    unsaid = {k: v for k, v in values.items() if getattr(defaults, k, object()) != v}
    if unsaid:
        raise ValueError(f"inspector run has no option for {sorted(unsaid)}; leave them at their defaults")
    return args
