"""The lens's fused per-row statistics against float64 references over a full-size vocabulary."""

from __future__ import annotations

import math

import torch

from inspector._lens_decode import decode_logits


def _logits(rows: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


def test_decode_logits_matches_float64_reference():
    x = _logits(8, 50257, seed=1)
    targets = torch.tensor([0, 5, 50256, -1, 7, 7, 123, 40000])
    targets[1] = int(x[1].argmax())  # a target inside the top-k
    targets[4] = int(x[4].sort(descending=True).indices[3])
    x[5, 9] = x[5, 7]  # a tie with the target: it counts in the target's favour
    ids, probs, entropy, rank, t_prob = decode_logits(x.clone(), targets, 5)
    ref = torch.log_softmax(x.double(), -1)
    p = ref.exp()
    assert torch.equal(ids, x.topk(5, -1).indices)
    torch.testing.assert_close(probs.double(), p.topk(5, -1).values, atol=1e-7, rtol=1e-5)
    torch.testing.assert_close(entropy.double(), -(p * ref).sum(-1), atol=1e-5, rtol=1e-6)
    for r, t in enumerate(targets.tolist()):
        if t < 0:
            assert rank[r] == 0 and math.isnan(float(t_prob[r]))
            continue
        assert int(rank[r]) == int((x[r] > x[r, t]).sum()) + 1
        assert math.isclose(float(t_prob[r]), float(p[r, t]), rel_tol=1e-5)
    assert rank[1] == 1 and rank[4] == 4


def test_decode_logits_few_missed_rows_use_the_row_copy_path():
    """One row of eight misses the top-k: its rank is counted alone, the others come from the top-k."""
    x = _logits(8, 1000, seed=2)
    top = x.argmax(-1)
    targets = top.clone()
    targets[3] = int(x[3].argmin())
    _, _, _, rank, _ = decode_logits(x.clone(), targets, 3, buf=torch.empty_like(x))
    assert rank.tolist() == [1, 1, 1, 1000, 1, 1, 1, 1]
