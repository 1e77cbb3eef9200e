"""Row statistics of a chunk of lens logits in few memory passes: top-k, entropy, target rank and probability.

The logit lens decodes ``layer + 1`` entries x positions rows over the whole
vocabulary (50257 columns for GPT-2); after the matrix product, each extra pass over
a ``[rows, vocab]`` float32 chunk is what costs. So:

* the top-k comes from block maxima (:func:`inspector._topk.topk_rows`): one cheap pass, then an
  exact top-k over the few blocks that can hold it, instead of a full ``topk``;
* the row maximum is the top-1 value, so no separate ``max`` pass;
* the entropy comes from one ``exp`` pass, ``H = log s - sum(e z) / s`` with
  ``z = logit - max``, ``e = exp(z)``, ``s = sum(e)``; no log-softmax array is made;
* the target rank counts strictly larger raw logits with ``sign`` and ``clamp``
  (a float ``x - t`` is 0 exactly when ``x == t``), several times faster on the CPU
  than summing a boolean mask, and only for rows whose target missed the top-k.
"""

from __future__ import annotations

import torch

from inspector._topk import topk_rows


def decode_logits(
    logits: torch.Tensor, targets: torch.Tensor, k: int, buf: torch.Tensor | None = None,
) -> tuple[torch.Tensor, ...]:
    """Statistics of float32 logits ``[n, vocab]``; **overwrites** ``logits`` (it is shifted in place).

    Args:
        logits: ``[n, vocab]`` float32, owned by the caller and not used afterwards.
        targets: ``[n]`` int64 target ids, ``-1`` for none.
        k: top-k kept.
        buf: scratch space of ``logits``' shape, dtype and device (reused across chunks).

    Returns:
        ``top_ids [n, k]`` int64, ``top_probs [n, k]`` float32, ``entropy [n]`` (nats),
        ``rank [n]`` int64 (1-based, ties in the target's favour, 0 where none) and
        ``target_prob [n]`` float32 (NaN where none).
    """
    top_vals, top_ids = topk_rows(logits, k)
    row_max = top_vals[:, :1]
    has = targets >= 0
    t_logit = logits.gather(1, targets.clamp(min=0).unsqueeze(1))
    # Every logit above a target that made the top-k is in the top-k too: no pass over the vocabulary.
    rank = (top_vals > t_logit).sum(-1) + 1
    missed = has & ~(top_ids == targets.unsqueeze(1)).any(-1)
    buf = torch.empty_like(logits) if buf is None else buf
    n_missed = int(missed.sum())
    if 2 * n_missed >= logits.shape[0]:  # most rows: count them all rather than copy them out
        counts = torch.sub(logits, t_logit, out=buf).sign_().clamp_(min=0).sum(-1)
        # A float sum of 0/1 is exact below 2**24 columns.
        rank = torch.where(missed, counts.long() + 1, rank)
    elif n_missed:
        rows = missed.nonzero().squeeze(1)
        diff = torch.sub(logits.index_select(0, rows), t_logit[rows])
        rank[rows] = diff.sign_().clamp_(min=0).sum(-1).long() + 1
    z = logits.sub_(row_max)
    e = torch.exp(z, out=buf)
    total = e.sum(-1)
    log_total = total.log()
    entropy = log_total - e.mul_(z).sum(-1) / total
    shift = row_max + log_total.unsqueeze(1)
    top_probs = torch.exp(top_vals - shift)
    t_prob = torch.where(has, torch.exp(t_logit - shift).squeeze(1), float("nan"))
    return top_ids, top_probs, entropy, torch.where(has, rank, 0).to(torch.int64), t_prob
