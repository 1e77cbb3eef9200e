"""NaN/inf checks on a capture as it is assembled: :class:`NonFiniteError` names the step or layer."""

from __future__ import annotations

import torch

from inspector._records.capture import CaptureError


class NonFiniteError(CaptureError):
    """The model produced NaN or inf; the message names the step and layer."""


def check_finite_attention(att: torch.Tensor, prompt_len: int, which: str) -> None:
    """``NonFiniteError`` naming the first layer and query position of ``[layer, head, query, key]`` not finite."""
    if not att.numel():
        return
    # One pass first: the row sums (over keys) are finite exactly when every weight is (NaN and inf
    # propagate, and a row of attention weights sums to at most 1, so no sum overflows; one that did
    # would only send us to the exact search below). Along the last dim this reads the tensor once
    # without copying it (a capture is often a view of the wider recording buffer), 4x faster than a
    # min/max pass; a mask as large as the attention is built only to name the place of a bad value.
    if bool(torch.isfinite(att.sum(dim=-1)).all()):
        return
    bad = ~torch.isfinite(att)
    if bool(bad.any()):
        layer = int(bad.flatten(1).any(-1).nonzero()[0])
        q = int(bad[layer].any(0).any(-1).nonzero()[0])
        where = "the prefill (prompt rows)" if q < prompt_len else f"the row of generated token {q - prompt_len}"
        raise NonFiniteError(f"{which}: NaN or inf attention weights at layer {layer}, query position {q} ({where})")


def check_finite_steps(finite: torch.Tensor, which: str) -> None:
    """``NonFiniteError`` naming the first generated step whose raw logits were not all finite.

    ``finite``: ``[step]`` bool.
    """
    if not bool(finite.all()):
        step = int((~finite).nonzero()[0])
        raise NonFiniteError(
            f"{which}: NaN or inf logits at generated step {step} (final layer output); on MPS try float32 "
            "and compare with `inspector doctor`"
        )
