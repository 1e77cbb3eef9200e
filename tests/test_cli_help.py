"""Help that helps: every option of every command says what it does and its default; `--help` loads no torch."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

import pytest

from inspector.cli.main import build_parser, main

ROOT = Path(__file__).resolve().parents[1]
# Heavy libraries that help and argument errors must not import (each takes seconds to load).
HEAVY = ("torch", "transformers", "pandas", "matplotlib", "plotly", "datasets")


def _subcommands() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    (sub,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(sub.choices)


def _options(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    return [a for a in parser._actions if not isinstance(a, argparse._HelpAction)]


def test_every_command_is_walked():
    assert set(_subcommands()) >= {"capture", "doctor", "run", "stats", "plot", "dashboard"}


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_every_option_has_help_and_states_its_default(command):
    parser = _subcommands()[command]
    assert parser.description and parser.format_help()
    missing, no_default = [], []
    for action in _options(parser):
        name = "/".join(action.option_strings) or action.dest
        if not (action.help or "").strip():
            missing.append(name)
            continue
        on_off = isinstance(action, (argparse._StoreTrueAction, argparse._StoreFalseAction))
        if action.option_strings and not action.required and not on_off and "default" not in (action.help or ""):
            no_default.append(name)
    assert not missing, f"inspector {command}: options without help: {missing}"
    assert not no_default, f"inspector {command}: options whose help does not state the default: {no_default}"


@pytest.mark.parametrize("command", sorted(_subcommands()))
def test_defaults_shown_in_help_are_the_real_defaults(command):
    """Where an option's help prints ``%(default)s``, the text shown is the parser's default."""
    parser = _subcommands()[command]
    text = " ".join(parser.format_help().split())
    for action in _options(parser):
        if action.help and "%(default)" in action.help and action.default not in (None, False):
            shown = str(action.default) if "%(default)s" in action.help else repr(action.default)
            assert " ".join(shown.split()) in text, (command, action.dest)


def test_key_options_have_help_in_the_printed_text():
    """Capture's decoding options, doctor's, stats --by: help stating the default, shown by ``--help``."""
    cmds = _subcommands()
    wanted = {"capture": ("--max-new-tokens", "--num-beams", "--seed"),
              "doctor": ("--random-weights", "--prompt", "--max-new-tokens"),
              "stats": ("--by",)}
    for command, flags in wanted.items():
        text = " ".join(cmds[command].format_help().split())
        for flag in flags:
            (action,) = [a for a in _options(cmds[command]) if flag in a.option_strings]
            assert action.help and "default" in action.help, (command, flag)
            assert flag in text
    assert "(default: emotion)" in " ".join(cmds["stats"].format_help().split())


_PROBE = """
import sys
from inspector.cli.main import main
try:
    main(sys.argv[1:])
except SystemExit:
    pass
print("HEAVY", sorted(m for m in {heavy!r} if m in sys.modules), file=sys.stderr)
"""


def _heavy_imports(*argv: str) -> str:
    """The heavy libraries in ``sys.modules`` after ``inspector ARGV`` ran in a fresh interpreter."""
    proc = subprocess.run([sys.executable, "-c", _PROBE.format(heavy=HEAVY), *argv], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    (line,) = [line for line in proc.stderr.splitlines() if line.startswith("HEAVY")]
    return line.split(" ", 1)[1]


@pytest.mark.slow
@pytest.mark.parametrize("argv", [
    ("--help",),
    *[(c, "--help") for c in ("capture", "doctor", "run", "stats", "plot", "dashboard")],
    ("capture", "--num-beams", "two"),          # an argument error
    ("run",),                                  # a missing required option
    ("plot", "x.safetensors", "--kind", "nope", "--out", "x.png"),
])
def test_help_and_argument_errors_import_nothing_heavy(argv):
    # What made help slow was importing these (seconds each); benchmarks/bench_cli.py reports the time.
    heavy = _heavy_imports(*argv)
    assert heavy == "[]", f"inspector {' '.join(argv)} imported {heavy}"


def test_argument_error_exits_2_with_usage(capsys):
    with pytest.raises(SystemExit) as exc:
        main(["capture", "--num-beams", "two"])
    assert exc.value.code == 2 and "invalid int value" in capsys.readouterr().err


def test_plot_agg_choices_match_the_package():
    from inspector._aggregate import AGGREGATE_MODES
    from inspector.cli.plot import AGG_CHOICES

    assert AGG_CHOICES == AGGREGATE_MODES


@pytest.mark.slow
def test_lazy_runs_package_keeps_every_name():
    """`inspector.runs` loads its names on first use (for a fast `run --help`); each is the defining module's."""
    code = (
        "import importlib, sys\n"
        "import inspector.runs.stats, inspector.runs.config\n"  # submodules first: they must not shadow names
        "import inspector.runs as runs\n"
        "assert 'torch' not in sys.modules, 'inspector.runs imported torch'\n"
        "for name in runs.__all__:\n"
        "    value = getattr(runs, name)\n"
        "    module = runs._EXPORTS.get(name, 'inspector.runs.stats')\n"
        "    assert value is getattr(importlib.import_module(module), name), name\n"
        "assert callable(runs.stats) and callable(runs.load_run)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
