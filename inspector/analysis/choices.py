"""The named choices analysis functions take (alignment, KL, query rows, statistics): no torch, for the CLI."""

from __future__ import annotations

#: How two captures are aligned (:func:`inspector.analysis.compare.compare_captures`).
ALIGN_CHOICES: tuple[str, ...] = ("auto", "prefix", "generated")
#: How their next-token distributions are compared.
KL_CHOICES: tuple[str, ...] = ("auto", "exact", "topk")
#: Which distributions are compared: what each run decoded from (after its decoding settings), or the model's.
DISTRIBUTION_CHOICES: tuple[str, ...] = ("processed", "raw")
#: What direct logit attribution explains (:func:`inspector.analysis.direct_logit.logit_attribution`): the chosen
#: token's logit, or its margin over the runner-up.
ATTRIBUTION_TARGETS: tuple[str, ...] = ("chosen", "margin")
#: Context attribution methods, integrated gradients' quadrature rules (Captum's names) and the baselines
#: a missing token is (:func:`inspector.analysis.context_attribution.context_attribution`).
CONTEXT_METHODS: tuple[str, ...] = ("input_x_gradient", "integrated_gradients", "occlusion")
IG_RULES: tuple[str, ...] = ("adaptive", "gausslegendre", "riemann_trapezoid")
#: Integrated gradients' defaults: the rule, the (first) quadrature nodes, the completeness error at which the
#: adaptive rule stops, and the gradient evaluations per generated token it may spend at most.
IG_RULE, IG_STEPS, IG_TOLERANCE, IG_MAX_STEPS = "adaptive", 32, 0.05, 512
BASELINES: tuple[str, ...] = ("zero", "pad", "unk")
#: Which query rows head statistics use (:func:`inspector.analysis.head_stats.attention_head_stats`).
ROW_CHOICES: tuple[str, ...] = ("all", "prompt", "generated")
#: Statistic names, as fields of :class:`~inspector.analysis.head_stats.HeadStats` and columns of its frame.
STATISTICS: tuple[str, ...] = (
    "entropy", "distance", "sink", "previous", "induction", "self", "prompt_share", "generated_share",
)
