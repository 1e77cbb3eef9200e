"""Logit lens: decode every layer's residual-stream state through the model's final norm and head.

The input is what ``model(..., output_hidden_states=True).hidden_states`` gives,
stacked: ``[layer + 1, seq, d_model]``, entry 0 the embeddings (before the first
layer), entry ``l`` the output of layer ``l - 1``.

**The last entry is special.** In Hugging Face models the last entry already has the
final norm applied (and OPT's output projection): it is exactly what the head sees
(checked in the tests for GPT-2, GPT-J, GPT-NeoX, OPT, Llama, Mistral, Qwen2, Gemma,
Gemma 2). The raw output of the last layer is not returned at all. So the lens applies
norm + head to entries ``0 .. layer - 1`` and the head alone to the last one
(``last_is_final=True``, the default), which makes the last row equal the model's
logits. Pass ``last_is_final=False`` for states that come from elsewhere, un-normed.

Results keep the top-k only (compact) plus entropy and the rank and probability of a
target token (the token the model finally produced at the next position).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

import torch
from torch import nn

from inspector.analysis.lens_decode import decode_logits
from inspector.analysis.readout import Readout, find_readout

if TYPE_CHECKING:  # pragma: no cover
    from inspector.records import Capture


@dataclass(frozen=True)
class LensResult:
    """The logit lens of one sequence, top-k only.

    ``entry`` indexes ``hidden_states``: 0 is the embeddings, ``l`` the output of
    layer ``l - 1``; ``pos`` indexes :attr:`positions`. Probabilities are of the softmax
    of the lens logits, entropy is in nats.

    Attributes:
        positions: ``[pos]`` int64, the sequence positions decoded.
        topk_ids: ``[entry, pos, k]`` int64, the k most likely next tokens, most likely first.
        topk_probs: ``[entry, pos, k]`` float32, their probabilities.
        entropy: ``[entry, pos]`` float32.
        target_ids: ``[pos]`` int64, the target token of each position, ``-1`` for none.
        target_rank: ``[entry, pos]`` int64, 1-based rank of the target (ties in its favour); 0 where none.
        target_prob: ``[entry, pos]`` float32, probability of the target; NaN where none.
    """

    positions: torch.Tensor
    topk_ids: torch.Tensor
    topk_probs: torch.Tensor
    entropy: torch.Tensor
    target_ids: torch.Tensor
    target_rank: torch.Tensor
    target_prob: torch.Tensor

    def __post_init__(self) -> None:
        if self.topk_ids.dim() != 3:
            raise ValueError(f"topk_ids must be [entry, pos, k], got {tuple(self.topk_ids.shape)}")
        entries, pos, _ = self.topk_ids.shape
        expected = {
            "positions": (pos,), "topk_probs": tuple(self.topk_ids.shape), "entropy": (entries, pos),
            "target_ids": (pos,), "target_rank": (entries, pos), "target_prob": (entries, pos),
        }
        for name, shape in expected.items():
            got = tuple(getattr(self, name).shape)
            if got != shape:
                raise ValueError(f"LensResult.{name} must have shape {shape}, got {got}")

    @property
    def num_entries(self) -> int:
        """``layer + 1``: the embeddings and every layer's output."""
        return int(self.topk_ids.shape[0])

    @property
    def k(self) -> int:
        return int(self.topk_ids.shape[2])

    @property
    def top1_ids(self) -> torch.Tensor:
        """``[entry, pos]`` the most likely token of every entry and position."""
        return self.topk_ids[..., 0]

    def tensors(self, prefix: str) -> dict[str, torch.Tensor]:
        """All fields as a flat ``{prefix.field: tensor}`` dict (for storage)."""
        return {f"{prefix}.{f.name}": getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str) -> LensResult:
        return cls(**{f.name: tensors[f"{prefix}.{f.name}"] for f in fields(cls)})


def next_token_targets(token_ids: torch.Tensor) -> torch.Tensor:
    """``[seq]`` targets for ``[seq]`` ids: position ``p`` targets ``token_ids[p + 1]``, the last ``-1``."""
    if token_ids.dim() != 1:
        raise ValueError(f"token_ids must be [seq], got {tuple(token_ids.shape)}")
    out = torch.full_like(token_ids, -1, dtype=torch.int64)
    out[:-1] = token_ids[1:]
    return out


def _as_module(model: Any) -> nn.Module:
    # An InspectorModel holds the HF model in ``.model``; an HF model is used as is
    # (a LlamaForCausalLM also has ``.model``, its base model, so test the type first).
    if isinstance(model, nn.Module):
        return model
    inner = getattr(model, "model", None)
    if not isinstance(inner, nn.Module):
        raise ValueError(f"expected a Hugging Face model or an InspectorModel, got {type(model).__name__}")
    return inner


def _entries(hidden_states: torch.Tensor | Sequence[torch.Tensor]) -> list[torch.Tensor]:
    if isinstance(hidden_states, torch.Tensor):
        if hidden_states.dim() != 3:
            raise ValueError(f"hidden_states must be [layer + 1, seq, d_model], got {tuple(hidden_states.shape)}")
        return list(hidden_states.unbind(0))
    # A batch of one, as output_hidden_states gives it, is accepted too.
    entries = [t[0] if t.dim() == 3 and t.shape[0] == 1 else t for t in hidden_states]
    for t in entries:
        if t.dim() != 2:
            raise ValueError(f"each hidden state must be [seq, d_model], got {tuple(t.shape)}")
    if not entries or len({int(t.shape[0]) for t in entries}) != 1:
        raise ValueError("hidden_states must be a non-empty list of [seq, d] tensors of one length")
    return entries


def logit_lens(
    hidden_states: torch.Tensor | Sequence[torch.Tensor],
    model: Any,
    targets: torch.Tensor | None = None,
    k: int = 10,
    positions: Sequence[int] | torch.Tensor | None = None,
    last_is_final: bool = True,
    chunk_rows: int = 128,
    readout: Readout | None = None,
) -> LensResult:
    """Decode every entry of ``hidden_states`` through the final norm and the head.

    Args:
        hidden_states: ``[layer + 1, seq, d_model]`` (any float dtype), or a list of
            ``[seq, d]`` entries (OPT with a projection has a narrower last entry).
        model: a Hugging Face causal LM or an ``InspectorModel`` (``.model``).
        targets: ``[seq]`` int64 target token per position (``-1``: none), e.g.
            :func:`next_token_targets` of the capture's ``token_ids``. ``None``: no targets.
        k: top-k kept per entry and position.
        positions: the sequence positions to decode (default: all).
        last_is_final: the last entry already had the final norm applied (the Hugging
            Face convention; see the module docstring).
        chunk_rows: ``(entry, position)`` rows decoded per matrix product (bounds
            memory to two ``chunk_rows x vocab`` float32 arrays; 128 rows of GPT-2's
            vocabulary, 25 MB each, stay in a server CPU's cache).
        readout: the norm/head to use; default :func:`find_readout` of the model.

    Returns:
        a :class:`LensResult` over the chosen positions.
    """
    module = _as_module(model)
    entries = _entries(hidden_states)
    seq = int(entries[0].shape[0])
    layers = getattr(getattr(module, "config", None), "num_hidden_layers", None)
    if isinstance(layers, int) and len(entries) != layers + 1:
        raise ValueError(f"{type(module).__name__} has {layers} layers, so hidden_states needs {layers + 1} entries "
                         f"(embeddings + one per layer), got {len(entries)}")
    pos = torch.arange(seq) if positions is None else torch.as_tensor(positions, dtype=torch.int64).reshape(-1)
    if pos.numel() == 0 or int(pos.min()) < 0 or int(pos.max()) >= seq:
        raise ValueError(f"positions must be a non-empty list within 0..{seq - 1}")
    if targets is None:
        tgt = torch.full((seq,), -1, dtype=torch.int64)
    else:
        tgt = torch.as_tensor(targets, dtype=torch.int64)
        if tuple(tgt.shape) != (seq,):
            raise ValueError(f"targets must be [seq]=({seq},), got {tuple(tgt.shape)}")
    if k < 1 or chunk_rows < 1:
        raise ValueError(f"k and chunk_rows must be positive, got k={k}, chunk_rows={chunk_rows}")
    readout = readout if readout is not None else find_readout(module)
    vocab = readout.vocab_size
    if int(tgt.max()) >= vocab or int(tgt.min()) < -1:
        raise ValueError(f"target ids must be -1 (none) or within 0..{vocab - 1}")
    tgt = tgt[pos]
    with torch.inference_mode():
        parts = _decode_entries(entries, pos, tgt, readout, k, chunk_rows, last_is_final)
    # Cloned outside inference mode so that callers may modify the results in place.
    ids, probs, entropy, rank, tprob = (t.clone().reshape(len(entries), pos.numel(), *t.shape[1:]) for t in parts)
    return LensResult(
        positions=pos.clone(),
        topk_ids=ids,
        topk_probs=probs,
        entropy=entropy,
        target_ids=tgt.clone(),
        target_rank=rank,
        target_prob=tprob,
    )


def _decode_entries(
    entries: list[torch.Tensor], pos: torch.Tensor, tgt: torch.Tensor, readout: Readout, k: int,
    chunk_rows: int, last_is_final: bool,
) -> list[torch.Tensor]:
    """Decoded ``(entry, position)`` rows, entry-major, in chunks of ``chunk_rows`` rows across entries.

    Chunks span entry boundaries, so a short sequence still gets full-height matrix
    products; the final norm is applied per entry (not to an already-normed last one).
    Decoding runs where the head lives (a GPU when the model is on one); only the
    top-k and the per-row numbers come back.
    """
    n_pos, last = pos.numel(), len(entries) - 1
    targets = tgt.to(readout.device)
    parts: list[list[torch.Tensor]] = [[] for _ in range(5)]
    out: torch.Tensor | None = None
    buf: torch.Tensor | None = None
    for start in range(0, len(entries) * n_pos, chunk_rows):
        stop = min(start + chunk_rows, len(entries) * n_pos)
        pieces = []
        for e in range(start // n_pos, (stop - 1) // n_pos + 1):
            lo, hi = max(start - e * n_pos, 0), min(stop - e * n_pos, n_pos)
            states = entries[e][pos[lo:hi].to(entries[e].device)].to(device=readout.device, dtype=readout.dtype)
            pieces.append(states if last_is_final and e == last else readout.finalise(states))
        if out is None or out.shape[0] != stop - start:  # two scratch arrays, reused by every full chunk
            out = torch.empty(stop - start, readout.vocab_size, device=readout.device)
            buf = torch.empty_like(out)
        logits = readout.logits(torch.cat(pieces), finalised=True, out=out)
        rows = torch.arange(start, stop, device=targets.device) % n_pos
        decoded = decode_logits(logits, targets[rows], k, buf=buf if logits.shape == out.shape else None)
        for part, t in zip(parts, decoded, strict=True):
            part.append(t.cpu())
    return [torch.cat(p) for p in parts]


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
    module = _as_module(model)
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
