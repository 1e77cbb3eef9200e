"""The numbers of the top-k figure: per generated step, the most likely candidates, the chosen one, the entropy.

:func:`topk_data` reads a :class:`~inspector._records.capture.Capture`'s raw or processed
scores into NumPy arrays and labels, shared by the matplotlib and the plotly figure.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inspector.plots.arrays import to_numpy
from inspector.plots.labels import capture_title, display_token
from inspector.plots.options import SCORES

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture

#: Above this many generated steps the top-k table drops the words in its cells.
TOPK_TEXT_LIMIT = 60


@dataclass(frozen=True)
class TopkData:
    """Per generated step: ``probs`` ``[step, k]``, candidate ``labels``, chosen ``chosen_col``
    (-1 when the chosen token is outside the top k), ``entropy`` ``[step]``."""

    probs: np.ndarray
    logprobs: np.ndarray
    ids: np.ndarray
    labels: list[list[str]]
    chosen_col: np.ndarray
    chosen_rank: np.ndarray
    chosen_prob: np.ndarray
    chosen_tokens: list[str]
    entropy: np.ndarray
    row_labels: list[str]
    scores: str
    title: str

    @property
    def num_steps(self) -> int:
        return int(self.probs.shape[0])

    @property
    def k(self) -> int:
        return int(self.probs.shape[1])


def topk_data(capture: Capture, k: int | None = None, scores: str = "raw") -> TopkData:
    """The ``k`` most likely candidates of every generated step under ``scores`` (raw or processed)."""
    if scores not in SCORES:
        raise ValueError(f"unknown scores {scores!r}; choose one of {list(SCORES)}")
    sc = capture.raw if scores == "raw" else capture.processed
    if capture.num_steps == 0:
        raise ValueError("this capture has no generated steps to show")
    if k is None:
        k = sc.k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= sc.k:
        raise ValueError(f"k={k!r} out of range: this capture kept the top {sc.k} candidates, use 1..{sc.k}")
    ids = sc.topk_ids[:, :k].numpy().astype(np.int64)
    logprobs = to_numpy(sc.topk_logprobs[:, :k])
    chosen = capture.generated_ids.numpy().astype(np.int64)
    hit = ids == chosen[:, None]
    chosen_col = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    rank = sc.chosen_rank.numpy().astype(np.int64)
    chosen_tokens = [display_token(t) for t in capture.generated_tokens]
    row_labels = []
    for i, tok in enumerate(chosen_tokens):
        extra = "" if chosen_col[i] >= 0 else f" (rank {rank[i]})"
        row_labels.append(f"{i}: {tok}{extra}")
    label = "processed scores" if scores == "processed" else "raw logits"
    return TopkData(
        probs=np.exp(logprobs),
        logprobs=logprobs,
        ids=ids,
        labels=[[display_token(capture.label(t)) for t in row] for row in ids.tolist()],
        chosen_col=chosen_col,
        chosen_rank=rank,
        chosen_prob=np.exp(to_numpy(sc.chosen_logprob)),
        chosen_tokens=chosen_tokens,
        entropy=to_numpy(sc.entropy),
        row_labels=row_labels,
        scores=scores,
        title=capture_title(capture, f"Top-{k} next-token candidates per step ({label})"),
    )
