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
from typing import Any

import torch
from torch import nn

from inspector._lens_decode import decode_logits
from inspector._readout import Readout, find_readout


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


def hf_module(model: Any) -> nn.Module:
    """The Hugging Face model of ``model``: an ``InspectorModel``'s ``.model``, or ``model`` itself.

    An HF model is used as is (a ``LlamaForCausalLM`` also has ``.model``, its base model, so the type is
    tested first).

    Raises:
        ValueError: neither.
    """
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
    module = hf_module(model)
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
