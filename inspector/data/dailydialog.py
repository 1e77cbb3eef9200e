"""DailyDialog loading and validation: the original release, local tables, or the Hub's Parquet export.

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
"""

from __future__ import annotations

import ast
import json
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

#: Dialogue act labels (the Hub copy's class 0, ``__dummy__``, never occurs).
ACT_NAMES: Mapping[int, str] = {1: "inform", 2: "question", 3: "directive", 4: "commissive"}
#: Emotion labels.
EMOTION_NAMES: Mapping[int, str] = {
    0: "no emotion",
    1: "anger",
    2: "disgust",
    3: "fear",
    4: "happiness",
    5: "sadness",
    6: "surprise",
}
#: Label columns of the turn table and of run summaries that results can be grouped by
#: (the first is the default). The one list: ``inspector stats --by``, corpus figures and the dashboard use it.
LABEL_COLUMNS: tuple[str, ...] = ("emotion", "act", "response_emotion", "response_act")
SPLITS: tuple[str, ...] = ("train", "validation", "test")
HUB_REPO = "li2017dailydialog/daily_dialog"
HUB_REVISION = "refs/convert/parquet"
ENV_VAR = "INSPECTOR_DAILYDIALOG_DIR"
EOU = "__eou__"
TABLE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".jsonl")

#: Columns of :func:`turn_table`, in order.
TURN_COLUMNS: tuple[str, ...] = (
    "split",
    "dial_id",
    "turn",
    "speaker",
    "utterance",
    "act",
    "emotion",
    "response",
    "response_act",
    "response_emotion",
    "act_id",
    "emotion_id",
    "response_act_id",
    "response_emotion_id",
    "num_turns",
)


class DailyDialogError(ValueError):
    """DailyDialog could not be found, read or validated; the message names split, file and line."""


# --------------------------------------------------------------------------- records
@dataclass(frozen=True)
class Dialogue:
    """One dialogue: utterances with their act and emotion label ids (same length).

    Speakers alternate; the first utterance is speaker ``"A"``, the second ``"B"``, ...
    """

    dial_id: int
    turns: tuple[str, ...]
    acts: tuple[int, ...]
    emotions: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.turns) == len(self.acts) == len(self.emotions)):
            raise DailyDialogError(
                f"dialogue {self.dial_id}: {len(self.turns)} turns, {len(self.acts)} acts, "
                f"{len(self.emotions)} emotions"
            )

    def __len__(self) -> int:
        return len(self.turns)

    @property
    def act_names(self) -> list[str]:
        return [ACT_NAMES[a] for a in self.acts]

    @property
    def emotion_names(self) -> list[str]:
        return [EMOTION_NAMES[e] for e in self.emotions]

    @staticmethod
    def speaker(turn: int) -> str:
        """``"A"`` for even turns, ``"B"`` for odd ones."""
        return "A" if turn % 2 == 0 else "B"


@dataclass(frozen=True)
class DailyDialog:
    """One validated split: its dialogues and where they were read from."""

    split: str
    dialogues: tuple[Dialogue, ...]
    source: str

    def __len__(self) -> int:
        return len(self.dialogues)

    def __iter__(self) -> Iterator[Dialogue]:
        return iter(self.dialogues)

    def __getitem__(self, dial_id: int) -> Dialogue:
        return self.dialogues[dial_id]

    @property
    def num_turns(self) -> int:
        return sum(len(d) for d in self.dialogues)

    def turns(self) -> pd.DataFrame:
        """The turn table (see :func:`turn_table`)."""
        return turn_table(self)


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


def _label_id(value: Any, names: Mapping[int, str], kind: str, where: str) -> int:
    if isinstance(value, str):
        v = value.strip()
        if re.fullmatch(r"[+-]?\d+", v):
            value = int(v)
        else:
            by_name = {n: i for i, n in names.items()}
            if v.lower() in by_name:
                return by_name[v.lower()]
            raise DailyDialogError(f"{where}: {kind} label {value!r} is not a number or one of {list(names.values())}")
    if isinstance(value, bool) or not isinstance(value, (int,)) and not hasattr(value, "__index__"):
        raise DailyDialogError(f"{where}: {kind} label {value!r} is not an integer")
    value = int(value)
    if value not in names:
        allowed = ", ".join(f"{i} {n}" for i, n in names.items())
        raise DailyDialogError(f"{where}: unknown {kind} label {value} (known: {allowed})")
    return value


def _labels_from_text(text: str, names: Mapping[int, str], kind: str, where: str) -> list[int]:
    return [_label_id(tok, names, kind, where) for tok in text.split()]


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
    for i, ((tl, t), (al, a), (el, e)) in enumerate(zip(texts, acts, emos)):
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
        acts = [_label_id(v, ACT_NAMES, "act", at) for v in _as_list(row["act"], "act", at)]
        emos = [_label_id(v, EMOTION_NAMES, "emotion", at) for v in _as_list(row["emotion"], "emotion", at)]
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


def read_table(paths: str | os.PathLike[str] | Sequence[str | os.PathLike[str]], split: str = "validation") -> DailyDialog:
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
    try:
        import datasets
    except ImportError as exc:  # pragma: no cover - a dependency of the package
        raise DailyDialogError("loading DailyDialog from the Hub needs the `datasets` package") from exc
    try:
        ds = datasets.load_dataset(repo, revision=revision, split=split)
    except Exception as exc:  # offline, hub errors, missing split: all become one clear message
        raise DailyDialogError(
            f"could not load DailyDialog {split!r} from the Hugging Face Hub ({repo}, revision {revision}): "
            f"{type(exc).__name__}: {exc}. If this machine is offline, use a local copy: pass --data DIR "
            f"(the original release folder, or Parquet/CSV/JSONL files) or set {ENV_VAR}"
        ) from exc
    dialogues = dialogues_from_records(ds, split, f"hub {repo}@{revision}")
    return DailyDialog(split, dialogues, f"hub:{repo}@{revision}")


# --------------------------------------------------------------------------- entry point
def load_dailydialog(split: str = "validation", source: str | os.PathLike[str] | None = None) -> DailyDialog:
    """Load and validate one DailyDialog split.

    Args:
        split: ``"train"``, ``"validation"`` or ``"test"`` (any name for local data).
        source: a folder (original release layout, or holding table files), a table file,
            or ``"hub"``. ``None`` uses ``INSPECTOR_DAILYDIALOG_DIR`` when set, else the Hub.

    Raises:
        DailyDialogError: not found, unreadable, or inconsistent (names split, file and line).
    """
    if not split or not isinstance(split, str):
        raise DailyDialogError(f"split must be a name like 'validation', got {split!r}")
    if source is None:
        source = os.environ.get(ENV_VAR) or "hub"
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


# --------------------------------------------------------------------------- turn table
def turn_table(data: DailyDialog | Iterable[Dialogue], split: str | None = None) -> pd.DataFrame:
    """One row per turn, with the next turn as its ``response``.

    Columns: ``split``, ``dial_id``, ``turn`` (0-based), ``speaker`` (``"A"``/``"B"``, alternating),
    ``utterance``, ``act``, ``emotion`` (label names), ``response``, ``response_act``,
    ``response_emotion`` (the next turn; ``None`` for a dialogue's last turn), the label ids
    ``act_id``, ``emotion_id``, ``response_act_id``, ``response_emotion_id`` (nullable ints) and
    ``num_turns`` (turns in the dialogue).
    """
    import pandas as pd

    if isinstance(data, DailyDialog):
        split = split or data.split
        dialogues: Iterable[Dialogue] = data.dialogues
    else:
        dialogues = data
    rows = []
    for d in dialogues:
        n = len(d)
        for t in range(n):
            last = t == n - 1
            rows.append(
                (split, d.dial_id, t, Dialogue.speaker(t), d.turns[t], ACT_NAMES[d.acts[t]],
                 EMOTION_NAMES[d.emotions[t]], None if last else d.turns[t + 1],
                 None if last else ACT_NAMES[d.acts[t + 1]], None if last else EMOTION_NAMES[d.emotions[t + 1]],
                 d.acts[t], d.emotions[t], None if last else d.acts[t + 1], None if last else d.emotions[t + 1], n)
            )
    df = pd.DataFrame.from_records(rows, columns=list(TURN_COLUMNS))
    for col in ("dial_id", "turn", "act_id", "emotion_id", "num_turns"):
        df[col] = df[col].astype("int64")
    for col in ("response_act_id", "response_emotion_id"):
        df[col] = df[col].astype("Int64")
    return df


# --------------------------------------------------------------------------- filtering
_LABEL_FILTERS = {
    "act": ACT_NAMES,
    "emotion": EMOTION_NAMES,
    "response_act": ACT_NAMES,
    "response_emotion": EMOTION_NAMES,
}
#: Keys accepted by :func:`parse_filters` (``--filter KEY=VALUE``).
FILTER_KEYS: tuple[str, ...] = (*_LABEL_FILTERS, "dial_id", "turn", "text", "response_text", "has_response", "split")


def _label_set(values: str | int | Iterable[str | int], names: Mapping[int, str], key: str) -> set[str]:
    items = [values] if isinstance(values, (str, int)) else list(values)
    out = set()
    for v in items:
        if isinstance(v, str) and "," in v:
            out |= _label_set([x for x in v.split(",") if x.strip()], names, key)
            continue
        try:
            out.add(names[_label_id(v, names, key, f"filter {key}")])
        except DailyDialogError:
            raise DailyDialogError(
                f"unknown {key} {v!r} in filter; choose from {list(names.values())} (or their numbers)"
            ) from None
    return out


def parse_int_set(spec: str | int | Iterable[int | str], what: str = "dial_id") -> set[int]:
    """``"1,4,10-12"`` -> ``{1, 4, 10, 11, 12}``."""
    if isinstance(spec, int):
        return {spec}
    parts: list[str] = spec.split(",") if isinstance(spec, str) else [str(x) for x in spec]
    out: set[int] = set()
    for part in (p.strip() for p in parts):
        if not part:
            continue
        m = re.fullmatch(r"(\d+)\s*-\s*(\d+)", part)
        if m:
            lo, hi = int(m.group(1)), int(m.group(2))
            if hi < lo:
                raise DailyDialogError(f"{what} range {part!r} is empty")
            out.update(range(lo, hi + 1))
        elif re.fullmatch(r"\d+", part):
            out.add(int(part))
        else:
            raise DailyDialogError(f"{what} {part!r} is not a number or a range like 10-12")
    return out


def filter_turns(
    df: pd.DataFrame,
    *,
    split: str | Iterable[str] | None = None,
    act: Any = None,
    emotion: Any = None,
    response_act: Any = None,
    response_emotion: Any = None,
    dial_id: Any = None,
    turn: Any = None,
    text: str | None = None,
    response_text: str | None = None,
    has_response: bool | None = None,
) -> pd.DataFrame:
    """Rows of a turn table that match every given condition (``None`` = no condition).

    Label conditions take names (``"question"``), numbers, or lists of them (any may
    match); ``dial_id`` and ``turn`` take ints, lists, or ``"1,4,10-12"``; ``text`` and
    ``response_text`` are case-insensitive substrings of the utterance / the response.
    Returns a new frame with a fresh index, rows in their original order.
    """
    mask = df["dial_id"].notna()
    if split is not None:
        mask &= df["split"].isin([split] if isinstance(split, str) else list(split))
    for key, value in (("act", act), ("emotion", emotion), ("response_act", response_act),
                       ("response_emotion", response_emotion)):
        if value is not None:
            mask &= df[key].isin(_label_set(value, _LABEL_FILTERS[key], key))
    if dial_id is not None:
        mask &= df["dial_id"].isin(parse_int_set(dial_id, "dial_id"))
    if turn is not None:
        mask &= df["turn"].isin(parse_int_set(turn, "turn"))
    if text:
        mask &= df["utterance"].str.contains(text, case=False, regex=False)
    if response_text:
        mask &= df["response"].fillna("").str.contains(response_text, case=False, regex=False)
    if has_response is not None:
        mask &= df["response"].notna() == bool(has_response)
    return df[mask].reset_index(drop=True)


def parse_filters(specs: Iterable[str]) -> dict[str, Any]:
    """``["act=question", "emotion=anger,sadness", "dial_id=1-5"]`` -> keyword arguments of :func:`filter_turns`.

    Repeating a key is an error. ``has_response`` takes yes/no/true/false/1/0.
    """
    out: dict[str, Any] = {}
    for spec in specs:
        key, sep, value = spec.partition("=")
        key = key.strip().replace("-", "_")
        if not sep or not key:
            raise DailyDialogError(f"filter {spec!r} must look like KEY=VALUE, e.g. act=question")
        if key not in FILTER_KEYS:
            raise DailyDialogError(f"unknown filter key {key!r}; choose from {list(FILTER_KEYS)}")
        if key in out:
            raise DailyDialogError(f"filter key {key!r} given twice; list several values with commas instead")
        value = value.strip()
        if key == "has_response":
            low = value.lower()
            if low not in ("yes", "no", "true", "false", "1", "0"):
                raise DailyDialogError(f"has_response must be yes or no, got {value!r}")
            out[key] = low in ("yes", "true", "1")
        elif key in _LABEL_FILTERS:
            _label_set(value, _LABEL_FILTERS[key], key)  # validate now, with the key in the message
            out[key] = value
        elif key in ("dial_id", "turn"):
            out[key] = sorted(parse_int_set(value, key))
        else:
            out[key] = value
    return out
