"""Per-head attention statistics (entropy, distance, sink, previous-token, self, prompt share) and their aggregation.

Every statistic is a mean over a set of query rows of attention ``[layer, head, q, k]``:

* ``entropy``: ``-sum_k a ln a`` in nats (a uniform row over ``n`` keys gives ``ln n``);
* ``distance``: ``sum_k a (q - k)``, how far back the head looks;
* ``sink``: ``a[q, 0]``, the share on the first token;
* ``previous``: ``a[q, q - 1]``, the previous-token score;
* ``self``: ``a[q, q]``;
* ``prompt_share`` / ``generated_share``: ``sum_k a`` over prompt keys (``k < prompt_len``)
  and over generated keys; they add up to 1.

Rows (``rows=``): ``"all"`` is rows ``1 .. seq - 1``, ``"prompt"`` rows
``1 .. prompt_len - 1``, ``"generated"`` rows ``prompt_len .. seq - 1``. Row 0 is
never used: it has a single key, so every head puts all its weight there (entropy 0,
sink 1, self 1) and it would only blur the statistics.

For norm-weighted statistics pass ``norm_weighted_attention(att, norms, renormalise=True)``
(:mod:`inspector.analysis.value_norms`) instead of raw attention.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch

from inspector.analysis.choices import ROW_CHOICES, STATISTICS

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector.records import Capture



@dataclass(frozen=True)
class HeadStats:
    """Attention statistics of every head of one capture; see the module docstring for definitions.

    Attributes:
        entropy, distance, sink, previous, self_score, prompt_share, generated_share:
            ``[layer, head]`` float32, each a mean over the chosen query rows.
        rows: which rows were used (``"all"``, ``"prompt"``, ``"generated"``).
        num_rows: how many query rows each number is a mean of.
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

    def __post_init__(self) -> None:
        shape = tuple(self.entropy.shape)
        if len(shape) != 2:
            raise ValueError(f"HeadStats fields must be [layer, head], got {shape}")
        for name in self._tensor_fields():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"HeadStats.{name} has shape {got}, entropy has {shape}")
        if self.rows not in ROW_CHOICES:
            raise ValueError(f"rows must be one of {ROW_CHOICES}, got {self.rows!r}")

    @staticmethod
    def _tensor_fields() -> tuple[str, ...]:
        return tuple(f.name for f in fields(HeadStats) if f.name not in ("rows", "num_rows"))

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
        return getattr(self, "self_score" if name == "self" else name)

    def to_frame(self) -> pd.DataFrame:
        """One row per (layer, head): ``layer, head``, every statistic, and ``rows`` (the row count)."""
        import pandas as pd

        layer, head = torch.meshgrid(torch.arange(self.num_layers), torch.arange(self.num_heads), indexing="ij")
        data: dict[str, Any] = {"layer": layer.reshape(-1).numpy(), "head": head.reshape(-1).numpy()}
        for name in STATISTICS:
            data[name] = self.statistic(name).reshape(-1).float().numpy()
        data["rows"] = self.num_rows
        return pd.DataFrame(data)

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """The ``[layer, head]`` tensors as ``{prefix.field: tensor}`` (rows and num_rows go in metadata)."""
        return {f"{prefix}.{name}": getattr(self, name) for name in self._tensor_fields()}

    @classmethod
    def from_tensors(cls, tensors: Mapping[str, torch.Tensor], prefix: str, rows: str, num_rows: int) -> HeadStats:
        return cls(**{n: tensors[f"{prefix}.{n}"] for n in cls._tensor_fields()}, rows=rows, num_rows=num_rows)


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


def attention_head_stats(att: torch.Tensor, prompt_len: int, rows: str = "all") -> HeadStats:
    """Statistics of every head of attention ``[layer, head, query, key]`` over the chosen rows."""
    if att.dim() != 4 or att.shape[2] != att.shape[3]:
        raise ValueError(f"att must be [layer, head, seq, seq], got {tuple(att.shape)}")
    seq = int(att.shape[2])
    q = query_rows(seq, prompt_len, rows).to(att.device)
    a = att[:, :, q, :].float()  # [layer, head, n, key]
    keys = torch.arange(seq, device=att.device)
    plogp = a * torch.log(a.clamp(min=torch.finfo(torch.float32).tiny))
    at = a.gather(3, q.view(1, 1, -1, 1).expand(a.shape[0], a.shape[1], -1, 1))[..., 0]
    prev = a.gather(3, (q - 1).view(1, 1, -1, 1).expand(a.shape[0], a.shape[1], -1, 1))[..., 0]
    prompt = a[..., :prompt_len].sum(-1)
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
    )


def capture_head_stats(capture: Capture, rows: str = "all") -> HeadStats:
    """:func:`attention_head_stats` of a capture's attention (raises ``CaptureError`` when it kept none)."""
    return attention_head_stats(capture.require_attentions(), capture.prompt_len, rows)


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
        each statistic's mean over the group's turns (every turn weighs the same),
        ``turns`` (how many turns) and ``rows`` (query rows over those turns).
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
    agg.update(turns="sum", rows="sum")
    out = long.groupby([*keys, "layer", "head"], dropna=False, sort=True).agg(agg).reset_index()
    return out[[*keys, "layer", "head", *STATISTICS, "turns", "rows"]]
