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
    chunk_rows: int = 512,
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
        chunk_rows: positions decoded per matrix product (bounds memory to a few
            ``chunk_rows x vocab`` float32 arrays).
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
    parts: dict[str, list[torch.Tensor]] = {"ids": [], "probs": [], "entropy": [], "rank": [], "tprob": []}
    for e, states in enumerate(entries):
        finalised = last_is_final and e == len(entries) - 1
        rows: dict[str, list[torch.Tensor]] = {name: [] for name in parts}
        for start in range(0, pos.numel(), chunk_rows):
            idx = pos[start : start + chunk_rows]
            # Decoded where the head lives (a GPU when the model is on one); only the top-k comes back.
            logits = readout.logits(states[idx.to(states.device)], finalised=finalised)
            decoded = _decode(logits, tgt[start : start + chunk_rows].to(logits.device), k)
            for name, t in zip(parts, decoded, strict=True):
                rows[name].append(t.cpu())
        for name in parts:
            parts[name].append(torch.cat(rows[name]))
    return LensResult(
        positions=pos.clone(),
        topk_ids=torch.stack(parts["ids"]),
        topk_probs=torch.stack(parts["probs"]),
        entropy=torch.stack(parts["entropy"]),
        target_ids=tgt.clone(),
        target_rank=torch.stack(parts["rank"]),
        target_prob=torch.stack(parts["tprob"]),
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
    if hidden_states is None:
        hidden_states = getattr(capture, "hidden_states", None)
    if hidden_states is None:
        hidden_states = teacher_forced_hidden_states(model, capture.token_ids)
    return logit_lens(hidden_states, model, targets=next_token_targets(capture.token_ids), **options)


def _decode(logits: torch.Tensor, targets: torch.Tensor, k: int) -> tuple[torch.Tensor, ...]:
    """Top-k ids/probs, entropy, target rank/prob of float32 logits ``[n, vocab]``."""
    # log_softmax is one fused pass; logsumexp and a separate exp were several times slower on the CPU.
    logp = torch.log_softmax(logits, dim=-1)
    entropy = -torch.linalg.vecdot(logp.exp(), logp)
    top_logp, top_ids = logp.topk(min(k, logp.shape[-1]), dim=-1)
    has = targets >= 0
    t_logp = logp.gather(1, targets.clamp(min=0).unsqueeze(1))
    # Every token above a target that made the top-k is in the top-k too, so its rank needs no
    # pass over the vocabulary; only the other rows are compared in full.
    rank = (top_logp > t_logp).sum(-1) + 1
    full = has & ~(top_ids == targets.unsqueeze(1)).any(-1)
    if bool(full.any()):
        # A float sum of the mask is ~2x faster than an integer sum on the CPU; exact below 2**24.
        rank[full] = (logp[full] > t_logp[full]).float().sum(-1).long() + 1
    rank = torch.where(has, rank, 0)
    t_prob = torch.where(has, t_logp.squeeze(1).exp(), float("nan"))
    return top_ids, top_logp.exp(), entropy, rank.to(torch.int64), t_prob
