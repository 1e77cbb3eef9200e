"""The per-step statistics of one ``generate`` call: appended step by step, then stacked in one call.

Dimension names (see also :mod:`inspector._records.capture`):

* ``row``  - a row of the running batch: prompt ``b``'s rows are ``b * expand ... b * expand + expand - 1``
  (``expand`` = beams in beam search, else returned sequences);
* ``step`` - decoding steps of the call (``generate``'s forward passes that picked a token);
* ``k``    - the ``top_k_logits`` best tokens, most likely first;
* ``c``    - beam search only: candidate tokens of a row, the ``c`` best under the processed scores
  (enough to hold every token a beam can pick);
* ``vocab`` - the vocabulary.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from inspector._records.capture import StopReason, TokenScores

#: Why a row stopped (``StackedSteps.finish_reason``).
LENGTH, EOS, STOP_STRING = 0, 1, 2
REASONS: dict[int, StopReason] = {LENGTH: "length", EOS: "eos", STOP_STRING: "stop_string"}


@dataclass
class StepLog:
    """Statistics appended once per decoding step while ``generate`` runs (tensors on the model's device).

    Each list holds one tensor per step: ``[row]`` (entropies, ``finite``), ``[row, k]`` (top-k),
    ``[row]`` or, in beam search, ``[row, c]`` (chosen/candidate log-probability and rank) and
    ``[row, c]`` (``cand_ids``, beam search only). ``logits``, when kept, is one buffer
    ``[row, max_new_tokens, vocab]`` float32 for the whole generation, each step written into its
    ``[:, step]`` slot once (:meth:`~inspector._capture.recorder.Recorder.keep_logits`).
    """

    finite: list[torch.Tensor] = field(default_factory=list)
    raw_entropy: list[torch.Tensor] = field(default_factory=list)
    raw_topv: list[torch.Tensor] = field(default_factory=list)
    raw_topi: list[torch.Tensor] = field(default_factory=list)
    raw_chosen_lp: list[torch.Tensor] = field(default_factory=list)
    raw_chosen_rank: list[torch.Tensor] = field(default_factory=list)
    proc_entropy: list[torch.Tensor] = field(default_factory=list)
    proc_topv: list[torch.Tensor] = field(default_factory=list)
    proc_topi: list[torch.Tensor] = field(default_factory=list)
    proc_chosen_lp: list[torch.Tensor] = field(default_factory=list)
    proc_chosen_rank: list[torch.Tensor] = field(default_factory=list)
    cand_ids: list[torch.Tensor] = field(default_factory=list)
    logits: torch.Tensor | None = None


def _stack(parts: list[torch.Tensor], steps: int) -> torch.Tensor:
    return torch.stack(parts[:steps], dim=1).cpu()


@dataclass(frozen=True)
class StackedScores:
    """Statistics of one kind of scores (raw logits or processed scores) for every row and step, on the CPU.

    Attributes:
        entropy: ``[row, step]`` float32, entropy in nats.
        topk_logprobs: ``[row, step, k]`` float32, the ``k`` best log-probabilities, best first.
        topk_ids: ``[row, step, k]`` int64, their token ids.
        chosen_logprob: ``[row, step]`` float32, of the token the row chose at that step
            (greedy/sampling), or ``[row, step, c]`` of each candidate in ``StackedSteps.cand_ids`` (beam search).
        chosen_rank: like ``chosen_logprob``, int64, 1-based rank (ties in the token's favour).
    """

    entropy: torch.Tensor
    topk_logprobs: torch.Tensor
    topk_ids: torch.Tensor
    chosen_logprob: torch.Tensor
    chosen_rank: torch.Tensor

    def token_scores(self, row_at: torch.Tensor, pos: torch.Tensor | None = None) -> TokenScores:
        """The :class:`TokenScores` of one returned sequence.

        ``row_at``: ``[step]``, the row that produced the sequence's token at each step.
        ``pos``: ``[step]``, beam search only: where that token is among the row's candidates.
        """
        idx = torch.arange(int(row_at.shape[0]))
        if pos is None:
            lp, rank = self.chosen_logprob[row_at, idx], self.chosen_rank[row_at, idx]
        else:
            lp, rank = self.chosen_logprob[row_at, idx, pos], self.chosen_rank[row_at, idx, pos]
        return TokenScores(self.entropy[row_at, idx], lp, rank, self.topk_ids[row_at, idx],
                           self.topk_logprobs[row_at, idx])


@dataclass(frozen=True)
class StackedSteps:
    """Everything recorded per step by one ``generate`` call, stacked over ``[row, step, ...]`` on the CPU.

    Built once from a complete :class:`StepLog` by :meth:`from_log`.

    Attributes:
        steps: decoding steps taken (the longest row's generated length).
        finite: ``[row, step]`` bool, whether every raw logit of that row and step was finite.
        raw: statistics under the raw model logits.
        processed: statistics under the processed scores decoding picked from.
        cand_ids: ``[row, step, c]`` int64 candidate ids (beam search), else ``None``.
        logits: ``[row, step, vocab]`` float32 raw logits when kept, else ``None``: on the CPU, a view of
            the recording's buffer (its first ``steps`` steps), not a copy.
        finish_step: ``[row]`` int64, the step at which each row wrote EOS or completed a stop
            string, ``-1`` if it ran to the length limit (greedy/sampling; ``None`` in beam search).
        finish_reason: ``[row]`` int64, :data:`EOS` or :data:`STOP_STRING` where ``finish_step >= 0``.
    """

    steps: int
    finite: torch.Tensor
    raw: StackedScores
    processed: StackedScores
    cand_ids: torch.Tensor | None
    logits: torch.Tensor | None
    finish_step: torch.Tensor | None
    finish_reason: torch.Tensor | None

    @property
    def beam(self) -> bool:
        return self.cand_ids is not None

    @classmethod
    def from_log(
        cls,
        log: StepLog,
        steps: int,
        finish_step: torch.Tensor | None = None,
        finish_reason: torch.Tensor | None = None,
    ) -> StackedSteps:
        """Stack the first ``steps`` entries of every list of ``log`` (beam search when it has candidates)."""
        raw = StackedScores(_stack(log.raw_entropy, steps), _stack(log.raw_topv, steps), _stack(log.raw_topi, steps),
                            _stack(log.raw_chosen_lp, steps), _stack(log.raw_chosen_rank, steps))
        proc = StackedScores(_stack(log.proc_entropy, steps), _stack(log.proc_topv, steps),
                             _stack(log.proc_topi, steps), _stack(log.proc_chosen_lp, steps),
                             _stack(log.proc_chosen_rank, steps))
        beam = bool(log.cand_ids)
        return cls(
            steps=steps,
            finite=_stack(log.finite, steps),
            raw=raw,
            processed=proc,
            cand_ids=_stack(log.cand_ids, steps) if beam else None,
            logits=log.logits[:, :steps].cpu() if log.logits is not None else None,
            finish_step=None if beam or finish_step is None else finish_step.cpu(),
            finish_reason=None if beam or finish_reason is None else finish_reason.cpu(),
        )
