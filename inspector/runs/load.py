"""Reading a run folder: :func:`load_run` gives a :class:`Run` (its run.json, checked summary and captures)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector.runs.config import RunError
from inspector.runs.folder import SUMMARY_FILE, read_run_json
from inspector.runs.stats import stats
from inspector.runs.summary import missing_files, read_parts, read_summary

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector._records.capture import Capture

@dataclass
class Run:
    """A run folder, loaded by :func:`load_run`.

    Attributes:
        path: the folder.
        settings: the contents of its run.json (settings, model, versions, counts, status).
    """

    path: Path
    settings: dict[str, Any]
    _summary: Any = field(default=None, repr=False)
    _missing: tuple[str, ...] | None = field(default=None, repr=False)

    @property
    def complete(self) -> bool:
        """run.json records the run as complete and the folder holds every file of it (see :attr:`missing`)."""
        return self.settings.get("status") == "complete" and not self.missing

    @property
    def missing(self) -> tuple[str, ...]:
        """Files of a run recorded as complete that are not in its folder (relative paths: the summary, batch
        parts, head statistics, captures); ``()`` when none is, or the run is unfinished. The same command
        redoes their batches and writes the summary again."""
        if self._missing is None:
            self._missing = missing_files(self.path, self.settings)
        return self._missing

    @property
    def summary(self) -> pd.DataFrame:
        """One row per turn (``summary.parquet``; for an unfinished run, the rows done so far).

        Raises:
            RunError: naming the file, when the table is unreadable, does not have the summary's
                columns and dtypes, repeats a turn, or (for a complete run) holds another number of
                turns than run.json records.
        """
        if self._summary is None:
            f = self.path / SUMMARY_FILE
            if f.is_file() and self.settings.get("status") == "complete":
                df = read_summary(f)
                expected = (self.settings.get("counts") or {}).get("turns")
                if isinstance(expected, int) and len(df) != expected:
                    raise RunError(
                        f"{f} holds {len(df)} turns but {self.path / 'run.json'} records {expected}; the run "
                        "folder was modified. Delete summary.parquet and rerun the same command to rebuild it "
                        "from parts/"
                    )
                self._summary = df
            else:
                self._summary = read_parts(self.path)
        return self._summary

    def capture_path(self, dial_id: int, turn: int) -> Path:
        """Where the capture of one turn is (inside the run folder, as its summary names it).

        Raises:
            RunError: the turn is not in this run, the run kept no captures, or its summary names a capture
                outside the run folder.
        """
        df = self.summary
        hit = df[(df["dial_id"] == int(dial_id)) & (df["turn"] == int(turn))]
        if hit.empty:
            raise RunError(f"dialogue {dial_id} turn {turn} is not in the run {self.path}")
        rel = hit.iloc[0]["capture_file"]
        if rel is None or (isinstance(rel, float) and rel != rel):
            raise RunError(
                f"the run {self.path} kept no captures (started with --no-captures); only its summary is "
                "available. Rerun into a new folder without --no-captures to keep them"
            )
        relative = Path(str(rel))
        if relative.is_absolute() or ".." in relative.parts:  # a run writes its captures inside its folder
            raise RunError(f"the summary of the run {self.path} names the capture of dialogue {dial_id} turn {turn} "
                           f"{str(rel)!r}, outside the run folder; the run folder was modified")
        return self.path / relative

    def load_capture(self, dial_id: int, turn: int) -> Capture:
        """The capture of one turn (:meth:`capture_path`, loaded).

        Raises:
            RunError: as :meth:`capture_path`.
        """
        from inspector._store import load_capture

        return load_capture(self.capture_path(dial_id, turn))

    def stats(self, by: str = "emotion") -> pd.DataFrame:
        """See :func:`~inspector.runs.stats.stats`."""
        return stats(self.summary, by)

    def head_stats(self, by: str | Sequence[str] | None = None) -> pd.DataFrame:
        """Per-head attention statistics over the run's turns, grouped by ``by`` (e.g. ``"act"``, ``"emotion"``).

        One row per group, layer and head, with the ``turns`` and query ``rows`` behind each
        number; see :func:`~inspector.runs.head_stats.run_head_stats`.
        """
        from inspector.runs.head_stats import run_head_stats

        return run_head_stats(self.path, self.summary, by)


def load_run(path: str | os.PathLike[str]) -> Run:
    """Open a run folder written by :func:`~inspector.runs.execute.run_corpus` (finished or not)."""
    p = Path(path)
    return Run(p, read_run_json(p))
