"""Analysis of captures: logit lens, value norms, attention rollout, head statistics, capture comparison.

Pure functions over the tensors of a capture (and, for the lens and value norms, the
model's weights), with shapes in their docstrings:

* :mod:`~inspector.analysis.lens` (:func:`logit_lens`) with :mod:`~inspector.analysis.readout`;
* :mod:`~inspector.analysis.value_norms` (Kobayashi et al. 2020, norm-weighted attention);
* :mod:`~inspector.analysis.rollout` (:func:`attention_rollout`, Abnar & Zuidema 2020);
* :mod:`~inspector.analysis.head_stats` (:func:`attention_head_stats`, :func:`aggregate_head_stats`);
* :mod:`~inspector.analysis.compare` (:func:`compare_captures`, :func:`compare_beams`).
"""

from __future__ import annotations

from inspector.analysis.compare import (
    ALIGN_CHOICES,
    KL_CHOICES,
    CaptureComparison,
    CompareError,
    compare_beams,
    compare_captures,
)
from inspector.analysis.head_stats import (
    ROW_CHOICES,
    STATISTICS,
    HeadStats,
    aggregate_head_stats,
    attention_head_stats,
    capture_head_stats,
    query_rows,
)
from inspector.analysis.lens import (
    LensResult,
    capture_lens,
    logit_lens,
    next_token_targets,
    teacher_forced_hidden_states,
)
from inspector.analysis.readout import Readout, find_readout
from inspector.analysis.rollout import attention_rollout
from inspector.analysis.value_norms import (
    ValueWeights,
    attention_modules,
    layer_value_norms,
    model_value_norms,
    norm_weighted_attention,
    transformed_values,
    value_norms_from_weights,
    value_weights,
)

__all__ = [
    "ALIGN_CHOICES",
    "KL_CHOICES",
    "ROW_CHOICES",
    "STATISTICS",
    "CaptureComparison",
    "CompareError",
    "HeadStats",
    "LensResult",
    "Readout",
    "ValueWeights",
    "aggregate_head_stats",
    "attention_head_stats",
    "attention_modules",
    "attention_rollout",
    "capture_head_stats",
    "capture_lens",
    "compare_beams",
    "compare_captures",
    "find_readout",
    "layer_value_norms",
    "logit_lens",
    "model_value_norms",
    "next_token_targets",
    "norm_weighted_attention",
    "query_rows",
    "teacher_forced_hidden_states",
    "transformed_values",
    "value_norms_from_weights",
    "value_weights",
]
