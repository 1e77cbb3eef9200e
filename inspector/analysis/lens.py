"""The logit lens of a capture: what it stored, or recomputed with the model that made it.

The lens itself (:func:`~inspector._lens_math.logit_lens`, :class:`~inspector._lens_math.LensResult`) is
math the capture needs too (``lens_k`` stores it while generating), so it lives below both in
:mod:`inspector._lens_math`; this module joins it to captures.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from inspector._lens_math import LensResult, hf_module, logit_lens, next_token_targets

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture


def stored_lens(capture: Capture) -> LensResult | None:
    """The lens a capture stored (``Capture.lens``, every position) as a :class:`LensResult`, or ``None``.

    The stored form keeps no positions or targets: they are all positions, and the
    capture's next tokens (:func:`next_token_targets`).
    """
    lens = getattr(capture, "lens", None)
    if lens is None:
        return None
    return LensResult(
        positions=torch.arange(lens.seq_len), topk_ids=lens.topk_ids, topk_probs=lens.topk_probs, entropy=lens.entropy,
        target_ids=next_token_targets(capture.token_ids), target_rank=lens.target_rank, target_prob=lens.target_prob,
    )


def teacher_forced_hidden_states(model: Any, token_ids: torch.Tensor) -> list[torch.Tensor]:
    """The ``layer + 1`` hidden states ``[seq, d]`` of one teacher-forced forward pass over ``token_ids [seq]``.

    For a capture that kept no hidden states: with the KV cache the states of a
    generation match these up to float rounding (each position sees the same tokens).
    """
    module = hf_module(model)
    if token_ids.dim() != 1 or token_ids.numel() == 0:
        raise ValueError(f"token_ids must be a non-empty [seq], got {tuple(token_ids.shape)}")
    device = next(module.parameters()).device
    with torch.no_grad():
        out = module(token_ids.unsqueeze(0).to(device), output_hidden_states=True)
    return [h[0].detach() for h in out.hidden_states]


def capture_lens(
    capture: Capture,
    model: Any,
    hidden_states: torch.Tensor | Sequence[torch.Tensor] | None = None,
    **options: Any,
) -> LensResult:
    """The lens of a capture, targets the tokens it generated (and the prompt's next tokens).

    ``hidden_states`` default to the capture's own ``hidden_states`` when it has them,
    else to :func:`teacher_forced_hidden_states`. ``options`` go to :func:`logit_lens`.
    """
    recomputed = hidden_states is None and getattr(capture, "hidden_states", None) is None
    if hidden_states is None:
        hidden_states = getattr(capture, "hidden_states", None)
    if hidden_states is None:
        hidden_states = teacher_forced_hidden_states(model, capture.token_ids)
    lens = logit_lens(hidden_states, model, targets=next_token_targets(capture.token_ids), **options)
    if recomputed:
        check_same_model(capture, lens)
    return lens


def check_same_model(capture: Capture, lens: LensResult) -> None:
    """A lens recomputed with a model must predict, after the prompt, what the capture's model predicted.

    Raises:
        ValueError: the model is not the one that made the capture (another model, other random weights).
    """
    if capture.num_steps == 0:
        return
    cols = (lens.positions == capture.prompt_len - 1).nonzero()
    if cols.numel() == 0:
        return
    got = int(lens.top1_ids[-1, int(cols[0, 0])])
    want = int(capture.raw.topk_ids[0, 0])
    if got != want:
        raise ValueError(
            f"the model does not match the capture: it predicts token {got} after the prompt where the capture's "
            f"model predicted {want}. Give the model that made the capture (for random weights, the same seed)"
        )
