"""Per-layer records a capture keeps on request: residual-stream states, value norms, the compact logit lens.

Shapes use the names of :mod:`inspector._records.capture`, plus ``entry`` for the ``layer + 1``
residual-stream states (entry 0 before the first layer, entry ``l`` after layer ``l - 1``; the
last entry is what the model's head sees, already normed, as Hugging Face's
``output_hidden_states`` gives it) and ``d`` for their width. The checks here return a
message instead of raising, so :class:`~inspector._records.capture.Capture` raises its own error.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import torch

#: Storage names of the lens tensors that hold integers.
LENS_INTEGER_FIELDS = ("topk_ids", "target_rank")


@dataclass(frozen=True)
class CaptureLens:
    """The logit lens of every entry and position of a capture, top-k only (no model needed to show it).

    Position ``p`` is decoded at every entry; its target is the token at ``p + 1`` (the
    token the model finally produced there); the last position has none.

    Attributes:
        topk_ids: ``[entry, seq, k]`` int64, the k most likely next tokens, most likely first.
        topk_probs: ``[entry, seq, k]`` float32, their probabilities.
        entropy: ``[entry, seq]`` float32, entropy in nats.
        target_rank: ``[entry, seq]`` int64, 1-based rank of the target (ties in its favour); 0 where none.
        target_prob: ``[entry, seq]`` float32, probability of the target; NaN where none.
    """

    topk_ids: torch.Tensor
    topk_probs: torch.Tensor
    entropy: torch.Tensor
    target_rank: torch.Tensor
    target_prob: torch.Tensor

    def __post_init__(self) -> None:
        if self.topk_ids.dim() != 3:
            raise ValueError(f"lens topk_ids must be [entry, seq, k], got {tuple(self.topk_ids.shape)}")
        entries, seq, _ = self.topk_ids.shape
        for f in fields(self):
            want = tuple(self.topk_ids.shape) if f.name.startswith("topk") else (entries, seq)
            got = tuple(getattr(self, f.name).shape)
            if got != want:
                raise ValueError(f"lens {f.name} must have shape {want}, got {got}")

    @property
    def num_entries(self) -> int:
        return int(self.topk_ids.shape[0])

    @property
    def seq_len(self) -> int:
        return int(self.topk_ids.shape[1])

    @property
    def k(self) -> int:
        return int(self.topk_ids.shape[2])

    def tensors(self, prefix: str = "lens") -> dict[str, torch.Tensor]:
        """All fields as a flat ``{prefix.field: tensor}`` dict (for storage)."""
        return {f"{prefix}.{f.name}": getattr(self, f.name) for f in fields(self)}

    @classmethod
    def from_tensors(cls, tensors: dict[str, torch.Tensor], prefix: str = "lens") -> CaptureLens | None:
        """The lens stored under ``prefix``, or ``None`` when the tensors hold none."""
        if not any(name.startswith(f"{prefix}.") for name in tensors):
            return None
        return cls(**{f.name: tensors[f"{prefix}.{f.name}"] for f in fields(cls)})


#: ``hidden_states``: one ``[entry, seq, d]`` tensor, or one ``[seq, d_i]`` tensor per entry when the
#: widths differ (OPT with ``project_out`` has a narrower last entry).
HiddenStates = torch.Tensor | tuple[torch.Tensor, ...]


def hidden_entries(hidden: HiddenStates) -> list[torch.Tensor]:
    """The ``[seq, d_i]`` entries of either form of ``hidden_states``."""
    return list(hidden.unbind(0)) if isinstance(hidden, torch.Tensor) else list(hidden)


def hidden_states_problem(hidden: HiddenStates, seq: int, layers: int) -> str | None:
    """Why ``hidden`` is not ``layer + 1`` entries of ``[seq, d]`` floats (``layers``: 0 when unknown), or ``None``."""
    if isinstance(hidden, torch.Tensor) and hidden.dim() != 3:
        return f"hidden_states must be [layer + 1, {seq}, d_model], got {tuple(hidden.shape)}"
    entries = hidden_entries(hidden)
    if not entries or any(t.dim() != 2 or int(t.shape[0]) != seq for t in entries):
        return f"hidden_states must be layer + 1 entries of [{seq}, d], got {[tuple(t.shape) for t in entries]}"
    if layers and len(entries) != layers + 1:
        return f"hidden_states must have layer + 1 = {layers + 1} entries, got {len(entries)}"
    if any(not t.dtype.is_floating_point for t in entries):
        return "hidden_states must hold floating-point numbers"
    return None


def value_norms_problem(norms: torch.Tensor, seq: int, layers: int, heads: int) -> str | None:
    """Why ``norms`` is not ``[layer, head, seq]`` non-negative floats (sizes 0 when unknown), or ``None``."""
    want = f"[{layers or 'layer'}, {heads or 'head'}, {seq}]"
    if norms.dim() != 3 or int(norms.shape[2]) != seq:
        return f"value_norms must be {want}, got {tuple(norms.shape)}"
    if (layers and int(norms.shape[0]) != layers) or (heads and int(norms.shape[1]) != heads):
        return f"value_norms must be {want} like the attention, got {tuple(norms.shape)}"
    if not norms.dtype.is_floating_point:
        return "value_norms must hold floating-point numbers"
    return None


def lens_problem(lens: CaptureLens, seq: int, entries: int) -> str | None:
    """Why ``lens`` does not cover ``seq`` positions and ``entries`` entries (0 when unknown), or ``None``."""
    if lens.seq_len != seq:
        return f"the lens covers {lens.seq_len} positions, the sequence has {seq}"
    if entries and lens.num_entries != entries:
        return f"the lens has {lens.num_entries} entries, the hidden states {entries}"
    return None


def layer_fields_problem(
    hidden: HiddenStates | None,
    norms: torch.Tensor | None,
    lens: CaptureLens | None,
    seq: int,
    att_shape: tuple[int, ...],
) -> str | None:
    """The first problem of a capture's optional per-layer fields (``att_shape``: its attention's, or ``()``)."""
    layers, heads = (att_shape[0], att_shape[1]) if att_shape else (0, 0)
    if not layers and norms is not None and norms.dim() == 3:
        layers = int(norms.shape[0])
    problem = None if hidden is None else hidden_states_problem(hidden, seq, layers)
    if problem is None and norms is not None:
        problem = value_norms_problem(norms, seq, layers, heads)
    if problem is None and lens is not None:
        problem = lens_problem(lens, seq, 0 if hidden is None else len(hidden_entries(hidden)))
    return problem


def layer_tensors(hidden: HiddenStates | None, norms: torch.Tensor | None,
                  lens: CaptureLens | None) -> dict[str, torch.Tensor]:
    """The optional per-layer fields by storage name (``hidden_states`` or ``hidden_states.<entry>``, ...)."""
    out: dict[str, torch.Tensor] = {}
    if isinstance(hidden, torch.Tensor):
        out["hidden_states"] = hidden
    elif hidden is not None:
        out.update({f"hidden_states.{i}": t for i, t in enumerate(hidden)})
    if norms is not None:
        out["value_norms"] = norms
    if lens is not None:
        out.update(lens.tensors("lens"))
    return out


def layer_fields_from_tensors(
    tensors: dict[str, torch.Tensor],
) -> tuple[HiddenStates | None, torch.Tensor | None, CaptureLens | None]:
    """Inverse of :func:`layer_tensors` (each field ``None`` when absent, as in files from before them)."""
    hidden: HiddenStates | None = tensors.get("hidden_states")
    if hidden is None:
        parts = sorted((int(k.rsplit(".", 1)[1]), t) for k, t in tensors.items()
                       if k.startswith("hidden_states.") and k.rsplit(".", 1)[1].isdigit())
        if parts:
            if [i for i, _ in parts] != list(range(len(parts))):
                raise ValueError("hidden_states entries are not numbered 0, 1, ... without gaps")
            hidden = tuple(t for _, t in parts)
    return hidden, tensors.get("value_norms"), CaptureLens.from_tensors(tensors, "lens")
