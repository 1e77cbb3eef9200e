"""DailyDialog loading: :func:`load_dailydialog` picks the original release, local tables, or the Hub's Parquet export.

Where a split comes from, in this order (:func:`load_dailydialog`):

1. a local folder in the original release layout, given as ``source`` or by the
   ``INSPECTOR_DAILYDIALOG_DIR`` environment variable: ``{split}/dialogues_{split}.txt``
   (turns separated by ``__eou__``), ``dialogues_act_{split}.txt`` and
   ``dialogues_emotion_{split}.txt``, one dialogue per line; the same inside an
   ``ijcnlp_dailydialog/`` folder, or the three files directly in the folder;
2. local Parquet/CSV/JSONL files with ``dialog``, ``act`` and ``emotion`` columns
   (a file, or a folder holding ``{split}.parquet``, ``{split}-*.parquet``,
   ``{split}/*.parquet``, ``*/{split}/*.parquet``, ``{split}.csv``, ``{split}.jsonl``);
3. without a local source, the Hugging Face Hub through ``datasets``, reading the
   Parquet conversion of ``li2017dailydialog/daily_dialog`` (revision
   ``refs/convert/parquet``), since ``datasets`` 4 and later refuse the loading
   script on the main branch.

Every dialogue is checked: act and emotion counts must equal its turn count, and
labels must be known; errors name the split, the file and its line (or row).
Utterances are whitespace-normalised (``" ".join(text.split())``); blank lines and a
trailing ``__eou__`` are ignored. Dialogue ids are 0-based positions in the split.

The pieces live in :mod:`~inspector.data.schema` (label names, splits, columns),
:mod:`~inspector.data.dialogues` (records, the turn table), :mod:`~inspector.data.readers`
and :mod:`~inspector.data.filters`; their public names are re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path

from inspector.data.dialogues import DailyDialog, Dialogue, turn_table
from inspector.data.filters import FILTER_KEYS, filter_turns, parse_filters, parse_int_set
from inspector.data.readers import (
    dialogues_from_records,
    find_original_files,
    find_table_files,
    load_from_hub,
    read_original,
    read_table,
    split_utterances,
)
from inspector.data.schema import (
    ACT_NAMES,
    EMOTION_NAMES,
    ENV_VAR,
    EOU,
    HUB_REPO,
    HUB_REVISION,
    LABEL_COLUMNS,
    LABEL_NAMES,
    SPLITS,
    TABLE_SUFFIXES,
    TURN_COLUMNS,
    DailyDialogError,
)


def load_dailydialog(split: str = "validation", source: str | os.PathLike[str] | None = None) -> DailyDialog:
    """Load and validate one DailyDialog split.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"`` (any name for local data).
        source: a folder (original release layout, or holding table files), a table file,
            or ``"hub"``. ``None``: ``INSPECTOR_DAILYDIALOG_DIR`` when set, else ``shared/data/dailydialog``
            beside the current folder or the project (:func:`inspector._locations.find_dailydialog_dir`),
            else the Hub (refused at once when it cannot be reached).

    Raises:
        DailyDialogError: not found, unreadable, or inconsistent (names split, file and line).
    """
    if not split or not isinstance(split, str):
        raise DailyDialogError(f"split must be a name like 'validation', got {split!r}")
    if source is None:
        from inspector._locations import find_dailydialog_dir

        found = find_dailydialog_dir()
        source = found if found is not None else "hub"
    if str(source) == "hub":
        return load_from_hub(split)
    path = Path(source).expanduser()
    if path.is_file():
        return read_table(path, split)
    if path.is_dir():
        if find_original_files(path, split) is not None:
            return read_original(path, split)
        tables = find_table_files(path, split)
        if tables:
            return read_table(tables, split)
        raise DailyDialogError(
            f"no DailyDialog {split!r} split in {path}: expected the original layout "
            f"({split}/dialogues_{split}.txt with its act and emotion files, possibly inside ijcnlp_dailydialog/) "
            f"or {split}.parquet / {split}.csv / {split}.jsonl with dialog, act, emotion columns"
        )
    raise DailyDialogError(f"DailyDialog source {str(source)!r} does not exist (a folder, a table file, or 'hub')")


__all__ = [
    "ACT_NAMES",
    "EMOTION_NAMES",
    "ENV_VAR",
    "EOU",
    "FILTER_KEYS",
    "HUB_REPO",
    "HUB_REVISION",
    "LABEL_COLUMNS",
    "LABEL_NAMES",
    "SPLITS",
    "TABLE_SUFFIXES",
    "TURN_COLUMNS",
    "DailyDialog",
    "DailyDialogError",
    "Dialogue",
    "dialogues_from_records",
    "filter_turns",
    "find_original_files",
    "find_table_files",
    "load_dailydialog",
    "load_from_hub",
    "parse_filters",
    "parse_int_set",
    "read_original",
    "read_table",
    "split_utterances",
    "turn_table",
]
