"""Stacked steps -> one :class:`~inspector._records.capture.Capture` per returned sequence.

Each returned sequence takes its own rows of the stacked statistics (through
``beam_indices`` in beam search), its unpadded attention block, its stop reason, the
labels of every token it shows, and the provenance of the call.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from inspector._capture.beams import (
    FinalRow,
    beam_attention,
    beam_final_rows,
    beam_rows,
    beam_score,
    beam_stop_reason,
    candidate_positions,
)
from inspector._capture.checks import check_finite_attention, check_finite_steps
from inspector._capture.encode import token_labels
from inspector._capture.steps import REASONS, StackedSteps
from inspector._devices import dtype_name
from inspector._provenance import library_versions, utc_now
from inspector._records.capture import Capture, CaptureMeta, StopReason
from inspector._records.layers import CaptureLens, HiddenStates

if TYPE_CHECKING:  # pragma: no cover
    from inspector._capture.encode import PromptBatch
    from inspector._capture.interventions import Intervener
    from inspector._capture.recorder import Recorder
    from inspector._capture.settings import GenerationSettings
    from inspector._handle import ModelHandle


def assemble(
    model: ModelHandle,
    batch: PromptBatch,
    settings: GenerationSettings,
    sources: list[dict[str, Any]],
    rec: Recorder,
    steps: StackedSteps,
    sequences: torch.Tensor,
    beam_indices: torch.Tensor | None,
    stopper: Any,
    intervener: Intervener | None = None,
    beam_scores: torch.Tensor | None = None,
    length_penalty: float = 1.0,
) -> list[Capture]:
    """One capture per row of ``sequences`` ``[rows_out, p_max + steps]``, prompt-major; ``intervener``: the
    run's interventions, applied to beam search's final passes too and recorded in the metadata. A returned beam's
    ``meta.sequence_score`` is ``beam_scores[j]`` (``[rows_out]``, ``generate``'s ``sequences_scores``) when
    given, else :func:`~inspector._capture.beams.beam_score` of its processed scores under ``length_penalty``."""
    tok = model.tokenizer
    p_max = batch.p_max
    total = steps.steps
    nrs = settings.num_return_sequences
    seq_cpu = sequences.cpu()
    bi = beam_indices.cpu().long() if beam_indices is not None else None  # [rows_out, steps], -1 = unfilled
    final_rows: list[FinalRow] = []
    names: dict[int, str] = {}  # token id -> display string, shared by the captures of the batch
    if bi is not None and (settings.keep_attention or rec.layers.active):
        final_rows = beam_final_rows(model, rec, seq_cpu, bi, batch, intervener)
    views = bi is None and _views_fit(rec, batch, steps, int(seq_cpu.shape[0]))
    logit_views = bi is None and steps.logits is not None and _logit_views_fit(steps, int(seq_cpu.shape[0]))
    versions = library_versions()
    created = utc_now()
    gen_dict = settings.to_dict()
    captures: list[Capture] = []
    for j in range(int(seq_cpu.shape[0])):
        b = j // nrs
        pad = batch.pads[b]
        if bi is not None:
            steps_j, row_at = beam_rows(bi[j])
        else:
            assert steps.finish_step is not None and steps.finish_reason is not None
            fin = int(steps.finish_step[j])
            finished = 0 <= fin < total
            steps_j = fin + 1 if finished else total
            row_at = torch.full((steps_j,), j, dtype=torch.long)
            reason: StopReason = REASONS[int(steps.finish_reason[j])] if finished else "length"
        gen_ids = seq_cpu[j, p_max : p_max + steps_j]
        ids = torch.cat([batch.input_ids[b, pad:], gen_ids])
        plen = p_max - pad
        which = f"prompt {b}" + (f", sequence {j % nrs}" if nrs > 1 else "")
        if bi is not None:
            assert steps.cand_ids is not None
            pos = candidate_positions(steps.cand_ids, row_at, gen_ids, which)
            raw_scores, proc_scores = steps.raw.token_scores(row_at, pos), steps.processed.token_scores(row_at, pos)
            reason = beam_stop_reason(rec, stopper, seq_cpu[j : j + 1, : p_max + steps_j], gen_ids)
        else:
            raw_scores, proc_scores = steps.raw.token_scores(row_at), steps.processed.token_scores(row_at)
        seq_len = plen + steps_j
        att = None
        if settings.keep_attention:
            if bi is not None:
                att = beam_attention(rec, b, pad, plen, steps_j, row_at, final_rows[j].attention)
            else:
                assert rec.buffer is not None
                top = 0 if rec.generated_rows else pad
                nrows = steps_j if rec.generated_rows else seq_len
                att = rec.buffer[j, :, :, top : top + nrows, pad : pad + seq_len].cpu()
                att = att if views else att.clone()
            check_finite_attention(att, 0 if rec.generated_rows else plen, which)
        hidden, norms = None, None
        if rec.layers.active:
            if bi is not None:
                first_row = int(row_at[0]) if steps_j else b * settings.num_beams
                final = final_rows[j]
                hidden, norms = rec.layers.beam_sequence(first_row, pad, row_at, (final.hidden, final.norms))
            else:
                hidden, norms = rec.layers.sequence(j, pad, pad + seq_len, copy=not views)
        lens = compact_lens(model, hidden, ids, settings.lens_k) if settings.lens_k and hidden is not None else None
        if not settings.keep_hidden_states:
            hidden = None
        idx = torch.arange(steps_j)
        check_finite_steps(steps.finite[row_at, idx], which)
        logits = None
        if steps.logits is not None:  # [row, step, vocab]
            if bi is not None:  # a beam moves between rows: gathered step by step (a copy)
                logits = steps.logits[row_at, idx]
            else:
                logits = steps.logits[j, :steps_j]
                logits = logits if logit_views else logits.clone()
        id_list = ids.tolist()
        # each id decoded once for the whole batch
        labels = token_labels(tok, set(id_list) | set(raw_scores.topk_ids.flatten().tolist())
                              | set(proc_scores.topk_ids.flatten().tolist()), names)
        meta = CaptureMeta(
            model=model.name,
            revision=model.revision,
            random_weights=model.random_weights,
            tokenizer=str(getattr(tok, "name_or_path", "")),
            generation={**gen_dict, "prompt_truncated_tokens": batch.truncated[b]},
            device=str(model.device),
            dtype=dtype_name(model.dtype),
            attention_dtype=settings.attention_dtype,
            versions=versions,
            source=sources[b],
            sequence_index=j % nrs,
            sequence_score=None if bi is None else (
                float(beam_scores[j]) if beam_scores is not None else beam_score(proc_scores, length_penalty)),
            created=created,
            model_file=model.model_file,
            interventions={} if intervener is None else dict(intervener.plan.record),
        )
        captures.append(
            Capture(
                token_ids=ids,
                tokens=[labels[i] for i in id_list],
                prompt_len=plen,
                prompt_text=batch.prompts[b],
                generated_text=str(tok.decode(gen_ids.tolist(), skip_special_tokens=True)),
                stop_reason=reason,
                raw=raw_scores,
                processed=proc_scores,
                attentions=None if rec.generated_rows else att,
                logits=logits,
                meta=meta,
                labels=labels,
                hidden_states=hidden,
                value_norms=norms,
                lens=lens,
                step_attentions=att if rec.generated_rows else None,
                attention_layout=rec.layout,
            )
        )
    return captures


def _views_fit(rec: Recorder, batch: PromptBatch, steps: StackedSteps, rows: int) -> bool:
    """Whether the captures may hold views of the recording buffers instead of copies.

    A copy doubles the memory while assembling (buffer plus copies); a view costs nothing, but the
    captures then keep the whole buffer alive, padding and unused rows included. Views are taken
    when the buffers are on the CPU and hold at most 1.5 times what the captures use.
    """
    bufs = [b for b in (rec.buffer, rec.layers.hidden_buf, rec.layers.norm_buf) if isinstance(b, torch.Tensor)]
    if not bufs or any(b.device.type != "cpu" for b in bufs):
        return False
    assert steps.finish_step is not None
    used = 0.0
    for j in range(rows):
        fin = int(steps.finish_step[j])
        n = fin + 1 if 0 <= fin < steps.steps else steps.steps
        seq = batch.p_max - batch.pads[j // max(1, rec.s.num_return_sequences)] + n
        for b in bufs:  # the share of row j's slot this sequence uses
            if b is rec.buffer:  # [row, layer, head, query, key]
                share = (n if rec.generated_rows else seq) / int(b.shape[-2]) * seq / int(b.shape[-1])
            elif b is rec.layers.hidden_buf:  # [row, entry, position, d]
                share = seq / int(b.shape[-2])
            else:  # value norms [row, layer, head, position]
                share = seq / int(b.shape[-1])
            used += share * b.numel() / rows * b.element_size()
    return sum(b.numel() * b.element_size() for b in bufs) <= 1.5 * used


def _logit_views_fit(steps: StackedSteps, rows: int) -> bool:
    """Whether the captures may hold views of the kept logits ``steps.logits`` ``[row, step, vocab]``.

    Those are a view of the recording's buffer (room for every step of every row); as for
    :func:`_views_fit`, views are taken when it holds at most 1.5 times what the captures use, so
    rows that stopped early do not keep a mostly unused buffer alive.
    """
    assert steps.logits is not None and steps.finish_step is not None
    fin = steps.finish_step[:rows]
    used_steps = int(torch.where((fin >= 0) & (fin < steps.steps), fin + 1, steps.steps).sum())
    used = used_steps * int(steps.logits.shape[-1]) * steps.logits.element_size()
    return steps.logits.device.type == "cpu" and steps.logits.untyped_storage().nbytes() <= 1.5 * used


def compact_lens(model: ModelHandle, hidden: HiddenStates, ids: torch.Tensor, k: int) -> CaptureLens:
    """The stored logit lens of one sequence: every entry and position of ``hidden``, top ``k``."""
    from inspector._lens_math import logit_lens, next_token_targets

    res = logit_lens(hidden, model.model, targets=next_token_targets(ids), k=k)
    return CaptureLens(res.topk_ids, res.topk_probs, res.entropy, res.target_rank, res.target_prob)
