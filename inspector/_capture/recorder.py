"""Recording one ``generate`` call: hooks, the logits processor, the stopping criterion, per-step statistics.

* attention weights: forward hooks on every attention module (eager attention returns
  ``(output, weights)``), written into one ``[row, layer, head, seq, seq]`` buffer
  (greedy/sampling; a decoding step's rows of every layer in one copy after the forward) or kept
  per step for gathering through ``beam_indices`` (beam search);
* raw logits: a forward hook on the model (``outputs.logits[:, -1]``); when kept, each step's row is
  written once into one ``[row, step, vocab]`` float32 buffer sized for the whole generation
  (:meth:`Recorder.keep_logits`), which the captures then hold views of (no copy per step, no stack);
* hidden states and value norms, when asked for: :class:`~inspector._capture.layers.LayerRecorder`;
* processed scores: a logits processor placed last, which sees what decoding picks from;
* the chosen token and stop strings: a stopping criterion, called right after each selection;
  where rows wrote EOS is read from the sequences at the end (:meth:`Recorder.finish`).

Each step's scores are reduced as they come (greedy decoding: a few steps at a time,
:mod:`~inspector._capture.greedy_stats`) into a :class:`~inspector._capture.steps.StepLog` of entropy,
top-k and chosen-token rank, so memory stays flat however long the generation.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import torch
from torch import nn

from inspector._architectures import find_attention_modules
from inspector._capture.decoding import stop_token_ids
from inspector._capture.greedy_stats import GreedyStats
from inspector._capture.layers import LayerRecorder, check_value_norms_supported
from inspector._capture.step_stats import chosen_from_logits, entropy_and_topk, logprob_and_rank, row_stats
from inspector._capture.steps import EOS, LENGTH, STOP_STRING, StepLog
from inspector._devices import torch_dtype
from inspector._records.capture import CaptureError

if TYPE_CHECKING:  # pragma: no cover
    from inspector._capture.settings import GenerationSettings
    from inspector._handle import ModelHandle


class _Pending(NamedTuple):
    """What :meth:`Recorder.stop` needs of the step :meth:`Recorder.process` saw (sampling).

    ``raw``: the model's logits ``[row, vocab]`` (held by ``generate`` until the step ends anyway) and
    ``raw_lse`` their log-sum-exp ``[row]``; ``proc``: the processed scores ``[row, vocab]``, ``proc_lse``
    theirs.
    """

    raw: torch.Tensor
    raw_lse: torch.Tensor
    proc: torch.Tensor
    proc_lse: torch.Tensor


class Recorder:
    """Hooks, logits processor and stopping criterion that record one ``generate`` call."""

    def __init__(self, model: ModelHandle, settings: GenerationSettings, rows: int, p_max: int, stopper: Any,
                 stats_group: int = 1):
        self.model = model
        self.s = settings
        self.rows = rows
        self.p_max = p_max
        self.k = min(settings.top_k_logits, int(model.model.config.vocab_size))
        self.att_dtype = torch_dtype(settings.attention_dtype)
        self.modules = find_attention_modules(model.model)
        self.num_layers = len(self.modules)
        self.num_heads = model.num_heads
        self.device = model.device
        self.s_max = p_max + settings.max_new_tokens + 1
        self.log = StepLog()
        self.forward_calls = 0
        self.record_logits = True
        self.raw: torch.Tensor | None = None
        self._pending: _Pending | None = None
        self._layer_w: list[torch.Tensor | None] = [None] * self.num_layers
        self.stop_criteria = stopper
        self.on_step: Callable[[int, int], None] | None = None
        self.steps_done = 0
        eos_list = stop_token_ids(model.model, model.tokenizer)  # eos, and the chat template's end of turn
        self.eos_ids = torch.tensor(eos_list, dtype=torch.long, device=self.device)
        # set by finish(): the step each row wrote EOS or completed a stop string (-1: neither), and which
        self.finish_step = torch.full((rows,), -1, dtype=torch.long, device=self.device)
        self.finish_reason = torch.zeros((rows,), dtype=torch.long, device=self.device)
        self._stop_string_step = torch.full((rows,), -1, dtype=torch.long, device=self.device)
        self._no_stop: torch.Tensor | None = None
        self.beam = settings.num_beams > 1
        self.unprocessed = not settings.do_sample and settings.repetition_penalty == 1.0 and not self.beam
        # greedy: statistics of ``stats_group`` steps at a time (see greedy_stats); call finish() at the end
        self.greedy = GreedyStats(self.log, rows, self.k, stats_group) if self.unprocessed else None
        self.cand_k = min(int(model.model.config.vocab_size), 2 * settings.num_beams * max(1, len(eos_list)) + 2)
        self.buffer: torch.Tensor | None = None
        self.prefill: torch.Tensor | None = None  # beam: [row, layer, head, p, p]
        self.rows_by_step: list[torch.Tensor] = []  # beam: [row, layer, head, key] per decode forward
        # what is kept: only these layers get a hook, and each writes only its kept heads (or their mean)
        # and rows, so the buffer is the size of what the captures keep
        self.layout = settings.attention_layout
        self.layer_ids = list(self.layout.layers) if self.layout.layers is not None else list(range(self.num_layers))
        heads = self.layout.heads
        self.head_index: torch.Tensor | slice | None = None
        if heads is not None:
            contiguous = list(heads) == list(range(heads[0], heads[-1] + 1))
            self.head_index = (slice(heads[0], heads[-1] + 1) if contiguous
                               else torch.tensor(heads, dtype=torch.long, device=self.device))
        self.head_mean = self.layout.head_reduce == "mean"
        self.generated_rows = self.layout.rows == "generated"
        self.kept_heads = self.layout.head_axis(self.num_heads)
        self._layer_w = [None] * len(self.layer_ids)
        self._all_heads = self.head_index is None and not self.head_mean  # weights go in as they come
        self._layer_buf: list[torch.Tensor] | None = None  # per kept layer, a view of the buffer
        # a decoding step's rows, one ``[row, head, 1, key]`` per kept layer, written together after the forward
        self._step_w: list[torch.Tensor | None] = [None] * len(self.layer_ids)
        self._step_pending = False
        if settings.keep_attention and not self.beam:
            queries = settings.max_new_tokens if self.generated_rows else self.s_max
            shape = (rows, len(self.layer_ids), self.kept_heads, queries, self.s_max)
            self.buffer = torch.zeros(shape, dtype=self.att_dtype, device=self.device)
            self._layer_buf = list(self.buffer.unbind(1))  # [row, head, query, key] each
        if settings.keep_value_norms:
            check_value_norms_supported(model.model)
        self.layers = LayerRecorder(self.modules, rows, self.s_max, settings.record_hidden_states,
                                    settings.keep_value_norms, settings.hidden_dtype, self.beam, self.device)

    # -- hooks --------------------------------------------------------------------------
    def _attention_hook(self, layer: int, index: int) -> Callable[[nn.Module, Any, Any], None]:
        def hook(module: nn.Module, args: Any, output: Any) -> None:
            weights = output[index] if isinstance(output, (tuple, list)) else None
            if weights is None:
                raise RuntimeError(
                    "attention module returned no weights; the model must use eager attention "
                    "(attn_implementation='eager')"
                )
            if not self.s.keep_attention:
                return
            q, kk = int(weights.shape[-2]), int(weights.shape[-1])
            # Where the queries are comes from the step count, not the key length: a
            # sliding-window cache (Mistral, Gemma 2, ...) hands the layer only its last keys.
            end = self.p_max + self.forward_calls
            first = end - q  # position of the first query
            if self.generated_rows:
                if end <= self.p_max:  # the prefill holds prompt rows only
                    return
                weights = weights[..., max(0, self.p_max - first) :, :]
                first = max(first, self.p_max)
            if not self._all_heads:
                weights = self.kept(weights)
            if self._layer_buf is not None:
                if q == 1 and kk == end:  # a decoding step: copied with the other layers' rows in one go
                    self._step_w[layer] = weights
                    self._step_pending = True
                    return
                top = first - self.p_max if self.generated_rows else first
                rows = int(weights.shape[-2])
                self._layer_buf[layer][:, :, top : top + rows, end - self._keys(kk, end) : end].copy_(weights)
            else:
                self._layer_w[layer] = weights.to(self.att_dtype)

        return hook

    def kept(self, weights: torch.Tensor) -> torch.Tensor:
        """The kept heads of ``[row, head, q, k]`` weights, or their mean ``[row, 1, q, k]`` (in float32)."""
        if self.head_index is not None:
            weights = (weights[:, self.head_index] if isinstance(self.head_index, slice)
                       else weights.index_select(1, self.head_index))
        if self.head_mean:
            n = int(weights.shape[1])
            weights = weights.sum(dim=1, keepdim=True, dtype=torch.float32).div_(n)
        return weights

    def _end(self) -> int:
        """One past the last position of the forward under way."""
        return self.p_max + self.forward_calls

    @staticmethod
    def _keys(kk: int, end: int) -> int:
        """Checks that ``kk`` keys end at position ``end`` (a cache of fixed size would not)."""
        if kk > end:
            raise CaptureError(
                f"attention saw {kk} keys for {end} positions: the model's cache has a fixed size "
                "(static cache), which attention capture does not support"
            )
        return kk

    def _model_hook(self, module: nn.Module, args: Any, kwargs: Any, output: Any) -> None:
        first = self.forward_calls == 0
        end = self.p_max + self.forward_calls
        self.forward_calls += 1
        if self._step_pending:
            self._write_step_rows(end)
        if self.beam and self.s.keep_attention:
            ws = self._layer_w
            if first:
                if not self.generated_rows:
                    self.prefill = torch.stack(ws, dim=1)  # type: ignore[arg-type]
            else:
                w0 = ws[0]
                assert w0 is not None
                row = w0.new_zeros((int(w0.shape[0]), len(self.layer_ids), int(w0.shape[1]), end))
                for i, w in enumerate(ws):
                    assert w is not None
                    # right-aligned at the query's position: sliding-window layers hold only the last keys
                    row[:, i, :, end - self._keys(int(w.shape[-1]), end) :] = w[:, :, -1, :]
                self.rows_by_step.append(row)
            self._layer_w = [None] * len(self.layer_ids)
        if self.layers.active:
            self.layers.after_forward(output, end, first)
        if self.record_logits:
            self.raw = output.logits[:, -1, :]

    def _write_step_rows(self, end: int) -> None:
        """Writes one decoding step's attention rows of the kept layers into the buffer.

        One ``stack`` and one ``copy_`` instead of a slice and a copy per layer: 23 us instead of 120 us
        a step at batch 1 (GPT-2 small). The query sits at position ``end - 1``, its keys at ``0 .. end``.
        Layers with a sliding window (fewer keys) were written by their hook; the others one by one then.
        """
        ws, self._step_w, self._step_pending = self._step_w, [None] * len(self.layer_ids), False
        assert self.buffer is not None and self._layer_buf is not None
        top = end - 1 - self.p_max if self.generated_rows else end - 1
        if all(w is not None for w in ws):
            self.buffer[:, :, :, top : top + 1, :end].copy_(torch.stack(ws, dim=1))  # type: ignore[arg-type]
            return
        for buf, w in zip(self._layer_buf, ws, strict=True):
            if w is not None:
                buf[:, :, top : top + 1, :end].copy_(w)

    @contextlib.contextmanager
    def attached(self) -> Iterator[Recorder]:
        """The hooks on the model for the duration; removed however the block ends."""
        handles = [self.modules[layer][0].register_forward_hook(self._attention_hook(slot, self.modules[layer][1]))
                   for slot, layer in enumerate(self.layer_ids)]
        handles.append(self.model.model.register_forward_hook(self._model_hook, with_kwargs=True))
        if self.layers.hidden:
            handles.append(self.model.model.register_forward_pre_hook(self.layers.model_pre_hook, with_kwargs=True))
        if self.layers.norms:
            handles.extend(
                m.register_forward_pre_hook(self.layers.attention_pre_hook(i, self._end), with_kwargs=True)
                for i, (m, _) in enumerate(self.modules)
            )
        try:
            yield self
        finally:
            for h in handles:
                h.remove()

    # -- per step ---------------------------------------------------------------------
    def process(self, input_ids: torch.Tensor, scores: torch.Tensor) -> torch.Tensor:
        """Called by ``generate`` with the final processed scores; returns them unchanged."""
        if self.raw is None:  # pragma: no cover - defensive
            raise RuntimeError("logits processor called before the model's forward hook")
        raw_out, self.raw = self.raw, None
        log = self.log
        # kept logits: this step's row of the buffer, read by the statistics below (no other copy)
        raw = self.keep_logits(raw_out) if self.s.keep_logits else raw_out.float()
        if self.beam:
            self._process_beam(raw, scores)
            return scores
        if self.greedy is not None:
            # nothing processes greedy scores here (no processor is configured); checked once
            if self.steps_done == 0 and not torch.allclose(scores, raw, rtol=0, atol=0, equal_nan=True):
                raise CaptureError("generate processed greedy scores unexpectedly; please report this")
            self.greedy.add(raw, kept=self.s.keep_logits)
            return scores
        # sampling or a repetition penalty: statistics straight from the logits and from the processed
        # scores (-inf where filtered), a cache-sized chunk at a time (no [row, vocab] temporary)
        raw_lse, ent, topv, topi = row_stats(raw, self.k)
        # the entropy is finite exactly when every raw logit is (NaN, +inf or -inf all make it NaN)
        log.finite.append(torch.isfinite(ent))
        log.raw_entropy.append(ent)
        log.raw_topv.append(topv)
        log.raw_topi.append(topi)
        proc = scores.float()
        proc_lse, pe, pv, pi = row_stats(proc, self.k, masked=True)
        log.proc_entropy.append(pe)
        log.proc_topv.append(pv)
        log.proc_topi.append(pi)
        self._pending = _Pending(raw_out, raw_lse, proc, proc_lse)
        return scores

    def keep_logits(self, raw: torch.Tensor) -> torch.Tensor:
        """Writes one step's raw logits ``[row, vocab]`` into the kept buffer and returns that step's
        ``[row, vocab]`` float32 view of it.

        The buffer (``log.logits``, ``[row, max_new_tokens, vocab]`` float32) is made at the first step,
        sized from the logits themselves (a model's output layer may be wider than ``config.vocab_size``)
        and outside inference mode, so the captures' views of it are ordinary tensors. Each step is
        written once, in place: ``torch.empty`` leaves the pages of steps never taken untouched.
        """
        step, buf = self.steps_done, self.log.logits
        if buf is None:
            with torch.inference_mode(False):
                buf = torch.empty((int(raw.shape[0]), self.s.max_new_tokens, int(raw.shape[-1])),
                                  dtype=torch.float32, device=raw.device)
            self.log.logits = buf
        if step >= int(buf.shape[1]) or tuple(raw.shape) != (int(buf.shape[0]), int(buf.shape[2])):
            raise CaptureError(f"step {step}'s logits {tuple(raw.shape)} do not fit the kept logits buffer "
                               f"{tuple(buf.shape)}; please report this")
        row = buf[:, step]
        row.copy_(raw)
        return row

    def finish(self, sequences: torch.Tensor) -> None:
        """After ``generate`` (``sequences`` ``[row, p_max + step]``): the statistics of greedy steps still
        held, and where each row stopped: its first EOS in ``sequences`` or its completed stop string,
        whichever came first (EOS on a tie). EOS stops a row through ``generate``'s own criterion (the
        same ids, :func:`~inspector._capture.decoding.build_generation_config`), so no step checks it here."""
        if self.greedy is not None:
            self.greedy.flush(release=True)
        if self.beam:
            return
        gen = sequences[:, self.p_max :]
        steps = int(gen.shape[1])
        eos = torch.isin(gen, self.eos_ids)
        first_eos = torch.where(eos.any(1), eos.int().argmax(1), steps)  # argmax: the first of equal maxima
        by_string = torch.where(self._stop_string_step >= 0, self._stop_string_step, steps)
        first = torch.minimum(first_eos, by_string)
        self.finish_step = torch.where(first < steps, first, -1)
        self.finish_reason = torch.where(first >= steps, LENGTH, torch.where(first_eos <= by_string, EOS, STOP_STRING))

    def _process_beam(self, raw: torch.Tensor, scores: torch.Tensor) -> None:
        """Beam search: statistics of every row, and of each row's candidate tokens (its next beams come
        from them; ``beam_indices`` tells later which row each returned sequence took)."""
        log = self.log
        raw_lp = torch.log_softmax(raw, dim=-1)
        ent, topv, topi = entropy_and_topk(raw_lp, self.k)
        log.finite.append(torch.isfinite(ent))
        log.raw_entropy.append(ent)
        log.raw_topv.append(topv)
        log.raw_topi.append(topi)
        # beam scores are already log-probabilities, processed
        proc_lp = torch.log_softmax(scores.float(), dim=-1)
        pe, pv, pi = entropy_and_topk(proc_lp, self.k, masked=True)
        log.proc_entropy.append(pe)
        log.proc_topv.append(pv)
        log.proc_topi.append(pi)
        cand = proc_lp.topk(self.cand_k, dim=-1).indices
        log.cand_ids.append(cand)
        for lp_list, rank_list, logp in ((log.raw_chosen_lp, log.raw_chosen_rank, raw_lp),
                                         (log.proc_chosen_lp, log.proc_chosen_rank, proc_lp)):
            lp, rank = logprob_and_rank(logp, cand)
            lp_list.append(lp)
            rank_list.append(rank)

    def stop(self, input_ids: torch.Tensor, scores: Any, **kwargs: Any) -> torch.Tensor:
        """Called by ``generate`` right after each token selection: stop strings (EOS: see :meth:`finish`)."""
        hit = self.stop_criteria(input_ids, scores) if self.stop_criteria is not None else None
        if self.beam:
            eos_hit = torch.isin(input_ids[:, -1], self.eos_ids)
            hit = eos_hit if hit is None else eos_hit | hit
        else:
            if self._pending is not None:  # not greedy: the chosen token's log-probability and rank
                pending, self._pending = self._pending, None
                last = input_ids[:, -1]
                lp, rank = chosen_from_logits(pending.raw.float(), pending.raw_lse, last)
                plp, prank = chosen_from_logits(pending.proc, pending.proc_lse, last)
                self.log.raw_chosen_lp.append(lp)
                self.log.raw_chosen_rank.append(rank)
                self.log.proc_chosen_lp.append(plp)
                self.log.proc_chosen_rank.append(prank)
            if hit is not None:
                self._stop_string_step.masked_fill_(hit & (self._stop_string_step < 0), self.steps_done)
        self.steps_done += 1
        if self.on_step is not None:
            self.on_step(self.steps_done, self.s.max_new_tokens)
        if hit is None:
            if self._no_stop is None:
                self._no_stop = torch.zeros(int(input_ids.shape[0]), dtype=torch.bool, device=input_ids.device)
            hit = self._no_stop
        return hit

    def hf_objects(self) -> tuple[Any, Any]:
        """The ``LogitsProcessor`` and ``StoppingCriteria`` that call :meth:`process` and :meth:`stop`."""
        from transformers import LogitsProcessor, StoppingCriteria

        rec = self

        class _Process(LogitsProcessor):
            def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
                return rec.process(input_ids, scores)  # type: ignore[return-value]

        class _Stop(StoppingCriteria):
            def __call__(
                self, input_ids: torch.LongTensor, scores: torch.FloatTensor, **kwargs: Any
            ) -> torch.BoolTensor:
                return rec.stop(input_ids, scores, **kwargs)  # type: ignore[return-value]

        return _Process(), _Stop()
