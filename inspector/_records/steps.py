"""Per-step records of a capture: :class:`TokenScores` (tensors over steps), and the readable
:class:`Candidate` and :class:`StepRecord` views; :class:`CaptureError`, raised by every record.

Re-exported by :mod:`inspector._records.capture`; see its docstring for the dimension names.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, fields

import torch

from inspector._formatting import format_prob


class CaptureError(ValueError):
    """A capture's contents are inconsistent (wrong shape, NaN/inf values, ...)."""


def _check(cond: bool, msg: str) -> None:
    if not cond:
        raise CaptureError(msg)


@dataclass(frozen=True)
class TokenScores:
    """Statistics of the next-token distribution at every generated step.

    One instance describes either the raw model logits (``Capture.raw``) or the
    processed scores that decoding actually picked from (``Capture.processed``:
    after temperature, top-k, top-p, ...). Log-probabilities are natural logs of
    the softmax of those scores; entropy is in nats.

    Attributes:
        entropy: ``[step]`` float32, entropy of the distribution.
        chosen_logprob: ``[step]`` float32, log-probability of the token that was chosen.
        chosen_rank: ``[step]`` int64, 1-based rank of the chosen token (1 = most likely;
            ties are broken in the chosen token's favour).
        topk_ids: ``[step, k]`` int64, the k most likely token ids, most likely first.
        topk_logprobs: ``[step, k]`` float32, their log-probabilities.
    """

    entropy: torch.Tensor
    chosen_logprob: torch.Tensor
    chosen_rank: torch.Tensor
    topk_ids: torch.Tensor
    topk_logprobs: torch.Tensor

    def __post_init__(self) -> None:
        steps = self.entropy.shape[0] if self.entropy.dim() == 1 else -1
        _check(self.entropy.dim() == 1, f"entropy must be [step], got {tuple(self.entropy.shape)}")
        for name in ("chosen_logprob", "chosen_rank"):
            t = getattr(self, name)
            _check(tuple(t.shape) == (steps,), f"{name} must be [step]=({steps},), got {tuple(t.shape)}")
        _check(
            self.topk_ids.dim() == 2 and self.topk_ids.shape[0] == steps,
            f"topk_ids must be [step, k] with step={steps}, got {tuple(self.topk_ids.shape)}",
        )
        _check(
            self.topk_logprobs.shape == self.topk_ids.shape,
            f"topk_logprobs {tuple(self.topk_logprobs.shape)} must match topk_ids {tuple(self.topk_ids.shape)}",
        )

    @property
    def num_steps(self) -> int:
        return int(self.entropy.shape[0])

    @property
    def k(self) -> int:
        return int(self.topk_ids.shape[1])

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """All fields as a flat ``{prefix.field: tensor}`` dict (for storage)."""
        return {f"{prefix}.{f.name}": getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> TokenScores:
        return cls(**{f.name: tensors[f"{prefix}.{f.name}"] for f in fields(cls)})


@dataclass(frozen=True)
class Candidate:
    """One alternative the model considered at a step."""

    token_id: int
    token: str
    logprob: float

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    def __repr__(self) -> str:
        # The probability first: "the candidates with their probabilities" is what users read this for.
        p = format_prob(self.prob)
        return f"Candidate({self.token!r}, prob={p}, logprob={self.logprob:.4g}, id={self.token_id})"


@dataclass(frozen=True)
class StepRecord:
    """A readable view of one generated step (built on demand from a :class:`Capture`)."""

    step: int
    position: int
    token_id: int
    token: str
    logprob: float
    rank: int
    entropy: float
    top: tuple[Candidate, ...]
    processed_logprob: float
    processed_rank: int
    processed_entropy: float

    @property
    def prob(self) -> float:
        return math.exp(self.logprob)

    def __repr__(self) -> str:
        top = ", ".join(f"{c.token!r} {format_prob(c.prob)}" for c in self.top[:5])
        more = f", +{len(self.top) - 5} more" if len(self.top) > 5 else ""
        return (f"StepRecord(step={self.step}, token={self.token!r}, prob={format_prob(self.prob)}, "
                f"logprob={self.logprob:.4g}, rank={self.rank}, entropy={self.entropy:.4g}, top=[{top}{more}])")
