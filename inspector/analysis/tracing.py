"""Causal tracing's summary: the fraction of the clean log-probability a patch restores.

Three teacher-forced captures of one continuation (:func:`inspector._capture.forced.score`): the clean
run, the corrupted run (another prompt, or noised embeddings) and the corrupted run with some states
restored from the clean one (a patch). For each continuation token ``t`` with log-probabilities
``clean[t]``, ``corrupt[t]`` and ``patched[t]`` under the raw model distributions::

    restored[t] = (patched[t] - corrupt[t]) / (clean[t] - corrupt[t])

1 is full restoration, 0 none; it can leave ``[0, 1]`` (a patch can overshoot, or hurt). The whole
continuation's fraction is the same ratio of the summed log-probabilities (the log-probability of the
continuation). Where the corruption barely moved a token (``|clean - corrupt| < min_gap``) its ratio
would divide by almost nothing: it is NaN.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture


@dataclass(frozen=True)
class RestoredFraction:
    """How much of the clean log-probability a patch restored, per continuation token and overall.

    Attributes:
        per_token: ``[step]`` float64, ``(patched - corrupt) / (clean - corrupt)`` per token; NaN where
            ``|clean - corrupt| < min_gap``.
        total: the same ratio of the continuation's summed log-probabilities (NaN under ``min_gap``).
        clean, corrupt, patched: ``[step]`` float64, each run's log-probability of each continuation token.
    """

    per_token: torch.Tensor
    total: float
    clean: torch.Tensor
    corrupt: torch.Tensor
    patched: torch.Tensor


def restored_fraction(clean: Capture, corrupted: Capture, patched: Capture, min_gap: float = 1e-6) -> RestoredFraction:
    """``(logp_patched - logp_corrupt) / (logp_clean - logp_corrupt)`` of the clean run's continuation tokens.

    Args:
        clean, corrupted, patched: captures of the same continuation (the same generated token ids), best
            teacher-forced with :func:`inspector._capture.forced.score`; their prompts may differ.
        min_gap: below this gap ``|clean - corrupt|`` (nats) a ratio is NaN.

    Raises:
        ValueError: the three captures hold different continuations, or ``min_gap`` is negative.
    """
    if min_gap < 0:
        raise ValueError(f"min_gap must be >= 0, got {min_gap}")
    ref = clean.generated_ids
    for name, cap in (("corrupted", corrupted), ("patched", patched)):
        if not torch.equal(cap.generated_ids, ref):
            raise ValueError(f"the {name} capture continues with other tokens than the clean one "
                             f"({cap.num_steps} vs {clean.num_steps} tokens); teacher-force the clean continuation "
                             "after each prompt (inspector._capture.forced.score) and pass those captures")
    lc, lx, lp = (c.raw.chosen_logprob.double() for c in (clean, corrupted, patched))
    gap = lc - lx
    per = torch.where(gap.abs() >= max(min_gap, torch.finfo(torch.float64).tiny), (lp - lx) / gap, torch.nan)
    total_gap = float(gap.sum())
    total = float((lp - lx).sum()) / total_gap if abs(total_gap) >= max(min_gap, 1e-300) else float("nan")
    return RestoredFraction(per_token=per, total=total, clean=lc, corrupt=lx, patched=lp)
