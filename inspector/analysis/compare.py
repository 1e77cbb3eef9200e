"""Comparing two captures step by step (KL, top-1 agreement, attention difference), and the beams of one search.

**Alignment.** Two next-token distributions are comparable only when they condition
on the same tokens. ``align="prefix"`` compares the steps whose whole context (prompt
and generated tokens so far) is in the two captures' shared token prefix: two
decoding settings or two models on one prompt. ``align="generated"`` compares step
``i`` with step ``i`` while the generated tokens before it agree, whatever the
prompts: two prompts. ``"auto"`` (default) is ``"prefix"`` when the shared prefix covers
both prompts, else ``"generated"``. Where no step aligns, :class:`CompareError`.
The captures must share a tokenizer (token ids are compared).

**KL.** ``KL(a || b)`` in nats, of the raw model distributions (``Capture.raw``,
before temperature or top-k/top-p). With full logits in both captures
(``keep_logits=True``) it is exact. Otherwise it is computed from the top-k lists
over a coarser partition: each token in both top-k lists, plus one bucket holding all
remaining mass. Coarse-graining never increases KL (data-processing inequality), so
this ``"topk-bound"`` is a *lower bound* of the exact KL, tight when the top-k lists
hold nearly all the mass, and 0 when they share no token. (The remaining mass is
1 minus the top-k mass of float32 log-probs; when it is below ~1e-5 its rounding can
move the bound by up to ~1e-3 nats.)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from inspector.analysis.choices import ALIGN_CHOICES, KL_CHOICES

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector.records import Capture, TokenScores


class CompareError(ValueError):
    """Two captures cannot be compared (no aligned step, different vocabularies, ...)."""


@dataclass(frozen=True)
class CaptureComparison:
    """Capture ``a`` against capture ``b`` over their ``n`` aligned steps.

    Attributes:
        align: ``"prefix"`` or ``"generated"`` (see the module docstring).
        steps_a, steps_b: ``[n]`` int64, the step index in each capture of each compared step.
        chosen_a, chosen_b: ``[n]`` int64, the token each capture generated at that step.
        kl: ``[n]`` float32, ``KL(a || b)`` of the raw next-token distributions, nats.
        kl_method: ``"exact"`` (full logits) or ``"topk-bound"`` (a lower bound from the top-k).
        top1_agree: ``[n]`` bool, the two raw distributions have the same most likely token.
        first_divergence: index into the compared steps of the first step where the
            captures generated different tokens; ``None`` when they never part there.
        shared_len: length of the shared token prefix (``"prefix"``) or of the shared
            generated prefix (``"generated"``).
        attention_diff: ``[layer, head, shared_len, shared_len]`` float32, attention of
            ``a`` minus ``b`` over the shared tokens (``"prefix"`` only, and only when
            both kept attention of one shape; else ``None``).
    """

    align: str
    steps_a: torch.Tensor
    steps_b: torch.Tensor
    chosen_a: torch.Tensor
    chosen_b: torch.Tensor
    kl: torch.Tensor
    kl_method: str
    top1_agree: torch.Tensor
    first_divergence: int | None
    shared_len: int
    attention_diff: torch.Tensor | None = None

    @property
    def num_steps(self) -> int:
        return int(self.steps_a.shape[0])

    @property
    def agreement(self) -> float:
        """Share of compared steps whose most likely tokens agree."""
        return float(self.top1_agree.float().mean())

    def to_frame(self) -> pd.DataFrame:
        """One row per compared step: ``step_a, step_b, token_a, token_b, kl, top1_agree, same_token``."""
        import pandas as pd

        return pd.DataFrame({
            "step_a": self.steps_a.numpy(), "step_b": self.steps_b.numpy(),
            "token_a": self.chosen_a.numpy(), "token_b": self.chosen_b.numpy(),
            "kl": self.kl.numpy(), "top1_agree": self.top1_agree.numpy(),
            "same_token": (self.chosen_a == self.chosen_b).numpy(),
        })


def _common_prefix(x: torch.Tensor, y: torch.Tensor) -> int:
    n = min(x.numel(), y.numel())
    differ = (x[:n] != y[:n]).nonzero()
    return int(differ[0, 0]) if differ.numel() else n


def _aligned_steps(a: Capture, b: Capture, align: str) -> tuple[str, int, torch.Tensor, torch.Tensor]:
    """``(align, shared_len, steps_a [n], steps_b [n])``."""
    if align not in ALIGN_CHOICES:
        raise ValueError(f"align must be one of {ALIGN_CHOICES}, got {align!r}")
    if a.num_steps == 0 or b.num_steps == 0:
        raise CompareError("both captures need at least one generated step to compare")
    shared = _common_prefix(a.token_ids, b.token_ids)
    pa, pb = a.prompt_len, b.prompt_len
    if align == "auto":
        align = "prefix" if max(pa, pb) <= shared else "generated"
    if align == "prefix":
        # Step s of a predicts position pa + s from tokens[:pa + s]; comparable when that context is shared.
        first, last = max(pa, pb), min(shared, a.seq_len - 1, b.seq_len - 1)
        contexts = torch.arange(first, max(first, last + 1))
        if contexts.numel() == 0:
            raise CompareError(
                f"no step has the same context in both captures: they share their first {shared} tokens, "
                f"but their prompts are {pa} and {pb} tokens long; use align='generated' to compare "
                "step i with step i from each prompt's end"
            )
        return align, shared, contexts - pa, contexts - pb
    gshared = _common_prefix(a.generated_ids, b.generated_ids)
    steps = torch.arange(min(gshared, a.num_steps - 1, b.num_steps - 1) + 1)
    return align, gshared, steps, steps.clone()


def _exact_kl(la: torch.Tensor, lb: torch.Tensor) -> torch.Tensor:
    if la.shape[-1] != lb.shape[-1]:
        raise CompareError(f"the captures' vocabularies differ ({la.shape[-1]} vs {lb.shape[-1]} logits)")
    pa, pb = torch.log_softmax(la.double(), -1), torch.log_softmax(lb.double(), -1)
    return (pa.exp() * (pa - pb)).sum(-1).clamp(min=0).float()


def _topk_kl(a: TokenScores, b: TokenScores, sa: torch.Tensor, sb: torch.Tensor) -> torch.Tensor:
    ids_a, lp_a = a.topk_ids[sa], a.topk_logprobs[sa].double()
    ids_b, lp_b = b.topk_ids[sb], b.topk_logprobs[sb].double()
    match = ids_a[:, :, None] == ids_b[:, None, :]  # [n, ka, kb]
    in_b, in_a = match.any(2), match.any(1)
    lp_b_at_a = torch.where(match, lp_b[:, None, :], 0.0).sum(2)  # b's log-prob of a's token where shared
    shared_term = torch.where(in_b, lp_a.exp() * (lp_a - lp_b_at_a), 0.0).sum(1)
    rest_a = (1 - torch.where(in_b, lp_a.exp(), 0.0).sum(1)).clamp(min=0)
    # The stored log-probabilities are float32: "1 - sum" of b's shared mass can round to 0 (or below)
    # when the true remainder is tiny but positive, and the rest term would explode. Adding float32's
    # rounding slack can only overstate b's remainder, and the term falls as that remainder grows,
    # so the result stays a lower bound of the exact KL.
    slack = (ids_b.shape[1] + 1) * float(torch.finfo(torch.float32).eps)
    rest_b = (1 - torch.where(in_a, lp_b.exp(), 0.0).sum(1)).clamp(min=0) + slack
    tiny = torch.finfo(torch.float64).tiny
    rest_term = torch.where(rest_a > 0, rest_a * (rest_a.clamp(min=tiny).log() - rest_b.clamp(min=tiny).log()), 0.0)
    return (shared_term + rest_term).clamp(min=0).float()


def compare_captures(a: Capture, b: Capture, align: str = "auto", kl: str = "auto") -> CaptureComparison:
    """Compare capture ``a`` with capture ``b`` step by step; see the module docstring.

    Args:
        align: ``"auto"``, ``"prefix"`` or ``"generated"``.
        kl: ``"auto"`` (exact when both captures kept logits, else the top-k bound),
            ``"exact"`` (requires ``keep_logits=True`` captures) or ``"topk"``.

    Raises:
        CompareError: no step aligns, or the vocabularies differ.
        ValueError: an unknown option, or ``kl="exact"`` without logits.
    """
    if kl not in KL_CHOICES:
        raise ValueError(f"kl must be one of {KL_CHOICES}, got {kl!r}")
    have_logits = a.logits is not None and b.logits is not None
    if kl == "exact" and not have_logits:
        raise ValueError("kl='exact' needs full logits in both captures: capture with keep_logits=True, "
                         "or use kl='topk' for a lower bound from the top-k lists")
    align, shared, sa, sb = _aligned_steps(a, b, align)
    if kl != "topk" and a.logits is not None and b.logits is not None:
        kl_values, method = _exact_kl(a.logits[sa].float(), b.logits[sb].float()), "exact"
    else:
        kl_values, method = _topk_kl(a.raw, b.raw, sa, sb), "topk-bound"
    chosen_a, chosen_b = a.token_ids[a.prompt_len + sa], b.token_ids[b.prompt_len + sb]
    differ = (chosen_a != chosen_b).nonzero()
    diff = None
    if align == "prefix" and a.attentions is not None and b.attentions is not None \
            and a.attentions.shape[:2] == b.attentions.shape[:2]:
        diff = a.attentions[:, :, :shared, :shared].float() - b.attentions[:, :, :shared, :shared].float()
    return CaptureComparison(
        align=align, steps_a=sa, steps_b=sb, chosen_a=chosen_a, chosen_b=chosen_b, kl=kl_values, kl_method=method,
        top1_agree=a.raw.topk_ids[sa, 0] == b.raw.topk_ids[sb, 0],
        first_divergence=int(differ[0, 0]) if differ.numel() else None,
        shared_len=shared, attention_diff=diff,
    )


def compare_beams(beams: Sequence[Capture], reference: int = 0, **options: Any) -> list[CaptureComparison]:
    """Beam ``reference`` (the best, by default) against every other beam of one search, aligned by prefix.

    Returns one :class:`CaptureComparison` per other beam, in beam order, with ``a`` the reference
    (so ``kl`` is ``KL(reference || beam)``).
    ``options`` go to :func:`compare_captures` (``kl=``).
    """
    if len(beams) < 2:
        raise CompareError(f"comparing beams needs at least two captures, got {len(beams)}")
    if not 0 <= reference < len(beams):
        raise ValueError(f"reference must be a beam index within 0..{len(beams) - 1}, got {reference}")
    ref = beams[reference]
    for i, beam in enumerate(beams):
        if beam.prompt_len != ref.prompt_len or not torch.equal(beam.token_ids[: beam.prompt_len],
                                                                ref.token_ids[: ref.prompt_len]):
            raise CompareError(f"beam {i} has another prompt than beam {reference}: not one beam search")
    return [compare_captures(ref, beam, align="prefix", **options) for i, beam in enumerate(beams) if i != reference]
