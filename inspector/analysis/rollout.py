"""Attention rollout (Abnar & Zuidema 2020): how much each earlier token fed each position through all layers.

Per chosen layer: average the chosen heads, ``A' = (1 - r) A + r I`` with residual
weight ``r`` (the identity stands for the residual path; ``r = 0.5`` as in the paper),
renormalise the rows, then multiply through the layers, first layer first:
``R = A'_last @ ... @ A'_first``. Row ``q`` of the result is a distribution over the
tokens ``0..q`` for position ``q`` (causal); the rows of generated tokens are the
ones usually shown.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from inspector._records.capture import Capture
from inspector._value_math import norm_weighted_attention


def _choose(what: str, chosen: Sequence[int] | None, size: int) -> list[int]:
    if chosen is None:
        return list(range(size))
    out = [int(i) for i in chosen]
    if not out:
        raise ValueError(f"choose at least one {what}")
    if any(not 0 <= i < size for i in out) or len(set(out)) != len(out):
        raise ValueError(f"{what}s must be distinct indices within 0..{size - 1}, got {out}")
    return out


def attention_rollout(
    att: torch.Tensor | Capture,
    layers: Sequence[int] | None = None,
    heads: Sequence[int] | None = None,
    residual_weight: float = 0.5,
    norms: torch.Tensor | None = None,
) -> torch.Tensor:
    """Rollout of attention ``[layer, head, query, key]`` -> ``[query, key]`` float32.

    Args:
        att: causal attention, each row a distribution (as in ``Capture.attentions``), or a capture
            (its attention of every layer and head; ``CaptureError`` saying what to capture when it kept less).
        layers: the layers to multiply through (default all); used in ascending order.
        heads: the heads averaged in every chosen layer (default all).
        residual_weight: ``r`` in ``(1 - r) A + r I``, within 0..1. ``0`` multiplies the
            raw attention maps; ``1`` gives the identity.
        norms: ``[layer, head, key]`` value norms (see
            :mod:`inspector.analysis.value_norms`): when given, the input is
            norm-weighted attention, renormalised per row, instead of raw attention.
    """
    given: Any = att
    if isinstance(given, Capture):
        given = given.require_attentions()
    if given is None:
        raise ValueError("att is None: the capture kept no attention of every layer and head (a selective capture "
                         "keeps some layers, heads or rows only); pass the capture itself to learn what to capture "
                         "instead, or capture again with attention kept (model.generate(...) defaults)")
    if not isinstance(given, torch.Tensor):
        raise ValueError(f"att must be a [layer, head, seq, seq] tensor or a Capture, got {type(given).__name__}")
    att = given
    if att.dim() != 4 or att.shape[2] != att.shape[3]:
        raise ValueError(f"att must be [layer, head, seq, seq], got {tuple(att.shape)}")
    if not 0.0 <= residual_weight <= 1.0:
        raise ValueError(f"residual_weight must be within 0..1, got {residual_weight}")
    layer_ids = sorted(_choose("layer", layers, att.shape[0]))
    head_ids = _choose("head", heads, att.shape[1])
    source = att.float() if norms is None else norm_weighted_attention(att, norms, renormalise=True)
    seq = att.shape[2]
    eye = torch.eye(seq, dtype=torch.float32, device=att.device)
    result: torch.Tensor | None = None
    for layer in layer_ids:
        a = source[layer, head_ids].mean(0)
        a = (1.0 - residual_weight) * a + residual_weight * eye
        # A row with no mass at all (a fully masked row) keeps the identity, so rows still sum to 1.
        total = a.sum(-1, keepdim=True)
        a = torch.where(total > 0, a / total.clamp(min=torch.finfo(torch.float32).tiny), eye)
        result = a if result is None else a @ result
    assert result is not None  # _choose never returns an empty list
    return result
