"""How hard a reference reply is for the model, and how much a stated condition moves its prediction.

Both are read off teacher-forced captures (:func:`inspector._capture.forced.score`):

* :func:`reply_difficulty` - the reply's negative log-likelihood under the model (sum over its
  tokens, in nats), the per-token mean, the perplexity ``exp(mean)`` and the token count;
* :func:`condition_effect` - the same reply scored after a plain prompt and after a prompt that
  states a condition (e.g. ``Agent (happiness):`` instead of ``Agent:``): the change in its
  log-likelihood and, per reply token, the KL divergence ``KL(P_cond || P_plain)`` between the two
  next-token distributions.

The KL divergence is exact only over the whole vocabulary, so both captures must hold their raw
logits: score with ``keep_logits=True``. :func:`condition_effects` does the two forced passes and
reduces at once, dropping the ``[step, vocab]`` logits afterwards unless asked to keep them, so a
corpus run holds one batch of logits at a time.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import torch

from inspector._capture.forced import is_forced, score

if TYPE_CHECKING:  # pragma: no cover
    from inspector._model import InspectorModel
    from inspector._records.capture import Capture

#: Summary columns added per turn by :meth:`ReplyDifficulty.columns`.
DIFFICULTY_COLUMNS: tuple[str, ...] = ("ref_nll", "ref_nll_mean", "ref_ppl", "ref_tokens")
#: Summary columns added per turn by :meth:`ConditionEffect.columns`.
CONDITION_COLUMNS: tuple[str, ...] = ("cond_delta_loglik", "cond_delta_loglik_mean", "cond_kl_mean", "cond_kl_max")


@dataclass(frozen=True)
class ReplyDifficulty:
    """Teacher-forced difficulty of one reply.

    Attributes:
        nll: ``-sum_i log p(token_i | prompt, tokens_<i)`` over the reply's tokens, in nats.
        nll_mean: ``nll / tokens``.
        ppl: perplexity, ``exp(nll_mean)``.
        tokens: number of reply tokens.
    """

    nll: float
    nll_mean: float
    ppl: float
    tokens: int

    def columns(self) -> dict[str, float | int]:
        """The summary columns ``ref_nll``, ``ref_nll_mean``, ``ref_ppl``, ``ref_tokens``."""
        return dict(zip(DIFFICULTY_COLUMNS, (self.nll, self.nll_mean, self.ppl, self.tokens), strict=True))


def reply_difficulty(capture: Capture, *, require_forced: bool = True) -> ReplyDifficulty:
    """Difficulty of ``capture``'s continuation from its raw chosen log-probabilities ``[step]``.

    With ``require_forced=False`` a generated capture is accepted too (then it measures how
    surprising the model found its own output, not the reference reply).
    """
    if require_forced and not is_forced(capture):
        raise ValueError(
            "this capture was generated, not teacher-forced; score the reference reply with "
            "inspector._capture.forced.score (or pass require_forced=False to measure the generation itself)"
        )
    if capture.num_steps == 0:
        raise ValueError("the capture has no continuation tokens to score")
    nll = -float(capture.raw.chosen_logprob.double().sum())
    mean = nll / capture.num_steps
    return ReplyDifficulty(nll=nll, nll_mean=mean, ppl=math.exp(mean), tokens=capture.num_steps)


def kl_divergence(p_logits: torch.Tensor, q_logits: torch.Tensor) -> torch.Tensor:
    """``KL(softmax(p) || softmax(q))`` per row, in nats, float64.

    Args:
        p_logits, q_logits: ``[step, vocab]`` logits of the two distributions, row for row.

    Returns:
        ``[step]`` float64, each >= 0 (up to rounding).
    """
    if p_logits.shape != q_logits.shape or p_logits.dim() != 2:
        raise ValueError(f"logits must both be [step, vocab], got {tuple(p_logits.shape)} and {tuple(q_logits.shape)}")
    log_p = torch.log_softmax(p_logits.double(), dim=-1)
    log_q = torch.log_softmax(q_logits.double(), dim=-1)
    return (log_p.exp() * (log_p - log_q)).sum(-1)


@dataclass(frozen=True)
class ConditionEffect:
    """How stating a condition before the reply changed the model's reading of it.

    Attributes:
        delta_loglik: ``log p(reply | conditioned prompt) - log p(reply | plain prompt)``, in nats;
            positive when the condition makes the reply more likely.
        kl: ``[step]`` float64, ``KL(P_cond || P_plain)`` of the next-token distributions before
            each reply token, in nats.
    """

    delta_loglik: float
    kl: torch.Tensor

    @property
    def tokens(self) -> int:
        return int(self.kl.shape[0])

    @property
    def delta_loglik_mean(self) -> float:
        return self.delta_loglik / self.tokens

    @property
    def kl_mean(self) -> float:
        return float(self.kl.mean())

    @property
    def kl_max(self) -> float:
        return float(self.kl.max())

    def columns(self) -> dict[str, float]:
        """The summary columns ``cond_delta_loglik``, ``cond_delta_loglik_mean``, ``cond_kl_mean``, ``cond_kl_max``."""
        values = (self.delta_loglik, self.delta_loglik_mean, self.kl_mean, self.kl_max)
        return dict(zip(CONDITION_COLUMNS, values, strict=True))


def condition_effect(plain: Capture, conditioned: Capture) -> ConditionEffect:
    """Compare two forced captures of the same reply after a plain and a conditioned prompt.

    Both must have been scored with ``keep_logits=True`` (the KL needs the whole vocabulary).
    """
    for name, cap in (("plain", plain), ("conditioned", conditioned)):
        if not is_forced(cap):
            raise ValueError(f"the {name} capture was generated; score the reply with inspector._capture.forced.score")
        if cap.logits is None:
            raise ValueError(
                f"the {name} capture kept no logits; the exact KL divergence needs them: "
                "score with keep_logits=True (condition_effects does this for you)"
            )
    if not torch.equal(plain.generated_ids, conditioned.generated_ids):
        raise ValueError(
            "the two captures scored different replies (their continuation token ids differ); "
            "score the same reply text after both prompts"
        )
    assert plain.logits is not None and conditioned.logits is not None
    delta = float(conditioned.raw.chosen_logprob.double().sum() - plain.raw.chosen_logprob.double().sum())
    return ConditionEffect(delta_loglik=delta, kl=kl_divergence(conditioned.logits, plain.logits))


@dataclass(frozen=True)
class ConditionResult:
    """One turn scored with and without its condition (see :func:`condition_effects`)."""

    plain: Capture
    conditioned: Capture
    effect: ConditionEffect


def condition_effects(
    model: InspectorModel,
    plain_prompts: Sequence[str],
    conditioned_prompts: Sequence[str],
    replies: Sequence[str],
    *,
    keep_logits: bool = False,
    **score_kwargs: Any,
) -> list[ConditionResult]:
    """Score each reply after its plain and its conditioned prompt (two batched passes) and compare.

    ``score_kwargs`` go to :func:`inspector._capture.forced.score` (``top_k_logits``, ``keep_attention``,
    ``attention_dtype``, ``sources``). The logits needed for the KL are dropped from the returned
    captures unless ``keep_logits=True``. ``result.plain`` also gives the reply's difficulty
    (:func:`reply_difficulty`), so a turn costs two forward passes for both measures.
    """
    n = len(replies)
    if isinstance(replies, str) or len(plain_prompts) != n or len(conditioned_prompts) != n:
        raise ValueError(
            f"give lists of equal length: got {len(plain_prompts)} plain prompts, "
            f"{len(conditioned_prompts)} conditioned prompts and {len(replies)} replies"
        )
    plain = score(model, list(plain_prompts), list(replies), keep_logits=True, **score_kwargs)
    cond = score(model, list(conditioned_prompts), list(replies), keep_logits=True, **score_kwargs)
    assert isinstance(plain, list) and isinstance(cond, list)
    out = []
    for p, c in zip(plain, cond, strict=True):
        effect = condition_effect(p, c)
        if not keep_logits:
            p, c = replace(p, logits=None), replace(c, logits=None)
        out.append(ConditionResult(p, c, effect))
    return out
