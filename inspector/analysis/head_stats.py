"""Per-head attention statistics (entropy, distance, sink, previous-token, induction, self, prompt share).

Every statistic is a mean over a set of query rows of attention ``[layer, head, q, k]``:

* ``entropy``: ``-sum_k a ln a`` in nats (a uniform row over ``n`` keys gives ``ln n``);
* ``distance``: ``sum_k a (q - k)``, how far back the head looks;
* ``sink``: ``a[q, 0]``, the share on the first token;
* ``previous``: ``a[q, q - 1]``, the previous-token score;
* ``induction``: ``a[q, j + 1]`` where ``j < q`` is the most recent earlier position holding the
  same token as ``q`` (``token_ids[j] == token_ids[q]``): the share on the token that followed
  the last occurrence of the current one, which an induction head copies. Only rows whose token
  occurred before count (``induction_rows`` of them); for a token repeated at once (``j = q - 1``)
  the target is ``q`` itself. NaN when no chosen row qualifies, or when no token ids were given;
* ``self``: ``a[q, q]``;
* ``prompt_share`` / ``generated_share``: ``sum_k a`` over prompt keys (``k < prompt_len``)
  and over generated keys; they add up to 1.

Rows (``rows=``): ``"all"`` is rows ``1 .. seq - 1``, ``"prompt"`` rows
``1 .. prompt_len - 1``, ``"generated"`` rows ``prompt_len .. seq - 1``. Row 0 is
never used: it has a single key, so every head puts all its weight there (entropy 0,
sink 1, self 1) and it would only blur the statistics.

Heads are named ``"L{layer}.H{head}"`` (:func:`head_name`), as everywhere else;
:func:`rank_heads` lists the heads with the highest score of one statistic.

For norm-weighted statistics pass ``norm_weighted_attention(att, norms, renormalise=True)``
(:mod:`inspector.analysis.value_norms`) instead of raw attention.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any

import torch

from inspector.analysis.choices import ROW_CHOICES, STATISTICS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector._records.capture import Capture

#: Attributes of :class:`HeadStats` that are counts and labels, not ``[layer, head]`` tensors.
_COUNT_FIELDS = ("rows", "num_rows", "induction_rows")


def _absent() -> torch.Tensor:
    """Placeholder for a statistic that was not given (filled with NaN of the right shape)."""
    return torch.empty(0)


def head_name(layer: int, head: int) -> str:
    """The name of one attention head, ``"L3.H5"`` for layer 3, head 5 (0-based, as everywhere)."""
    return f"L{int(layer)}.H{int(head)}"


@dataclass(frozen=True)
class HeadStats:
    """Attention statistics of every head of one capture; see the module docstring for definitions.

    Attributes:
        entropy, distance, sink, previous, self_score, prompt_share, generated_share:
            ``[layer, head]`` float32, each a mean over the chosen query rows.
        induction: ``[layer, head]`` float32, the mean over the chosen rows whose token
            occurred before (``induction_rows``); all NaN when none did, and when left out
            (statistics made without token ids, or read from files older than the score).
        rows: which rows were used (``"all"``, ``"prompt"``, ``"generated"``).
        num_rows: how many query rows each number is a mean of (``induction`` excepted).
        induction_rows: how many of them the induction score is a mean of.
    """

    entropy: torch.Tensor
    distance: torch.Tensor
    sink: torch.Tensor
    previous: torch.Tensor
    self_score: torch.Tensor
    prompt_share: torch.Tensor
    generated_share: torch.Tensor
    rows: str = "all"
    num_rows: int = 0
    induction: torch.Tensor = field(default_factory=_absent)
    induction_rows: int = 0

    def __post_init__(self) -> None:
        shape = tuple(self.entropy.shape)
        if len(shape) != 2:
            raise ValueError(f"HeadStats fields must be [layer, head], got {shape}")
        if self.induction.numel() == 0 and math.prod(shape) != 0:
            object.__setattr__(self, "induction", torch.full(shape, math.nan))
        for name in self._tensor_fields():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"HeadStats.{name} has shape {got}, entropy has {shape}")
        if self.rows not in ROW_CHOICES:
            raise ValueError(f"rows must be one of {ROW_CHOICES}, got {self.rows!r}")

    @staticmethod
    def _tensor_fields() -> tuple[str, ...]:
        return tuple(f.name for f in fields(HeadStats) if f.name not in _COUNT_FIELDS)

    @property
    def num_layers(self) -> int:
        return int(self.entropy.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.entropy.shape[1])

    def statistic(self, name: str) -> torch.Tensor:
        """``[layer, head]`` of one statistic by its name in :data:`STATISTICS`."""
        if name not in STATISTICS:
            raise ValueError(f"unknown statistic {name!r}; choose one of {STATISTICS}")
        values: torch.Tensor = getattr(self, "self_score" if name == "self" else name)
        return values

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, head): ``layer, head``, every statistic, ``rows`` (the row count)
        and ``induction_rows`` (the rows behind the induction score)."""
        import pandas as pd

        layer, head = torch.meshgrid(torch.arange(self.num_layers), torch.arange(self.num_heads), indexing="ij")
        data: dict[str, Any] = {"layer": layer.reshape(-1).numpy(), "head": head.reshape(-1).numpy()}
        for name in STATISTICS:
            data[name] = self.statistic(name).reshape(-1).float().numpy()
        data["rows"] = self.num_rows
        data["induction_rows"] = self.induction_rows
        return pd.DataFrame(data)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """The ``[layer, head]`` tensors as ``{prefix.field: tensor}`` (the counts go in metadata)."""
        return {f"{prefix}.{name}": getattr(self, name) for name in self._tensor_fields()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], prefix: str, rows: str, num_rows: int,
                     induction_rows: int = 0) -> HeadStats:
        """The inverse of :meth:`tensors`; a missing ``induction`` (older files) reads as NaN."""
        given = {n: tensors[f"{prefix}.{n}"] for n in cls._tensor_fields() if f"{prefix}.{n}" in tensors}
        missing = [n for n in cls._tensor_fields() if n not in given and n != "induction"]
        if missing:
            raise ValueError(f"head statistics under {prefix!r} lack {missing}")
        return cls(**given, rows=rows, num_rows=num_rows, induction_rows=induction_rows)


def query_rows(seq: int, prompt_len: int, rows: str = "all") -> torch.Tensor:
    """``[n]`` the query positions a ``rows`` choice covers (see the module docstring)."""
    if rows not in ROW_CHOICES:
        raise ValueError(f"rows must be one of {ROW_CHOICES}, got {rows!r}")
    if not 0 < prompt_len <= seq:
        raise ValueError(f"prompt_len={prompt_len} must be within 1..{seq}")
    start, stop = {"all": (1, seq), "prompt": (1, prompt_len), "generated": (prompt_len, seq)}[rows]
    if stop <= start:
        raise ValueError(f"no {rows!r} query rows in a sequence of {seq} tokens with prompt_len={prompt_len} "
                         "(row 0 is never used); choose another rows= option")
    return torch.arange(start, stop)


def previous_occurrences(token_ids: torch.Tensor) -> torch.Tensor:
    """``[seq]`` int64: for each position ``i`` of ``token_ids [seq]``, the most recent ``j < i`` with the
    same token, ``-1`` where the token did not occur before."""
    if token_ids.dim() != 1 or token_ids.dtype.is_floating_point or token_ids.dtype == torch.bool:
        raise ValueError(f"token_ids must be [seq] integer ids, got {tuple(token_ids.shape)} {token_ids.dtype}")
    last: dict[int, int] = {}
    out = []
    for i, t in enumerate(token_ids.tolist()):
        out.append(last.get(t, -1))
        last[t] = i
    return torch.tensor(out, dtype=torch.int64)


def attention_head_stats(att: torch.Tensor, prompt_len: int, rows: str = "all",
                         token_ids: torch.Tensor | None = None) -> HeadStats:
    """Statistics of every head of attention ``[layer, head, query, key]`` over the chosen rows.

    ``token_ids`` ``[seq]``: the sequence's tokens, needed for the induction score (without them
    it is NaN); see the module docstring for every definition.
    """
    if att.dim() != 4 or att.shape[2] != att.shape[3]:
        raise ValueError(f"att must be [layer, head, seq, seq], got {tuple(att.shape)}")
    seq = int(att.shape[2])
    if token_ids is not None and tuple(token_ids.shape) != (seq,):
        raise ValueError(f"token_ids must be [seq] = ({seq},) like the attention, got {tuple(token_ids.shape)}")
    q = query_rows(seq, prompt_len, rows).to(att.device)
    earlier = None if token_ids is None else previous_occurrences(token_ids.cpu())[q.cpu()].to(att.device)
    a = att[:, :, q, :].float()  # [layer, head, n, key]
    layers, heads = int(a.shape[0]), int(a.shape[1])
    keys = torch.arange(seq, device=att.device)
    plogp = a * torch.log(a.clamp(min=torch.finfo(torch.float32).tiny))
    at = a.gather(3, q.view(1, 1, -1, 1).expand(layers, heads, -1, 1))[..., 0]
    prev = a.gather(3, (q - 1).view(1, 1, -1, 1).expand(layers, heads, -1, 1))[..., 0]
    prompt = a[..., :prompt_len].sum(-1)
    induction, induction_rows = torch.full((layers, heads), math.nan), 0
    if earlier is not None and bool((earlier >= 0).any()):
        seen = earlier >= 0
        target = (earlier[seen] + 1).view(1, 1, -1, 1).expand(layers, heads, -1, 1)
        induction = a[:, :, seen, :].gather(3, target)[..., 0].mean(-1).cpu()
        induction_rows = int(seen.sum())
    return HeadStats(
        entropy=(-plogp.sum(-1)).mean(-1).cpu(),
        distance=(a * (q[:, None] - keys[None, :]).float()).sum(-1).mean(-1).cpu(),
        sink=a[..., 0].mean(-1).cpu(),
        previous=prev.mean(-1).cpu(),
        self_score=at.mean(-1).cpu(),
        prompt_share=prompt.mean(-1).cpu(),
        generated_share=a[..., prompt_len:].sum(-1).mean(-1).cpu(),
        rows=rows,
        num_rows=int(q.numel()),
        induction=induction,
        induction_rows=induction_rows,
    )


def capture_head_stats(capture: Capture, rows: str = "all") -> HeadStats:
    """:func:`attention_head_stats` of a capture's attention and tokens (raises ``CaptureError`` when it
    kept no attention)."""
    return attention_head_stats(capture.require_attentions(), capture.prompt_len, rows, capture.token_ids)


def rank_heads(source: HeadStats | pd.DataFrame, statistic: str, top: int = 10) -> pd.DataFrame:
    """The ``top`` heads with the highest ``statistic``, highest first (NaN scores left out).

    Args:
        source: a :class:`HeadStats`, or a table with one row per (layer, head) and a column per
            statistic (:meth:`HeadStats.to_frame`, one group of :func:`aggregate_head_stats`).
        statistic: a name from :data:`STATISTICS`, e.g. ``"induction"`` or ``"previous"``.
        top: how many heads to list (at least 1).

    Returns:
        columns ``rank`` (1-based), ``name`` (``"L3.H5"``), ``layer``, ``head`` and ``statistic``'s
        score; ties keep layer-then-head order.
    """
    if statistic not in STATISTICS:
        raise ValueError(f"unknown statistic {statistic!r}; choose one of {STATISTICS}")
    if int(top) < 1:
        raise ValueError(f"top must be at least 1, got {top}")
    frame = source.to_frame() if isinstance(source, HeadStats) else source
    missing = [c for c in ("layer", "head", statistic) if c not in frame.columns]
    if missing:
        raise ValueError(f"the table lacks the columns {missing}; pass a HeadStats or one group of head statistics")
    if frame.duplicated(["layer", "head"]).any():
        raise ValueError("the table holds several groups per (layer, head): select one group first, e.g. "
                         "table[table['act'] == 'question']")
    ranked = frame[["layer", "head", statistic]].dropna(subset=[statistic])
    ranked = ranked.sort_values(["layer", "head"]).sort_values(statistic, ascending=False, kind="stable")
    ranked = ranked.head(int(top)).reset_index(drop=True)
    ranked.insert(0, "name", [head_name(lay, h) for lay, h in zip(ranked["layer"], ranked["head"], strict=True)])
    ranked.insert(0, "rank", range(1, len(ranked) + 1))
    return ranked


def aggregate_head_stats(
    stats: Sequence[HeadStats],
    labels: Sequence[Mapping[str, Any]] | None = None,
    by: str | Sequence[str] = (),
) -> pd.DataFrame:
    """Head statistics over many turns, grouped by label columns, with the counts behind every number.

    Args:
        stats: one :class:`HeadStats` per turn, all of one model shape and one ``rows`` choice.
        labels: one mapping per turn (e.g. ``{"act": "question", "emotion": "happiness"}``).
        by: the label columns to group by (none: one group).

    Returns:
        one row per group, layer and head: the ``by`` columns, ``layer``, ``head``,
        each statistic's mean over the group's turns (every turn weighs the same; a turn whose
        induction score is NaN, with no repeated token, is left out of that mean), ``turns``
        (how many turns), ``rows`` and ``induction_rows`` (query rows over those turns).
    """
    import pandas as pd

    keys = [by] if isinstance(by, str) else list(by)
    if not stats:
        raise ValueError("aggregate_head_stats needs at least one HeadStats")
    if labels is not None and len(labels) != len(stats):
        raise ValueError(f"got {len(labels)} label mappings for {len(stats)} turns")
    if keys and labels is None:
        raise ValueError(f"grouping by {keys} needs labels=")
    shape, rows = (stats[0].num_layers, stats[0].num_heads), stats[0].rows
    frames = []
    for i, s in enumerate(stats):
        if (s.num_layers, s.num_heads) != shape or s.rows != rows:
            raise ValueError(f"turn {i} has {s.num_layers}x{s.num_heads} heads over {s.rows!r} rows; "
                             f"turn 0 has {shape[0]}x{shape[1]} over {rows!r}: aggregate like with like")
        frame = s.to_frame()
        turn_labels = labels[i] if labels is not None else {}
        for key in keys:
            if key not in turn_labels:
                raise ValueError(f"turn {i} has no label {key!r}; its labels: {sorted(turn_labels)}")
            frame[key] = turn_labels[key]
        frame["turns"] = 1
        frames.append(frame)
    long = pd.concat(frames, ignore_index=True)
    agg: dict[str, Any] = {name: "mean" for name in STATISTICS}
    agg.update(turns="sum", rows="sum", induction_rows="sum")
    out = long.groupby([*keys, "layer", "head"], dropna=False, sort=True).agg(agg).reset_index()
    return out[[*keys, "layer", "head", *STATISTICS, "turns", "rows", "induction_rows"]]
