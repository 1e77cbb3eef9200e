"""The summary table of a run: its columns and dtypes, and reading, checking and writing its parquet files.

``summary.parquet`` columns (one row per turn; label columns hold names such as
``"question"`` or ``"happiness"``, and ``None`` where absent, e.g. the response labels of a
dialogue's last turn):

* ``dial_id``, ``turn``, ``split``, ``act``, ``emotion``, ``response_act``, ``response_emotion``;
* ``prompt_text``, ``generated_text``, ``response`` (the reference next turn), ``utterance``;
* ``prompt_tokens``, ``generated_tokens``, ``stop_reason``; ``context_turns`` (turns shown),
  ``dropped_turns`` / ``truncated_chars`` (what the token budget removed);
* ``entropy_mean``, ``entropy_max``, ``chosen_prob_mean``, ``chosen_rank_mean`` and the
  attention columns ``attn_*`` (defined in :mod:`inspector._metrics`), with one
  ``attn_entropy_L{l}`` per layer;
* ``seconds``: the turn's share of its batch's wall time (generation, metrics and writing
  divided by the batch size); ``batch``: the batch it was generated in;
* ``capture_file``: the capture's path relative to the run folder (``None`` with ``--no-captures``).

Integer columns are ``int64``, text columns hold ``str`` or ``None``, every other column is
``float64``. A table read back (a part or the whole summary) is checked against this before
use: a damaged or hand-edited file gives a :class:`~inspector.runs.config.RunError` naming it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector._atomic import atomic_path
from inspector.runs.config import RunError
from inspector.runs.folder import SUMMARY_FILE, head_stats_path, part_path, writing

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector.runs.plan import RunPlan

#: The columns that identify a row: one row per turn.
KEY_COLUMNS: tuple[str, str] = ("dial_id", "turn")
INT_COLUMNS: tuple[str, ...] = ("dial_id", "turn", "prompt_tokens", "generated_tokens", "context_turns",
                                "dropped_turns", "truncated_chars", "batch")
STR_COLUMNS: tuple[str, ...] = ("split", "act", "emotion", "response_act", "response_emotion", "prompt_text",
                                "generated_text", "response", "stop_reason", "capture_file", "utterance")
#: The first columns, in this order; the others follow in the order they were written.
LEAD_COLUMNS: tuple[str, ...] = ("dial_id", "turn", "split", "act", "emotion", "response_act", "response_emotion",
                                 "prompt_text", "generated_text", "response", "prompt_tokens", "generated_tokens",
                                 "stop_reason", "entropy_mean", "entropy_max", "chosen_prob_mean")


def coerce(df: pd.DataFrame) -> pd.DataFrame:
    """Fixed dtypes and column order, so parts and resumed runs give identical tables."""
    import pandas as pd

    df = df.copy()
    for c in df.columns:
        if c in INT_COLUMNS:
            df[c] = df[c].astype("int64")
        elif c in STR_COLUMNS:
            df[c] = df[c].astype(object).where(df[c].notna(), None)
        else:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    lead = [c for c in LEAD_COLUMNS if c in df.columns]
    return df[lead + [c for c in df.columns if c not in lead]]


def check_table(df: pd.DataFrame, where: str | Path) -> None:
    """Refuse a table that is not a run summary: key columns, dtypes, one row per ``(dial_id, turn)``.

    Raises:
        RunError: naming ``where`` and what is wrong.
    """
    from pandas.api.types import infer_dtype, is_bool_dtype, is_integer_dtype, is_numeric_dtype

    missing = [c for c in KEY_COLUMNS if c not in df.columns]
    if missing:
        raise RunError(f"{where}: no {' or '.join(missing)} column; this is not a run summary")
    bad = []
    for c in df.columns:
        col = df[c]
        if c in INT_COLUMNS:
            ok = is_integer_dtype(col.dtype) and not is_bool_dtype(col.dtype) and not col.isna().any()
        elif c in STR_COLUMNS:
            ok = infer_dtype(col, skipna=True) in ("string", "empty")
        else:
            ok = is_numeric_dtype(col.dtype) and not is_bool_dtype(col.dtype)
        if not ok:
            bad.append(f"{c} ({col.dtype})")
    if bad:
        raise RunError(
            f"{where}: column(s) {', '.join(bad)} do not have the summary's types (integers in "
            f"{list(INT_COLUMNS)}, text in {list(STR_COLUMNS)}, numbers elsewhere); the file was modified"
        )
    dup = df.duplicated(list(KEY_COLUMNS))
    if dup.any():
        first = df[dup].iloc[0]
        raise RunError(
            f"{where}: {int(dup.sum())} duplicated row(s) (the same dial_id and turn), e.g. dialogue "
            f"{first['dial_id']} turn {first['turn']}; one row per turn is expected, the file was modified"
        )


def _read(path: Path, what: str, columns: Sequence[str] | None = None) -> pd.DataFrame:
    import pandas as pd

    try:
        return pd.read_parquet(path, columns=list(columns) if columns is not None else None)
    except Exception as exc:  # pyarrow raises its own types for a damaged file
        raise RunError(f"{path}: unreadable {what} ({type(exc).__name__}: {exc})") from exc


def read_summary(path: Path) -> pd.DataFrame:
    """A summary table written by a run (``summary.parquet``), checked and with fixed dtypes."""
    df = _read(path, "run summary")
    check_table(df, path)
    return coerce(df)


def read_parts(out: Path, num_batches: int | None = None) -> pd.DataFrame:
    """The rows of every summary part in ``out/parts`` (of batches ``0..num_batches-1`` when given)."""
    import pandas as pd

    if num_batches is None:
        paths = sorted((out / "parts").glob("batch-*.parquet"))
    else:
        paths = [p for p in (part_path(out, b) for b in range(num_batches)) if p.is_file()]
    if not paths:
        return pd.DataFrame(columns=list(LEAD_COLUMNS))
    frames = []
    for p in paths:
        part = _read(p, "summary part")
        check_table(part, p)
        frames.append(part)
    df = pd.concat(frames, ignore_index=True)
    df = df.sort_values(list(KEY_COLUMNS), kind="stable").reset_index(drop=True)
    if df.duplicated(list(KEY_COLUMNS)).any():
        raise RunError(f"{out}: duplicated turns across summary parts; the run folder was modified")
    return coerce(df)


def _capture_files(table: Path, what: str) -> list[str]:
    """The capture files a summary table (or part) names, relative to the run folder."""
    import pyarrow.parquet as pq

    try:
        if "capture_file" not in pq.read_schema(table).names:
            return []
    except Exception as exc:  # pyarrow raises its own types for a damaged file
        raise RunError(f"{table}: unreadable {what} ({type(exc).__name__}: {exc})") from exc
    return [str(f) for f in _read(table, what, columns=["capture_file"])["capture_file"].tolist()
            if isinstance(f, str)]


def _listed_captures(table: Path) -> list[str]:
    """:func:`_capture_files`, none for a damaged table (reading it says what is wrong with it)."""
    try:
        return _capture_files(table, "table")
    except RunError:
        return []


def _writes_head_stats(out: Path) -> bool:
    """Whether the run writes per-batch head statistics: it does when any batch has them (a run with
    ``attention="none"``, or one made before they existed, has none)."""
    return any((out / "parts").glob("headstats-*.safetensors"))


def _batch_files_missing(out: Path, b: int, part: Path, head_stats: bool) -> list[str]:
    """The files a done batch ``b`` (its part on disk) wrote before its part and that are gone."""
    missing = [f for f in _capture_files(part, "summary part") if not (out / f).is_file()]
    if head_stats and not head_stats_path(out, b).is_file():
        missing.append(str(head_stats_path(out, b).relative_to(out)))
    return missing


def done_batches(out: Path, plan: RunPlan) -> set[int]:
    """Batches whose summary part exists and holds exactly the planned turns, and whose captures and head
    statistics (written before the part) are all still on disk."""
    done = set()
    head_stats = _writes_head_stats(out)
    for b, batch in enumerate(plan.batches):
        part = part_path(out, b)
        if not part.is_file():
            continue
        try:
            keys = _read(part, "summary part", columns=KEY_COLUMNS)
            lost = _batch_files_missing(out, b, part, head_stats)
        except RunError as exc:  # an atomic write never leaves a broken part; someone edited the folder
            raise RunError(f"{exc}; delete it to redo that batch") from exc
        if sorted(zip(keys["dial_id"].tolist(), keys["turn"].tolist(), strict=True)) != sorted(it.key for it in batch):
            raise RunError(f"{part} does not hold the turns planned for batch {b}; the run folder was modified")
        if not lost:
            done.add(b)
    return done


def missing_files(out: Path, doc: Mapping[str, Any] | None) -> tuple[str, ...]:
    """The files a run that run.json (``doc``) records as complete should hold and that are not on disk,
    relative to ``out``: the summary, each batch's part and head statistics, each turn's capture.

    ``()`` for a run not recorded as complete (its missing files are the work still to do). The same
    command redoes the batches they belong to and writes the summary again.
    """
    if doc is None or doc.get("status") != "complete":
        return ()
    missing: list[str] = []
    summary = out / SUMMARY_FILE
    if not summary.is_file():
        missing.append(SUMMARY_FILE)
    batches = (doc.get("counts") or {}).get("batches")
    head_stats = _writes_head_stats(out)
    captures: list[str] = []
    for b in range(batches if isinstance(batches, int) else 0):
        part = part_path(out, b)
        if part.is_file():
            captures += _listed_captures(part)
        else:
            missing.append(str(part.relative_to(out)))
        if head_stats and not head_stats_path(out, b).is_file():
            missing.append(str(head_stats_path(out, b).relative_to(out)))
    if summary.is_file():
        captures += _listed_captures(summary)
    missing += sorted({f for f in captures if not (out / f).is_file()})
    return tuple(missing)


def describe_missing(missing: tuple[str, ...] | list[str], shown: int = 5) -> str:
    """``a, b, c and 4 more files`` for a list of missing files."""
    head = ", ".join(missing[:shown])
    return head + (f" and {len(missing) - shown} more files" if len(missing) > shown else "")


def write_table(df: pd.DataFrame, path: Path) -> None:
    """Write a summary table (a part or the whole) atomically; an ``OSError`` names ``path``."""
    with writing(path), atomic_path(path) as tmp:
        df.to_parquet(tmp, index=False)
