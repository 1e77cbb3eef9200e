"""DailyDialog readers: the original release layout, local Parquet/CSV/JSONL tables, and the Hub's Parquet export.

Each reader validates every dialogue (act and emotion counts equal its turn count,
labels known) and names the split, the file and its line (or row) in any error.
Utterances are whitespace-normalised (``" ".join(text.split())``); blank lines and a
trailing ``__eou__`` are ignored. Dialogue ids are 0-based positions in the split.
"""

from __future__ import annotations

import ast
import json
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.data.dialogues import DailyDialog, Dialogue
from inspector.data.schema import (
    ACT_NAMES,
    EMOTION_NAMES,
    ENV_VAR,
    EOU,
    HUB_REPO,
    HUB_REVISION,
    SPLITS,
    TABLE_SUFFIXES,
    DailyDialogError,
    label_id,
)

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


# --------------------------------------------------------------------------- parsing helpers
def _read_text(path: Path) -> str:
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise DailyDialogError(f"cannot read {path}: {exc.strerror or exc}") from exc
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DailyDialogError(
            f"{path}: not UTF-8 text (undecodable byte 0x{data[exc.start]:02x} on line {line}); "
            "DailyDialog files are UTF-8: re-download or re-save the file as UTF-8"
        ) from exc


def _nonblank_lines(text: str) -> list[tuple[int, str]]:
    return [(i, line) for i, line in enumerate(text.splitlines(), start=1) if line.strip()]


def split_utterances(text: str, where: str) -> list[str]:
    """``"a __eou__ b __eou__"`` -> ``["a", "b"]``; a missing trailing ``__eou__`` is fine, empty turns are not."""
    parts = text.split(EOU)
    if parts and not parts[-1].strip():
        parts = parts[:-1]
    turns = [" ".join(p.split()) for p in parts]
    for i, t in enumerate(turns):
        if not t:
            raise DailyDialogError(f"{where}: turn {i} is empty (two __eou__ markers with nothing between)")
    if not turns:
        raise DailyDialogError(f"{where}: a dialogue with no turns")
    return turns


def _labels_from_text(text: str, names: Mapping[int, str], kind: str, where: str) -> list[int]:
    return [label_id(tok, names, kind, where) for tok in text.split()]


def _check_counts(split: str, n_turns: int, n_acts: int, n_emotions: int, text_where: str,
                  act_where: str, emo_where: str) -> None:
    if n_acts != n_turns:
        raise DailyDialogError(
            f"DailyDialog {split}: {text_where} has {n_turns} turns but {act_where} has {n_acts} act labels"
        )
    if n_emotions != n_turns:
        raise DailyDialogError(
            f"DailyDialog {split}: {text_where} has {n_turns} turns but {emo_where} has {n_emotions} emotion labels"
        )


# --------------------------------------------------------------------------- original release
def find_original_files(folder: str | os.PathLike[str], split: str) -> tuple[Path, Path, Path] | None:
    """The (text, act, emotion) files of ``split`` under ``folder`` in the original layout, or ``None``."""
    root = Path(folder).expanduser()
    for base in (root / split, root / "ijcnlp_dailydialog" / split, root, root / "ijcnlp_dailydialog"):
        text = base / f"dialogues_{split}.txt"
        if text.is_file():
            act = base / f"dialogues_act_{split}.txt"
            emo = base / f"dialogues_emotion_{split}.txt"
            missing = [p.name for p in (act, emo) if not p.is_file()]
            if missing:
                raise DailyDialogError(
                    f"DailyDialog {split}: found {text} but not {' and '.join(missing)} beside it"
                )
            return text, act, emo
    return None


def read_original(folder: str | os.PathLike[str], split: str = "validation") -> DailyDialog:
    """Read a split from a folder in the original release layout (see the module docstring)."""
    files = find_original_files(folder, split)
    if files is None:
        raise DailyDialogError(
            f"no DailyDialog {split} split in {folder}: expected {split}/dialogues_{split}.txt (or inside "
            "ijcnlp_dailydialog/) with dialogues_act_ and dialogues_emotion_ files beside it"
        )
    text_path, act_path, emo_path = files
    texts = _nonblank_lines(_read_text(text_path))
    acts = _nonblank_lines(_read_text(act_path))
    emos = _nonblank_lines(_read_text(emo_path))
    if not (len(texts) == len(acts) == len(emos)):
        raise DailyDialogError(
            f"DailyDialog {split}: {text_path.name} has {len(texts)} dialogues, {act_path.name} "
            f"{len(acts)}, {emo_path.name} {len(emos)} (non-blank lines); the three files must align"
        )
    dialogues = []
    for i, ((tl, t), (al, a), (el, e)) in enumerate(zip(texts, acts, emos, strict=True)):
        tw, aw, ew = f"{text_path} line {tl}", f"{act_path} line {al}", f"{emo_path} line {el}"
        turns = split_utterances(t, f"DailyDialog {split}: {tw}")
        act_ids = _labels_from_text(a, ACT_NAMES, "act", f"DailyDialog {split}: {aw}")
        emo_ids = _labels_from_text(e, EMOTION_NAMES, "emotion", f"DailyDialog {split}: {ew}")
        _check_counts(split, len(turns), len(act_ids), len(emo_ids), tw, aw, ew)
        dialogues.append(Dialogue(i, tuple(turns), tuple(act_ids), tuple(emo_ids)))
    return DailyDialog(split, tuple(dialogues), f"folder:{text_path.parent}")


# --------------------------------------------------------------------------- tables
def _as_list(value: Any, kind: str, where: str) -> list[Any]:
    if value is None or (isinstance(value, float) and value != value):
        raise DailyDialogError(f"{where}: {kind} is missing")
    if isinstance(value, str):
        s = value.strip()
        if s.startswith("["):
            for parse in (json.loads, ast.literal_eval):
                try:
                    parsed = parse(s)
                except (ValueError, SyntaxError):
                    continue
                if isinstance(parsed, list):
                    return parsed
            raise DailyDialogError(f"{where}: {kind} {s[:60]!r} is not a readable list")
        return split_utterances(s, where) if kind == "dialog" else s.split()
    if hasattr(value, "tolist"):
        value = value.tolist()
    if isinstance(value, (list, tuple)):
        return list(value)
    raise DailyDialogError(f"{where}: {kind} must be a list, got {type(value).__name__}")


def dialogues_from_records(records: Iterable[Mapping[str, Any]], split: str, where: str,
                           line_offset: int = 0, unit: str = "row") -> tuple[Dialogue, ...]:
    """Validate rows with ``dialog``, ``act`` and ``emotion`` entries into dialogues.

    ``where`` names the file; row ``i`` is reported as ``{unit} {i + line_offset}``.
    """
    dialogues = []
    for i, row in enumerate(records):
        at = f"DailyDialog {split}: {where} {unit} {i + line_offset}"
        missing = [c for c in ("dialog", "act", "emotion") if c not in row]
        if missing:
            raise DailyDialogError(f"{at}: no {', '.join(missing)} column (needs dialog, act, emotion)")
        raw_turns = _as_list(row["dialog"], "dialog", at)
        turns = [" ".join(str(t).split()) for t in raw_turns]
        if turns and not turns[-1]:  # a trailing empty turn, like a trailing __eou__
            turns = turns[:-1]
        if not turns:
            raise DailyDialogError(f"{at}: a dialogue with no turns")
        for j, t in enumerate(turns):
            if not t:
                raise DailyDialogError(f"{at}: turn {j} is empty")
        acts = [label_id(v, ACT_NAMES, "act", at) for v in _as_list(row["act"], "act", at)]
        emos = [label_id(v, EMOTION_NAMES, "emotion", at) for v in _as_list(row["emotion"], "emotion", at)]
        _check_counts(split, len(turns), len(acts), len(emos), at, at, at)
        dialogues.append(Dialogue(i, tuple(turns), tuple(acts), tuple(emos)))
    return tuple(dialogues)


def _read_frame(path: Path) -> tuple[pd.DataFrame, int, str]:
    """A table file as a DataFrame, with how its rows map to lines for messages."""
    import pandas as pd

    suffix = path.suffix.lower()
    try:
        if suffix == ".parquet":
            return pd.read_parquet(path), 0, "row"
        if suffix == ".csv":
            _read_text(path)  # a clear error for non-UTF-8 files
            return pd.read_csv(path, dtype=str, keep_default_na=False), 2, "line"
        if suffix in (".jsonl", ".json"):
            text = _read_text(path)
            rows = []
            for ln, line in _nonblank_lines(text):
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as exc:
                    raise DailyDialogError(f"{path} line {ln}: not a JSON object ({exc.msg})") from exc
            return pd.DataFrame(rows), 1, "line"
    except DailyDialogError:
        raise
    except Exception as exc:  # pyarrow/pandas raise many types for a damaged file
        raise DailyDialogError(f"cannot read {path}: {type(exc).__name__}: {exc}") from exc
    raise DailyDialogError(f"{path}: unsupported table type {suffix!r}; use one of {list(TABLE_SUFFIXES)}")


def read_table(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]],
               split: str = "validation") -> DailyDialog:
    """Read a split from Parquet/CSV/JSONL files with ``dialog``, ``act``, ``emotion`` columns.

    Several files (shards) are read in the given order; dialogue ids continue across them.
    """
    path_list = [Path(paths)] if isinstance(paths, (str, os.PathLike)) else [Path(p) for p in paths]
    dialogues: list[Dialogue] = []
    for path in path_list:
        frame, offset, unit = _read_frame(path)
        missing = [c for c in ("dialog", "act", "emotion") if c not in frame.columns]
        if missing:
            raise DailyDialogError(
                f"DailyDialog {split}: {path} has no {', '.join(missing)} column "
                f"(columns: {list(frame.columns)}; needs dialog, act, emotion)"
            )
        records = frame[["dialog", "act", "emotion"]].to_dict("records")
        for d in dialogues_from_records(records, split, str(path), offset, unit):
            dialogues.append(Dialogue(len(dialogues), d.turns, d.acts, d.emotions))
    where = str(path_list[0]) if len(path_list) == 1 else f"{path_list[0].parent} ({len(path_list)} files)"
    return DailyDialog(split, tuple(dialogues), f"table:{where}")


def find_table_files(folder: str | os.PathLike[str], split: str) -> list[Path]:
    """Table files of ``split`` in ``folder`` (see the module docstring), sorted; empty when none."""
    root = Path(folder).expanduser()
    patterns = [f"{split}.parquet", f"{split}-*.parquet", f"{split}/*.parquet", f"*/{split}/*.parquet",
                f"{split}.csv", f"{split}.jsonl"]
    for pattern in patterns:
        found = sorted(p for p in root.glob(pattern) if p.is_file())
        if found:
            return found
    return []


# --------------------------------------------------------------------------- hub
def load_from_hub(split: str = "validation", repo: str = HUB_REPO, revision: str = HUB_REVISION) -> DailyDialog:
    """Read a split of the Hub copy through ``datasets``, from its Parquet conversion.

    Raises:
        DailyDialogError: ``datasets`` is missing, or the Hub is unreachable (offline) or
            refuses; the message says how to use a local copy instead.
    """
    if split not in SPLITS:
        raise DailyDialogError(f"unknown DailyDialog split {split!r}; the Hub copy has {list(SPLITS)}")
    from inspector._hub import hub_reachable

    if not hub_reachable():  # at once, instead of the download client's retries (half a minute)
        raise _local_copy_error(f"DailyDialog {split!r} was to come from the Hugging Face Hub, which could not be "
                                "reached from here (offline? HF_HUB_OFFLINE=1 skips this check)")
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DailyDialogError("loading DailyDialog from the Hub needs the `datasets` package") from exc
    try:
        ds = datasets.load_dataset(repo, revision=revision, split=split)
    except Exception as exc:  # offline, hub errors, missing split: all become one clear message
        first = str(exc).strip().splitlines()[0].rstrip(".") if str(exc).strip() else ""
        raise _local_copy_error(
            f"could not load DailyDialog {split!r} from the Hugging Face Hub ({repo}, revision {revision}): "
            f"{type(exc).__name__}: {first}"
        ) from exc
    dialogues = dialogues_from_records(ds, split, f"hub {repo}@{revision}")
    return DailyDialog(split, dialogues, f"hub:{repo}@{revision}")


def _local_copy_error(problem: str) -> DailyDialogError:
    """``problem`` and how to point at a local copy, for Python callers and for the command line."""
    what = "a folder in the original release layout, or Parquet/CSV/JSONL files"
    return DailyDialogError(
        f"{problem}. Use a local copy ({what}): pass source='/path/to/dailydialog' to load_dailydialog "
        f"(data= to RunConfig), or set {ENV_VAR}=/path/to/dailydialog",
        f"{problem}. Use a local copy ({what}): --data /path/to/dailydialog, or set {ENV_VAR}=/path/to/dailydialog",
    )
