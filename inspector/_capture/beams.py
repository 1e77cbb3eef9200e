"""Beam search: following each returned beam back through ``beam_indices`` to its scores and attention.

In beam search the running rows are reordered at every step, so the row that produced a
returned sequence's token ``i`` is ``beam_indices[seq, i]``. Its statistics are gathered
from that row's candidates, its attention row from that row's next decoding forward.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

from inspector._records.capture import CaptureError, StopReason, TokenScores

if TYPE_CHECKING:  # pragma: no cover
    from inspector._capture.encode import PromptBatch
    from inspector._capture.interventions import Intervener
    from inspector._capture.recorder import Recorder
    from inspector._handle import ModelHandle


def beam_rows(beam_indices_row: torch.Tensor) -> tuple[int, torch.Tensor]:
    """``(steps, row_at)`` of one returned sequence from its ``beam_indices`` row (``-1`` = unfilled)."""
    steps = int((beam_indices_row >= 0).sum())
    return steps, beam_indices_row[:steps]


def beam_score(processed: TokenScores, length_penalty: float) -> float:
    """A returned beam's score as ``generate`` ranks it (its ``sequences_scores``): the sum of the chosen tokens'
    processed log-probabilities over ``steps ** length_penalty``. Exact where the processed log-probabilities
    are normalised (beam search without a repetition penalty; the engine takes ``generate``'s own scores else)."""
    steps = processed.num_steps
    return float(processed.chosen_logprob.double().sum()) / steps**length_penalty if steps else 0.0


def candidate_positions(
    cand_ids: torch.Tensor, row_at: torch.Tensor, gen_ids: torch.Tensor, which: str
) -> torch.Tensor:
    """``[step]`` position of each generated token among its row's candidates ``cand_ids`` ``[row, step, c]``."""
    idx = torch.arange(int(row_at.shape[0]))
    cand = cand_ids[row_at, idx]  # [step, c]
    pos = (cand == gen_ids[:, None]).int().argmax(-1)
    if not bool((cand[idx, pos] == gen_ids).all()):  # pragma: no cover - would be a transformers change
        raise CaptureError(f"{which}: a beam token was not among the recorded candidates")
    return pos


def beam_attention(
    rec: Recorder, b: int, pad: int, plen: int, steps: int, row_at: torch.Tensor, final_row: torch.Tensor | None
) -> torch.Tensor:
    """The kept ``[layer, head, query, key]`` of a returned beam of prompt ``b``, gathered through ``beam_indices``.

    With generated rows only (``rec.generated_rows``) the query axis holds the ``steps`` generated rows.
    """
    seq = plen + steps
    p_max = rec.p_max
    top = plen if rec.generated_rows else 0  # the query axis starts at this position
    att = torch.zeros((len(rec.layer_ids), rec.kept_heads, seq - top, seq), dtype=rec.att_dtype)
    if not rec.generated_rows:
        assert rec.prefill is not None
        att[:, :, :plen, :plen] = rec.prefill[int(row_at[0]) if steps else b * rec.s.num_beams, :, :, pad:, pad:].cpu()
    for i in range(steps - 1):  # token i's row comes from forward i+1, on the row that produced token i+1
        r = int(row_at[i + 1])
        att[:, :, plen + i - top, : plen + i + 1] = rec.rows_by_step[i][r, :, :, pad : p_max + i + 1].cpu()
    if steps:
        assert final_row is not None  # the final forward keeps attention whenever attention is kept
        att[:, :, seq - 1 - top, :] = final_row
    return att


@dataclass(frozen=True)
class FinalRow:
    """What a returned beam's last token needs from one full forward.

    Attributes:
        attention: ``[layer, head, key]`` in the attention dtype, or ``None`` when not kept.
        hidden: ``layer + 1`` states ``[d_i]`` (empty when not kept).
        norms: ``[layer, head]`` value norms, or ``None`` when not kept.
    """

    attention: torch.Tensor | None
    hidden: list[torch.Tensor]
    norms: torch.Tensor | None


def beam_final_rows(
    model: ModelHandle, rec: Recorder, seq_cpu: torch.Tensor, bi: torch.Tensor, batch: PromptBatch,
    intervener: Intervener | None = None,
) -> list[FinalRow]:
    """Attention row, hidden states and value norms of each returned beam's last token (one forward per beam,
    under the run's interventions when there are any)."""
    out = []
    nrs = rec.s.num_return_sequences
    layers = rec.layers
    for j in range(int(seq_cpu.shape[0])):
        b = j // nrs
        pad = batch.pads[b]
        steps = int((bi[j] >= 0).sum())
        ids = seq_cpu[j, pad : batch.p_max + steps][None].to(model.device)
        grabbed: dict[int, torch.Tensor] = {}
        handles = layers.final_forward_hooks(grabbed) if layers.norms else []
        around = contextlib.nullcontext() if intervener is None else intervener.single_row(b * rec.s.num_beams)
        try:
            with around:
                res = model.model(input_ids=ids, output_attentions=rec.s.keep_attention,
                               output_hidden_states=layers.hidden, use_cache=False, logits_to_keep=1)
        finally:
            for h in handles:
                h.remove()
        att = (torch.stack([rec.kept(res.attentions[i][:, :, -1:, :])[0, :, 0] for i in rec.layer_ids])
               .to(rec.att_dtype).cpu() if rec.s.keep_attention else None)
        hidden = [h[0, -1].to(layers.hidden_dtype) for h in res.hidden_states] if layers.hidden else []
        out.append(FinalRow(att, hidden, layers.final_norms(grabbed) if layers.norms else None))
    return out


def beam_stop_reason(rec: Recorder, stopper: Any, sequence: torch.Tensor, gen_ids: torch.Tensor) -> StopReason:
    """Why a returned beam ended: ``"eos"``, ``"stop_string"`` (``sequence``: ``[1, len]``) or ``"length"``."""
    last = int(gen_ids[-1]) if gen_ids.numel() else -1
    if last in rec.eos_ids.tolist():
        return "eos"
    if stopper is not None and bool(stopper(sequence.to(rec.device), ())[0]):
        return "stop_string"
    return "length"
