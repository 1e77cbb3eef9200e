"""Analysis of captures: attention aggregation, logit lens, value norms, rollout, head statistics, comparison.

Pure functions over the tensors of a capture (and, for the lens and value norms, the
model's weights), with shapes in their docstrings:

* :mod:`~inspector.analysis.lens` (:func:`logit_lens`) with :mod:`~inspector._readout`;
* :mod:`~inspector.analysis.value_norms` (Kobayashi et al. 2020, norm-weighted attention);
* :mod:`~inspector.analysis.rollout` (:func:`attention_rollout`, Abnar & Zuidema 2020);
* :mod:`~inspector.analysis.head_stats` (:func:`attention_head_stats`, :func:`aggregate_head_stats`,
  :func:`rank_heads`);
* :mod:`~inspector.analysis.compare` (:func:`compare_captures`, :func:`compare_beams`);
* :mod:`~inspector.analysis.context_attribution` (:func:`context_attribution`: gradients, occlusion).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from inspector._lazy import lazy_namespace

# Each name loads its module on first use (PEP 562): the CLI reads the choice tuples (ALIGN_CHOICES,
# ROW_CHOICES, ...) while building its parser, which must not import torch.
_EXPORTS: dict[str, str] = {
    "AGGREGATE_MODES": "inspector._aggregate",
    "REDUCERS": "inspector._aggregate",
    "aggregate_attention": "inspector._aggregate",
    "aggregate_by_mode": "inspector._aggregate",
    "attention_entropy": "inspector._aggregate",
    "attention_from": "inspector._aggregate",
    "stacked_mean": "inspector._aggregate",
    "stored_lens": "inspector.analysis.lens",
    "ALIGN_CHOICES": "inspector.analysis.choices",
    "KL_CHOICES": "inspector.analysis.choices",
    "CaptureComparison": "inspector.analysis.compare",
    "ContextAttribution": "inspector.analysis.context_attribution",
    "context_attribution": "inspector.analysis.context_attribution",
    "CompareError": "inspector.analysis.compare",
    "compare_beams": "inspector.analysis.compare",
    "compare_captures": "inspector.analysis.compare",
    "ROW_CHOICES": "inspector.analysis.choices",
    "STATISTICS": "inspector.analysis.choices",
    "HeadStats": "inspector.analysis.head_stats",
    "aggregate_head_stats": "inspector.analysis.head_stats",
    "attention_head_stats": "inspector.analysis.head_stats",
    "capture_head_stats": "inspector.analysis.head_stats",
    "head_name": "inspector.analysis.head_stats",
    "previous_occurrences": "inspector.analysis.head_stats",
    "query_rows": "inspector.analysis.head_stats",
    "rank_heads": "inspector.analysis.head_stats",
    "LensResult": "inspector._lens_math",
    "capture_lens": "inspector.analysis.lens",
    "logit_lens": "inspector._lens_math",
    "next_token_targets": "inspector._lens_math",
    "teacher_forced_hidden_states": "inspector.analysis.lens",
    "Readout": "inspector._readout",
    "find_readout": "inspector._readout",
    "attention_rollout": "inspector.analysis.rollout",
    "LogitAttribution": "inspector.analysis.direct_logit",
    "logit_attribution": "inspector.analysis.direct_logit",
    "ValueWeights": "inspector._value_math",
    "attention_modules": "inspector.analysis.value_norms",
    "layer_value_norms": "inspector._value_math",
    "model_value_norms": "inspector.analysis.value_norms",
    "norm_weighted_attention": "inspector._value_math",
    "transformed_values": "inspector._value_math",
    "value_norms_from_weights": "inspector._value_math",
    "value_weights": "inspector._value_math",
}

__all__ = sorted(_EXPORTS)


__getattr__, __dir__ = lazy_namespace(__name__, _EXPORTS, globals())


if TYPE_CHECKING:  # pragma: no cover - for type checkers only
    from inspector._aggregate import (
        AGGREGATE_MODES as AGGREGATE_MODES,
        REDUCERS as REDUCERS,
        aggregate_attention as aggregate_attention,
        aggregate_by_mode as aggregate_by_mode,
        attention_entropy as attention_entropy,
        attention_from as attention_from,
        stacked_mean as stacked_mean,
    )
    from inspector._lens_math import (
        LensResult as LensResult,
        logit_lens as logit_lens,
        next_token_targets as next_token_targets,
    )
    from inspector._readout import (
        Readout as Readout,
        find_readout as find_readout,
    )
    from inspector._value_math import (
        ValueWeights as ValueWeights,
        layer_value_norms as layer_value_norms,
        norm_weighted_attention as norm_weighted_attention,
        transformed_values as transformed_values,
        value_norms_from_weights as value_norms_from_weights,
        value_weights as value_weights,
    )
    from inspector.analysis.choices import (
        ALIGN_CHOICES as ALIGN_CHOICES,
        KL_CHOICES as KL_CHOICES,
        ROW_CHOICES as ROW_CHOICES,
        STATISTICS as STATISTICS,
    )
    from inspector.analysis.compare import (
        CaptureComparison as CaptureComparison,
        CompareError as CompareError,
        compare_beams as compare_beams,
        compare_captures as compare_captures,
    )
    from inspector.analysis.context_attribution import (
        ContextAttribution as ContextAttribution,
        context_attribution as context_attribution,
    )
    from inspector.analysis.direct_logit import (
        LogitAttribution as LogitAttribution,
        logit_attribution as logit_attribution,
    )
    from inspector.analysis.head_stats import (
        HeadStats as HeadStats,
        aggregate_head_stats as aggregate_head_stats,
        attention_head_stats as attention_head_stats,
        capture_head_stats as capture_head_stats,
        head_name as head_name,
        previous_occurrences as previous_occurrences,
        query_rows as query_rows,
        rank_heads as rank_heads,
    )
    from inspector.analysis.lens import (
        capture_lens as capture_lens,
        stored_lens as stored_lens,
        teacher_forced_hidden_states as teacher_forced_hidden_states,
    )
    from inspector.analysis.rollout import (
        attention_rollout as attention_rollout,
    )
    from inspector.analysis.value_norms import (
        attention_modules as attention_modules,
        model_value_norms as model_value_norms,
    )
