"""Arrays for figures: tensors as float32 NumPy, attention maps mean-pooled into blocks, causal masks."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # pragma: no cover
    import torch


def to_numpy(t: torch.Tensor) -> np.ndarray:
    """``t`` as a float32 NumPy array on the CPU (half-precision attention included)."""
    return t.detach().to("cpu").float().numpy()


def pool_factor(n: int, max_cells: int | None) -> int:
    """How many positions share one cell so that ``n`` fits into ``max_cells``."""
    if not max_cells or n <= max_cells:
        return 1
    return math.ceil(n / max_cells)


def pool_mean(mat: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of the last two dimensions (edge blocks may be smaller)."""
    if factor <= 1:
        return mat
    *lead, rows, cols = mat.shape
    r_out, c_out = math.ceil(rows / factor), math.ceil(cols / factor)
    padded = np.zeros((*lead, r_out * factor, c_out * factor), dtype=np.float32)
    padded[..., :rows, :cols] = mat
    sums = padded.reshape(*lead, r_out, factor, c_out, factor).sum(axis=(-3, -1))
    r_count = np.minimum(factor, rows - np.arange(r_out) * factor)
    c_count = np.minimum(factor, cols - np.arange(c_out) * factor)
    pooled: np.ndarray = (sums / np.outer(r_count, c_count)).astype(np.float32)
    return pooled


def causal_mask(n: int, factor: int = 1) -> np.ndarray:
    """``True`` where a (pooled) cell lies wholly above the diagonal: keys after the query."""
    n_cells = math.ceil(n / factor)
    first_key = np.arange(n_cells) * factor
    last_query = np.minimum(np.arange(n_cells) * factor + factor - 1, n - 1)
    return first_key[None, :] > last_query[:, None]
