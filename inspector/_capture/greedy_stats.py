"""Greedy decoding's per-step statistics, computed for a few steps at a time.

Inside ``generate`` every small tensor operation costs far more than it does in a loop of its own
(its code and data went cold during the forward pass): at batch 1 with GPT-2 small the statistics of
one step's ``[1, vocab]`` logits took about 0.5 ms there against 0.26 ms when repeated at once. The
operations are the same for one row as for eight, so greedy decoding copies each step's logits
into a small ``[group x row, vocab]`` block and reduces the block when it is full (or when the
generation ends): 23 ms instead of 40 ms over 64 steps at batch 1 with 3 steps held (14 ms with 6,
which would cost more memory than the captures may add). Only when few rows run together
(:data:`MAX_GROUP_ROWS`) and the block is small next to what the captures keep
(:data:`MAX_GROUP_SHARE`) and no hidden states are recorded; otherwise every step is reduced as it
comes (a group of one, no copy).

When the logits are kept (``keep_logits``), the steps are already in the kept buffer
(``StepLog.logits``, ``[row, step, vocab]``): the held steps are reduced from it and no block is made.

Greedy decoding picks the highest raw logit (nothing processes the scores; the recorder checks
that at the first step), so the chosen token's log-probability is the best one and its rank is 1,
also on an exact tie (ties count in the chosen token's favour), and the processed statistics are
the raw ones.
"""

from __future__ import annotations

import torch

from inspector._capture.step_stats import row_stats
from inspector._capture.steps import StepLog

__all__ = ["MAX_GROUP_ROWS", "MAX_GROUP_SHARE", "GreedyStats", "group_steps"]

#: Rows (steps x batch rows) reduced together at most; more gain little (measured 8 vs 16 at batch 1).
MAX_GROUP_ROWS = 8
#: The most the block of held logits may be, as a share of the bytes the captures keep. The block lives
#: through the whole generation, so it adds to the peak: at batch 1 (GPT-2 small, 64 + 64 tokens) the
#: default capture holds 3 steps and peaked 1.28x what it keeps above plain ``generate`` (median of 3
#: processes; target at most 1.5x). Captures that record hidden states hold no block (their prefill's
#: float32 states of every layer already take that room: with hidden states and value norms the peak
#: was 1.32x without a block, 1.43-1.50x with 4 steps held).
MAX_GROUP_SHARE = 0.13


def group_steps(rows: int, vocab: int, kept_bytes: int) -> int:
    """How many steps' ``[rows, vocab]`` float32 logits to hold before reducing them together (at least 1)."""
    per_step = rows * vocab * 4
    return max(1, min(MAX_GROUP_ROWS // max(1, rows), int(MAX_GROUP_SHARE * kept_bytes) // max(1, per_step)))


class GreedyStats:
    """Appends greedy steps' statistics to a :class:`~inspector._capture.steps.StepLog`, ``group`` steps at a time.

    :meth:`add` takes one step's raw logits ``[row, vocab]``; :meth:`flush` reduces what is held (call
    it once ``generate`` has returned, with ``release=True``: the block is freed before the captures are
    assembled, so it never adds to that peak). Each list of the log then holds one ``[row]`` or ``[row, k]``
    tensor per step, as when steps are reduced one by one.
    """

    def __init__(self, log: StepLog, rows: int, k: int, group: int) -> None:
        self.log = log
        self.rows = rows
        self.k = k
        self.group = max(1, group)
        self._block: torch.Tensor | None = None  # [group * row, vocab] float32
        self._held = 0
        self._steps = 0  # steps added so far (the kept buffer's next step)

    def add(self, raw: torch.Tensor, kept: bool = False) -> None:
        """One step's raw logits ``[row, vocab]`` (any float dtype).

        ``kept``: ``raw`` is this step's row of the kept buffer ``log.logits`` ``[row, step, vocab]``
        (written there already), from which the held steps are reduced: nothing is copied.
        """
        self._steps += 1
        if kept:
            self._held += 1
            if self._held == self.group:
                self.flush()
            return
        if self.group == 1:
            self._record(raw.float(), 1)
            return
        if self._block is None:
            self._block = raw.new_empty((self.group * self.rows, int(raw.shape[-1])), dtype=torch.float32)
        self._block[self._held * self.rows : (self._held + 1) * self.rows].copy_(raw)
        self._held += 1
        if self._held == self.group:
            self.flush()

    def flush(self, release: bool = False) -> None:
        """Reduces the held steps (if any) and appends their statistics to the log; ``release``: frees the block."""
        held = self._held
        if held and self.log.logits is not None:  # the kept buffer [row, step, vocab]
            part = self.log.logits[:, self._steps - held : self._steps]
            # step-major rows; a view at batch 1 or one step, else a copy of the held steps only
            self._record(part[0] if self.rows == 1 else part.transpose(0, 1).reshape(held * self.rows, -1), held)
        elif held and self._block is not None:
            self._record(self._block[: held * self.rows], held)
        self._held = 0
        if release:
            self._block = None

    def _record(self, x: torch.Tensor, steps: int) -> None:
        rows, log = self.rows, self.log
        _, ent, topv, topi = row_stats(x, self.k)
        ents = list(ent.view(steps, rows).unbind(0))
        topvs = list(topv.view(steps, rows, -1).unbind(0))
        topis = list(topi.view(steps, rows, -1).unbind(0))
        best = list(topv[:, 0].view(steps, rows).unbind(0))
        ones = [torch.ones(rows, dtype=torch.long, device=x.device)] * steps
        # the entropy is finite exactly when every raw logit is (NaN, +inf or -inf all make it NaN)
        log.finite.extend(torch.isfinite(ent).view(steps, rows).unbind(0))
        for dst, src in ((log.raw_entropy, ents), (log.proc_entropy, ents), (log.raw_topv, topvs),
                         (log.proc_topv, topvs), (log.raw_topi, topis), (log.proc_topi, topis),
                         (log.raw_chosen_lp, best), (log.proc_chosen_lp, best),
                         (log.raw_chosen_rank, ones), (log.proc_chosen_rank, ones)):
            dst.extend(src)
