"""What a loaded capture's values must mean: checks run on every capture file read, after its checksums.

Checksums catch damaged bytes; these catch values that no capture can hold, however they got into
the file (an edit with the checksums recomputed, a bug in another writer):

* metadata: ``meta.generation`` re-validated as :class:`~inspector._capture.settings.GenerationSettings`
  (or a teacher-forced capture's settings), at most ``max_new_tokens`` steps, prompt segments
  (``meta.source["segments"]``) within the prompt;
* token scores (raw and processed): entropy in ``[0, ln vocab]`` and at least the top-k's share of it
  and the min-entropy ``-log p_max``; log-probabilities ``<= 0``, top-k sorted, its probabilities
  summing to at most 1; ranks in ``[1, vocab]`` and agreeing with the stored top-k (a chosen token of
  rank ``r <= k`` has the ``r``-th log-probability; one found at top-k position ``j`` has rank ``<= j + 1``);
  ``vocab`` is the logits' width when they were kept, else ``2**31``;
* processed against raw, where the settings determine it: greedy decoding chose the top token
  (rank 1 under both); sampling chose a token that survived (finite log-probability, within
  ``top_k``), no processed rank above the raw one; with temperature ``T`` alone the processed
  top-k log-probability gaps are the raw ones divided by ``T`` (and entropy moves the way ``T``
  says); with ``T = 1`` and top-k/top-p, the chosen token's log-probability can only grow. Not
  checkable from a file: beam search and repetition penalties (they depend on the whole history),
  and greedy's raw against processed (equal, so a swap changes nothing);
* attention (``attentions`` or ``step_attentions``, any selection or head mean): causal (zero
  for keys after the query) and every row summing to 1 within what float16/bfloat16 storage and the
  model's dtype allow;
* the attention layout agrees with the settings it was captured with (its layers, heads, rows,
  head reduction) and with the model's number of layers where the file shows it (hidden states).

Every check is a handful of vectorised tensor reductions (attention one layer at a time).
"""

from __future__ import annotations

import math

import torch

from inspector._capture.settings import GenerationSettings
from inspector._records.capture import Capture, CaptureError, TokenScores

#: Largest vocabulary assumed when a capture holds no logits to show its real size.
VOCAB_LIMIT = 2**31
#: Attention checked this many elements at a time (whole layers), in float32.
_CHUNK_ELEMENTS = 1 << 24
#: Entries of ``meta.generation`` that are not settings: what the capture added about one sequence.
_GENERATION_EXTRAS = ("prompt_truncated_tokens", "continuation_tokens")
_FORCED_TYPES: dict[str, type | tuple[type, ...]] = {"mode": str, "top_k_logits": int, "keep_logits": bool,
                                                     "keep_attention": bool, "attention_dtype": str}


def _fail(message: str) -> None:
    raise CaptureError(message)


def _tol(x: torch.Tensor, scale: float = 1e-3) -> torch.Tensor:
    """Float32 statistics computed in different orders (entropy in chunks) agree to about ``scale * (1 + |x|)``;
    values computed the same way (a chosen token's and the top-k's log-probabilities) to far less."""
    return scale * (1.0 + x.abs().nan_to_num(posinf=0.0))


def check_meaning(cap: Capture) -> None:
    """``CaptureError`` naming the first value of ``cap`` that no capture can hold (see the module docstring)."""
    settings = generation_settings(cap)
    _check_source(cap)
    vocab = int(cap.logits.shape[1]) if cap.logits is not None else VOCAB_LIMIT
    if cap.logits is not None and cap.token_ids.numel() and int(cap.token_ids.max()) >= vocab:
        _fail(f"token ids beyond the vocabulary of {vocab} (the logits' width)")
    chosen = cap.generated_ids
    for name in ("raw", "processed"):
        _check_scores(name, getattr(cap, name), chosen, vocab)
    if settings is not None:
        _check_decoding(cap, settings)
        _check_layout(cap, settings)
    _check_attention(cap)


# ------------------------------------------------------------------------------------------------ metadata
def generation_settings(cap: Capture) -> GenerationSettings | None:
    """The settings ``cap`` was generated with, validated (``None`` for a teacher-forced or hand-built capture)."""
    gen = cap.meta.generation
    for name in _GENERATION_EXTRAS:
        value = gen.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            _fail(f"meta generation {name!r} must be a non-negative integer, got {value!r}")
    if not gen:
        return None
    if gen.get("mode") == "forced":
        for name, kind in _FORCED_TYPES.items():
            if name in gen and (not isinstance(gen[name], kind) or (kind is int and isinstance(gen[name], bool))):
                _fail(f"meta generation {name!r} has the wrong type ({type(gen[name]).__name__})")
        if gen.get("continuation_tokens", cap.num_steps) != cap.num_steps:
            _fail(f"meta generation says {gen['continuation_tokens']} continuation tokens, the capture has "
                  f"{cap.num_steps}")
        return None
    try:
        settings = GenerationSettings.from_dict({k: v for k, v in gen.items() if k not in _GENERATION_EXTRAS})
    except (ValueError, TypeError) as exc:
        raise CaptureError(f"meta 'generation' does not hold valid generation settings ({exc})") from None
    if cap.num_steps > settings.max_new_tokens:
        _fail(f"{cap.num_steps} generated steps, more than max_new_tokens={settings.max_new_tokens}")
    return settings


def _check_source(cap: Capture) -> None:
    """Prompt segments (``meta.source["segments"]``: ``start``/``end`` token positions) lie within the prompt."""
    segments = cap.meta.source.get("segments")
    if segments is None:
        return
    if not isinstance(segments, list):
        _fail("meta source 'segments' must be a list")
    limit = cap.prompt_len + int(cap.meta.generation.get("prompt_truncated_tokens", 0))
    for seg in segments:
        ends = (seg.get("start"), seg.get("end")) if isinstance(seg, dict) else (None, None)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in ends):
            _fail(f"meta source segment {seg!r} needs integer 'start' and 'end'")
        if not 0 <= ends[0] <= ends[1] <= limit:  # type: ignore[operator]
            _fail(f"meta source segment {ends[0]}..{ends[1]} lies outside the prompt's {limit} tokens")


# -------------------------------------------------------------------------------------------------- scores
def _check_scores(name: str, sc: TokenScores, chosen: torch.Tensor, vocab: int) -> None:
    """Entropy, log-probabilities and ranks of one :class:`TokenScores` (``[step]``/``[step, k]``)."""
    if not sc.num_steps:
        return
    ent, lp, rank = sc.entropy.float(), sc.chosen_logprob.float(), sc.chosen_rank.long()
    top, ids = sc.topk_logprobs.float(), sc.topk_ids.long()
    if not bool((ent >= -_tol(ent)).all() and (ent <= math.log(vocab) + _tol(ent)).all()):
        _fail(f"{name} entropy outside [0, ln {vocab}] (from {float(ent.min())} to {float(ent.max())})")
    if bool((lp > _tol(lp)).any()) or bool((top > _tol(top)).any()):
        _fail(f"{name} log-probabilities above 0 (probabilities above 1)")
    if name == "raw" and not bool(torch.isfinite(lp).all()):
        _fail("raw log-probabilities of chosen tokens must be finite")
    if bool((rank > vocab).any()):
        _fail(f"{name} chosen ranks up to {int(rank.max())}, beyond the vocabulary of {vocab}")
    if not sc.k:
        return
    if bool((top[:, 1:] > top[:, :-1] + _tol(top[:, :-1])).any()):
        _fail(f"{name} top-k log-probabilities are not sorted, most likely first")
    if bool((torch.logsumexp(top, dim=1) > 1e-3).any()):
        _fail(f"{name} top-k probabilities sum to more than 1")
    p = top.exp()
    share = torch.where(p > 0, -p * top, torch.zeros_like(p)).sum(1)
    floor = torch.maximum(share, -top[:, 0])  # H >= the top-k's terms, and H >= -log p_max (min-entropy)
    if bool((ent < floor - _tol(floor)).any()):
        _fail(f"{name} entropy is lower than its top-k probabilities allow")
    hit = ids == chosen[:, None]
    first = torch.where(hit.any(1), hit.float().argmax(1) + 1, torch.full_like(rank, VOCAB_LIMIT))
    found = top.gather(1, (first.clamp(max=sc.k) - 1)[:, None])[:, 0]
    if bool((rank > first).any()) or not bool(((found == lp) | ((found - lp).abs() <= _tol(lp, 1e-5)))[
            first <= sc.k].all()):
        _fail(f"{name} chosen ranks disagree with top-k ids (a chosen token at top-k position j has rank <= j "
              "and the j-th log-probability)")
    inside = rank <= sc.k
    at = top.gather(1, (rank.clamp(1, sc.k) - 1)[:, None])[:, 0]
    same = (at == lp) | ((at - lp).abs() <= _tol(lp, 1e-5))
    below = lp <= top[:, -1] + _tol(lp)
    if not bool(torch.where(inside, same, below).all()):
        _fail(f"{name} chosen log-probabilities disagree with their ranks and the top-k log-probabilities")


def _check_decoding(cap: Capture, s: GenerationSettings) -> None:
    """Processed scores against raw ones, where the settings determine the relation (see the module docstring)."""
    if not cap.num_steps or s.num_beams > 1 or s.repetition_penalty != 1.0:
        return
    raw, proc = cap.raw, cap.processed
    if not s.do_sample:
        if bool((raw.chosen_rank != 1).any()) or bool((proc.chosen_rank != 1).any()):
            _fail("greedy decoding chose a token that is not the most likely one (chosen rank above 1)")
        return
    if not bool(torch.isfinite(proc.chosen_logprob).all()):
        _fail("sampling chose a token its processed scores had removed (log-probability -inf)")
    if s.top_k and bool((proc.chosen_rank > s.top_k).any()):
        _fail(f"sampling with top_k={s.top_k} chose a token of processed rank above {s.top_k}")
    if bool((proc.chosen_rank > raw.chosen_rank).any()):
        _fail("processed ranks above raw ranks: temperature, top-k and top-p keep the order of tokens")
    filters = bool(s.top_k) or s.top_p < 1.0
    if s.temperature == 1.0:
        if bool((proc.chosen_logprob < raw.chosen_logprob - _tol(raw.chosen_logprob)).any()):
            _fail("processed log-probabilities below raw ones: top-k and top-p only remove other tokens")
        return
    same = (proc.topk_ids == raw.topk_ids) & (proc.topk_ids[:, :1] == raw.topk_ids[:, :1])
    same &= proc.topk_logprobs.isfinite()
    want = (raw.topk_logprobs - raw.topk_logprobs[:, :1]) / s.temperature
    got = proc.topk_logprobs - proc.topk_logprobs[:, :1]
    if not bool(((got - want).abs() <= _tol(want, 1e-4))[same].all()):
        _fail(f"processed top-k log-probabilities are not the raw ones at temperature {s.temperature}")
    if not filters:
        sharper = s.temperature < 1.0
        gap = (proc.entropy - raw.entropy) if sharper else (raw.entropy - proc.entropy)
        if bool((gap > _tol(raw.entropy)).any()):
            _fail(f"processed entropy {'above' if sharper else 'below'} raw entropy at temperature {s.temperature}")


# ----------------------------------------------------------------------------------------------- attention
def _check_layout(cap: Capture, s: GenerationSettings) -> None:
    kept = cap.attentions is not None or cap.step_attentions is not None
    if kept != s.keep_attention:
        _fail(f"the capture {'holds' if kept else 'has no'} attention, its settings say keep_attention="
              f"{s.keep_attention}")
    if not kept:
        return
    try:
        want = s.attention_layout
    except ValueError:
        _fail(f"meta generation layers/heads {s.layers!r}/{s.heads!r} are not resolved ids")
    if want != cap.attention_layout:
        _fail(f"the attention layout ({cap.attention_layout.describe()}) is not what the settings captured "
              f"({want.describe()})")
    layers = len(cap.hidden_states) - 1 if cap.hidden_states is not None else 0
    lay = cap.attention_layout
    if layers and lay.layers is None and cap.attentions is not None and cap.num_layers != layers:
        _fail(f"attention holds {cap.num_layers} layers, the hidden states {layers}")
    if layers and lay.layers is not None and max(lay.layers) >= layers:
        _fail(f"the attention layout lists layer {max(lay.layers)}, the model has {layers} layers")


def _row_tolerance(att: torch.Tensor, model_dtype: str) -> float:
    """How far a row of stored attention may sum from 1: rounding in the model's dtype, then in storage."""
    model = getattr(torch, model_dtype, torch.float32)
    units = [torch.finfo(d).eps / 2 for d in (att.dtype, model if isinstance(model, torch.dtype)
                                              and model.is_floating_point else torch.float32)]
    return 4 * sum(units) + 2 * units[0] + 1e-5  # and the sum itself rounded once to the stored dtype


def _check_attention(cap: Capture) -> None:
    """Causal, rows summing to 1, for ``[layer, head, query, key]`` or ``[layer, head, step, key]``."""
    att = cap.attentions if cap.attentions is not None else cap.step_attentions
    if att is None or not att.numel():
        return
    name = "attentions" if cap.attentions is not None else "step_attentions"
    rows, keys = int(att.shape[2]), int(att.shape[3])
    first = 1 + (0 if cap.attentions is not None else cap.prompt_len)  # row i's first key after its query
    after = torch.triu(torch.ones(rows, keys, dtype=att.dtype), first)  # [row, key]: 1 on keys after the query
    tol = _row_tolerance(att, cap.meta.dtype)
    per_layer = max(1, att[0].numel())
    step = max(1, _CHUNK_ELEMENTS // per_layer)
    for start in range(0, int(att.shape[0]), step):
        a = att[start : start + step]
        leak = (a * after).flatten(1).amax(1)  # [layer]; weights are >= 0 (checked before), so > 0 is a leak
        if bool((leak > 0).any()):
            layer = start + int((leak > 0).nonzero()[0])
            _fail(f"{name} of layer entry {layer} is not causal (weight on keys after the query)")
        # summed in the stored dtype (accumulated in float32 by torch, rounded once): 20x faster than dtype=float32
        off = (a.sum(-1).float() - 1.0).abs().flatten(1).amax(1)  # [layer]
        if bool((off > tol).any()):
            layer = start + int((off > tol).nonzero()[0])
            sums = att[layer].sum(-1).float().flatten()
            _fail(f"{name} rows of layer entry {layer} sum to {float(sums[int((sums - 1).abs().argmax())])}, not 1 "
                  f"(within {tol:.1e})")
