"""Per-turn head statistics of a corpus run: computed from each turn's full attention, stored per batch, aggregated.

While a run runs, every turn's :class:`~inspector.analysis.head_stats.HeadStats` is
computed from its full attention ``[layer, head, query, key]`` (before any reduction
to the "summary" mode), over all query rows but the first. A batch's statistics go to
``parts/headstats-NNNNNN.safetensors``, written before the batch's summary part (the
part's presence marks the batch done, so a done batch always has its statistics):

* ``<statistic>``: ``[turn, layer, head]`` float32 for each name in
  :data:`~inspector.analysis.head_stats.STATISTICS` (``self`` is stored as ``self``);
* ``dial_id``, ``turn``: ``[turn]`` int64, the turn keys; ``num_rows``: ``[turn]`` int64;
  ``induction_rows``: ``[turn]`` int64, the rows behind each turn's induction score;
* metadata ``{"format": "inspector-headstats", "version": "2", "rows": "all"}``.

Version 1 files (written before the induction score existed) have no ``induction`` and no
``induction_rows``; they still load, with the induction score NaN (and 0 rows), so such a
run's tables show NaN there and :func:`~inspector.analysis.head_stats.rank_heads` lists no head.

A run with ``attention="none"`` captures no attention and writes no such file.
:func:`run_head_stats` reads them back and groups by labels (via
:func:`~inspector.analysis.head_stats.aggregate_head_stats`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import torch

from inspector.analysis.choices import STATISTICS
from inspector.analysis.head_stats import HeadStats, attention_head_stats
from inspector.runs.config import RunError
from inspector.runs.folder import head_stats_path, writing

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector._records.capture import Capture

HEAD_STATS_FORMAT = "inspector-headstats"
HEADSTATS_VERSION = "2"
#: Statistics a version 1 file lacks (read as NaN).
_ADDED_IN_V2 = ("induction",)
#: The query rows a run's statistics are over (see :func:`~inspector.analysis.head_stats.query_rows`).
RUN_ROWS = "all"
#: The label columns a run's head statistics can be grouped by.
HEADSTATS_BY: tuple[str, ...] = ("act", "emotion", "response_act", "response_emotion")


def turn_head_stats(capture: Capture) -> HeadStats | None:
    """The head statistics of one turn's full attention and tokens, or ``None`` when it kept none (or has
    one token)."""
    if capture.attentions is None or capture.seq_len < 2:
        return None
    return attention_head_stats(capture.attentions, capture.prompt_len, RUN_ROWS, capture.token_ids)


def write_batch_head_stats(out: Path, batch: int, keys: Sequence[tuple[int, int]],
                           stats: Sequence[HeadStats]) -> Path:
    """Write one batch's statistics atomically (see the module docstring); returns the path."""
    from safetensors.torch import save_file

    from inspector._atomic import atomic_path

    if len(keys) != len(stats) or not stats:
        raise ValueError(f"got {len(stats)} head statistics for {len(keys)} turns")
    tensors = {name: torch.stack([s.statistic(name).float() for s in stats]).contiguous() for name in STATISTICS}
    tensors["dial_id"] = torch.tensor([int(k[0]) for k in keys], dtype=torch.int64)
    tensors["turn"] = torch.tensor([int(k[1]) for k in keys], dtype=torch.int64)
    tensors["num_rows"] = torch.tensor([s.num_rows for s in stats], dtype=torch.int64)
    tensors["induction_rows"] = torch.tensor([s.induction_rows for s in stats], dtype=torch.int64)
    path = head_stats_path(out, batch)
    with writing(path), atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"format": HEAD_STATS_FORMAT, "version": HEADSTATS_VERSION,
                                               "rows": RUN_ROWS})
    return path


def read_batch_head_stats(path: Path) -> tuple[list[tuple[int, int]], list[HeadStats]]:
    """``(keys, stats)`` of one batch file, one entry per turn."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = fh.metadata() or {}
            if meta.get("format") != HEAD_STATS_FORMAT:
                raise RunError(f"{path} is not a head-statistics file of a run")
            t = {name: fh.get_tensor(name) for name in fh.keys()}  # noqa: SIM118 (safe_open is not a Mapping)
    except SafetensorError as exc:
        raise RunError(f"{path}: damaged head-statistics file ({exc}); delete it and its batch part to redo "
                       "that batch") from exc
    missing = [n for n in (*STATISTICS, "dial_id", "turn", "num_rows") if n not in t and n not in _ADDED_IN_V2]
    if missing:
        raise RunError(f"{path} lacks {missing}; the run folder was modified")
    rows = meta.get("rows", RUN_ROWS)
    keys = list(zip(t["dial_id"].tolist(), t["turn"].tolist(), strict=True))
    induction_rows = t.get("induction_rows", torch.zeros(len(keys), dtype=torch.int64))
    stats = []
    for i in range(len(keys)):
        # A statistic the file predates is left out: HeadStats fills it with NaN.
        fields = {("self_score" if n == "self" else n): t[n][i] for n in STATISTICS if n in t}
        stats.append(HeadStats(**fields, rows=rows, num_rows=int(t["num_rows"][i]),
                               induction_rows=int(induction_rows[i])))
    return keys, stats


def read_run_head_stats(out: Path) -> tuple[list[tuple[int, int]], list[HeadStats]]:
    """Every turn's statistics in a run folder, sorted by ``(dial_id, turn)``.

    Raises:
        RunError: the run stored none (it ran with ``attention="none"``, or before head
            statistics were recorded).
    """
    paths = sorted((out / "parts").glob("headstats-*.safetensors"))
    if not paths:
        raise RunError(f"the run {out} stored no head statistics: they are computed from the attention, so run "
                       "with --attention full or summary (a run made before head statistics existed has none)")
    pairs: list[tuple[tuple[int, int], HeadStats]] = []
    for p in paths:
        keys, stats = read_batch_head_stats(p)
        pairs.extend(zip(keys, stats, strict=True))
    pairs.sort(key=lambda kv: kv[0])
    return [k for k, _ in pairs], [s for _, s in pairs]


def run_head_stats(out: Path, summary: pd.DataFrame, by: str | Sequence[str] | None = None) -> pd.DataFrame:
    """A run's head statistics, one row per group, layer and head, with the ``turns`` and ``rows`` behind each.

    ``by``: label columns of :data:`HEADSTATS_BY` to group by (``None``: one group, the whole run).
    Only the turns in ``summary`` count (for an unfinished run, the ones done).
    """
    from inspector.analysis.head_stats import aggregate_head_stats

    keys_by = [] if by is None else [by] if isinstance(by, str) else list(by)
    bad = [k for k in keys_by if k not in HEADSTATS_BY]
    if bad:
        raise ValueError(f"cannot group head statistics by {bad}; choose from {list(HEADSTATS_BY)}")
    keys, stats = read_run_head_stats(out)
    labels = {(int(d), int(t)): row for d, t, row in zip(
        summary["dial_id"].tolist(), summary["turn"].tolist(),
        summary[keys_by].to_dict("records") if keys_by else [{}] * len(summary), strict=True)}
    chosen = [(s, labels[k]) for k, s in zip(keys, stats, strict=True) if k in labels]
    if not chosen:
        raise RunError(f"the run {out} has no finished turn with head statistics yet")
    return aggregate_head_stats([s for s, _ in chosen], [lab for _, lab in chosen], by=keys_by)
