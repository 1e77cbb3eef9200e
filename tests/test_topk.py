"""``topk_rows`` (block maxima, then an exact top-k of the few blocks) against a full sort of every row."""

from __future__ import annotations

import pytest
import torch

from inspector._topk import BLOCK, topk_rows


def _logits(rows: int, vocab: int, seed: int = 0) -> torch.Tensor:
    return torch.randn(rows, vocab, generator=torch.Generator().manual_seed(seed)) * 3


@pytest.mark.parametrize("vocab", [50257, 40 * BLOCK, 4 * 10 * BLOCK + 5, 300])
def test_topk_rows_equals_a_full_sort(vocab):
    x = _logits(6, vocab)
    x[0, -1] = 100.0  # the largest value in the ragged tail
    x[1, :10] = 50.0 + torch.arange(10.0)  # the whole top-k in the first block
    values, ids = topk_rows(x, 10)
    ref = x.sort(-1, descending=True)
    assert torch.equal(values, ref.values[:, :10])
    assert torch.equal(ids, ref.indices[:, :10])
    assert int(ids[0, 0]) == vocab - 1 and ids[1].tolist() == list(range(9, -1, -1))


def test_topk_rows_with_ties_keeps_the_values():
    x = torch.zeros(2, 50257)
    x[:, ::997] = 1.0  # 51 equal maxima spread over many blocks
    values, ids = topk_rows(x, 10)
    assert torch.equal(values, torch.ones(2, 10))
    assert bool((ids % 997 == 0).all()) and all(len(set(r)) == 10 for r in ids.tolist())


@pytest.mark.parametrize("rows", [1, 16])
def test_one_row_many_rows_and_a_strided_view(rows):
    """The capture hands in ``logits[:, -1, :]`` of a ``[row, position, vocab]`` output: a strided view."""
    full = _logits(rows * 3, 50257, seed=rows).view(rows, 3, 50257)
    x = full[:, -1, :]
    assert not x.is_contiguous() or rows == 1
    values, ids = topk_rows(x, 10)
    ref = x.contiguous().sort(-1, descending=True)
    assert torch.equal(values, ref.values[:, :10]) and torch.equal(ids, ref.indices[:, :10])


def test_filtered_scores_and_nan():
    """Sampling filters set all but a few scores to ``-inf``; NaN sorts first, as in ``torch.topk``."""
    x = torch.full((3, 50257), float("-inf"))
    kept = torch.tensor([7, 4000, 4001, 50256])
    x[0, kept] = torch.tensor([1.0, 3.0, 2.0, 4.0])
    x[1] = _logits(1, 50257, seed=3)[0]
    x[1, 12345] = float("nan")
    x[2, 5] = 0.0  # one finite score
    values, ids = topk_rows(x, 10)
    assert ids[0, :4].tolist() == [50256, 4000, 4001, 7] and values[0, :4].tolist() == [4.0, 3.0, 2.0, 1.0]
    assert bool(torch.isneginf(values[0, 4:]).all())
    assert int(ids[1, 0]) == 12345 and torch.isnan(values[1, 0])
    assert torch.equal(values[1, 1:], x[1].nan_to_num(nan=float("-inf")).topk(9).values)
    assert int(ids[2, 0]) == 5 and float(values[2, 0]) == 0.0 and bool(torch.isneginf(values[2, 1:]).all())


def test_k_larger_than_the_vocabulary_and_float64():
    x = _logits(2, 7).double()
    values, ids = topk_rows(x, 10)
    assert values.shape == (2, 7) and values.dtype == torch.float64
    assert torch.equal(ids, x.sort(-1, descending=True).indices)
