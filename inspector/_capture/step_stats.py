"""Statistics of one decoding step's ``[row, vocab]`` scores: entropy, top-k, the chosen token's
log-probability and rank, computed without ``[row, vocab]`` temporaries where it can.

Every function takes float32 (or float64) tensors whose rows are one batch row's scores over the
vocabulary: raw logits, processed (warped, possibly ``-inf``) scores, or log-probabilities.
"""

from __future__ import annotations

import torch

from inspector._topk import topk_rows

#: Bytes of one column chunk of a ``[row, vocab]`` tensor in the chunked loops (stays in the CPU cache).
CHUNK_BYTES = 256 * 1024


def _chunk_width(x: torch.Tensor) -> int:
    return max(1024, CHUNK_BYTES // (max(1, int(x.shape[0])) * x.element_size()))


def entropy_of_logprobs(logp: torch.Tensor, masked: bool = False) -> torch.Tensor:
    """Entropy ``[row]`` in nats of log-probabilities ``[row, vocab]``, ``-sum p log p``.

    Over column chunks of about :data:`CHUNK_BYTES`: each chunk's ``p = exp(log p)`` is used while
    still in the CPU cache, and no ``[row, vocab]`` temporary is made. At batch 16 x 50,257 that took
    0.6 ms where one ``exp`` and ``vecdot`` over the whole took 2.6 ms (and a ``bmm`` 6 ms, less
    accurately). ``masked``: some entries may be ``-inf``; their ``0 * -inf`` terms are taken as 0.
    """
    total: torch.Tensor | None = None
    for chunk in logp.split(_chunk_width(logp), dim=-1):
        p = chunk.exp()
        part = torch.linalg.vecdot(p, chunk.masked_fill(p == 0, 0.0) if masked else chunk)
        total = part if total is None else total.add_(part)
    assert total is not None
    return total.neg_()


def entropy_and_topk(
    logp: torch.Tensor, k: int, masked: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Entropy ``[row]`` (:func:`entropy_of_logprobs`) and top-k values and ids ``[row, k]`` of
    log-probabilities ``[row, vocab]``."""
    topv, topi = topk_rows(logp, k)
    return entropy_of_logprobs(logp, masked), topv, topi


def row_stats(
    x: torch.Tensor, k: int, masked: bool = False
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(lse, entropy, topk_logprobs, topk_ids)`` of the softmax of scores ``x`` ``[row, vocab]``.

    ``lse`` ``[row]`` is ``log sum exp x`` (so ``log p = x - lse``), the entropy ``[row]`` in nats,
    the top-k log-probabilities and ids ``[row, k]``, best first. No ``[row, vocab]`` log-softmax is
    made: with ``m`` the row's largest score, ``z = x - m``, ``e = exp z`` and ``S = sum e`` (chunk by
    chunk), ``lse = m + log S`` and the entropy is ``log S - (e . z) / S``, which is ``-sum p log p``.
    ``masked``: entries may be ``-inf`` (filtered scores); their ``0 * -inf`` terms count as 0. Any
    NaN or infinite raw score (``masked=False``) makes the entropy NaN.
    """
    topv, topi = topk_rows(x, k)
    m = topv[:, :1]
    total = dot = None
    for chunk in x.split(_chunk_width(x), dim=-1):
        z = chunk - m
        e = z.exp()
        part_s, part_d = e.sum(-1), torch.linalg.vecdot(e, z.masked_fill(e == 0, 0.0) if masked else z)
        total = part_s if total is None else total.add_(part_s)
        dot = part_d if dot is None else dot.add_(part_d)
    assert total is not None and dot is not None
    log_s = total.log()
    lse = m[:, 0] + log_s
    return lse, log_s - dot / total, topv - lse[:, None], topi


def chosen_from_logits(x: torch.Tensor, lse: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability ``[row]`` and 1-based rank ``[row]`` of token ``ids`` ``[row]`` under scores ``x``
    ``[row, vocab]`` with log-sum-exp ``lse`` (:func:`row_stats`); ties count in the token's favour."""
    chosen = x.gather(-1, ids[:, None])
    return chosen[:, 0] - lse, (x > chosen).sum(-1) + 1


def logprob_and_rank(logp: torch.Tensor, ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Log-probability and 1-based rank of ``ids`` ``[n]`` (or ``[n, c]``) under ``logp`` ``[n, vocab]``."""
    squeeze = ids.dim() == 1
    ids2 = ids[:, None] if squeeze else ids
    lp = logp.gather(-1, ids2)
    rank = (logp[:, None, :] > lp[:, :, None]).sum(-1) + 1
    return (lp[:, 0], rank[:, 0]) if squeeze else (lp, rank)
