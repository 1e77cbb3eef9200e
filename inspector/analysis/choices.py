"""The named choices analysis functions take (alignment, KL, query rows, statistics): no torch, for the CLI."""

from __future__ import annotations

#: How two captures are aligned (:func:`inspector.analysis.compare.compare_captures`).
ALIGN_CHOICES: tuple[str, ...] = ("auto", "prefix", "generated")
#: How their next-token distributions are compared.
KL_CHOICES: tuple[str, ...] = ("auto", "exact", "topk")
#: Which query rows head statistics use (:func:`inspector.analysis.head_stats.attention_head_stats`).
ROW_CHOICES: tuple[str, ...] = ("all", "prompt", "generated")
#: Statistic names, as fields of :class:`~inspector.analysis.head_stats.HeadStats` and columns of its frame.
STATISTICS: tuple[str, ...] = (
    "entropy", "distance", "sink", "previous", "induction", "self", "prompt_share", "generated_share",
)
