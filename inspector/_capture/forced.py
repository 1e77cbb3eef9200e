"""Teacher-forced scoring: a given continuation of a prompt, recorded as a :class:`~inspector._records.capture.Capture`.

Where :func:`inspector._capture.generate` lets the model choose each token, :func:`score` forces a
given continuation (for example the reference reply of a dialogue turn) and records what the model
thought of it, with the same fields as a generated capture:

* ``raw`` (and ``processed``, equal to it: nothing was decoded, so nothing was processed): per
  continuation token, the entropy of the next-token distribution, the log-probability and 1-based
  rank of the FORCED token, and the top-k candidates; row ``i`` comes from the logits at position
  ``prompt_len + i - 1``, the position that predicts continuation token ``i``;
* ``attentions``: ``[layer, head, query, key]`` over prompt + continuation, unpadded;
* ``logits``: ``[step, vocab]`` raw logits, with ``keep_logits=True``;
* ``meta.generation["mode"] == "forced"`` (see :func:`is_forced`). ``stop_reason`` is ``"forced"``:
  the continuation was given, not generated.

A batch is left-padded and scored in one forward pass with the padding masked and position ids
counted from each item's first real token, so every item equals a forward pass over it alone.
Prompt and continuation are tokenized separately and concatenated: the forced tokens are exactly
those the continuation encodes to on its own, as generated tokens follow a prompt (a reply to
``"Agent:"`` should therefore start with a space). :func:`score_tokens` takes token ids instead,
e.g. to re-score a generation's own tokens exactly.
"""

from __future__ import annotations

import datetime as _dt
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from inspector._capture.checks import NonFiniteError
from inspector._capture.encode import check_encodable, token_labels
from inspector._capture.settings import GenerationSettings
from inspector._capture.step_stats import entropy_of_logprobs
from inspector._devices import dtype_name
from inspector._fileformat import source_dicts
from inspector._provenance import library_versions
from inspector._records.capture import Capture, CaptureMeta, TokenScores
from inspector._topk import topk_rows

if TYPE_CHECKING:  # pragma: no cover
    from inspector._handle import ModelHandle

FORCED_MODE = "forced"


def is_forced(capture: Capture) -> bool:
    """Whether ``capture`` scored a given continuation (:func:`score`) rather than generating one."""
    return capture.meta.generation.get("mode") == FORCED_MODE


def _settings(top_k_logits: int, keep_logits: bool, keep_attention: bool, attention_dtype: Any) -> GenerationSettings:
    """The capture engine's validation of the recording options (ValueError on a bad one)."""
    return GenerationSettings(
        top_k_logits=top_k_logits,
        keep_logits=bool(keep_logits),
        keep_attention=bool(keep_attention),
        attention_dtype=attention_dtype,
    )


def _as_batch(value: Any, what: str) -> tuple[list[Any], bool]:
    if isinstance(value, str):
        return [value], True
    if isinstance(value, Sequence) and not isinstance(value, (bytes, bytearray)):
        return list(value), False
    raise ValueError(f"{what} must be a string or a list of strings, got {type(value).__name__}")


def _sources(sources: Sequence[dict[str, Any]] | dict[str, Any] | None, n: int) -> list[dict[str, Any]]:
    return source_dicts(sources, n, "items")


def score(
    model: ModelHandle,
    prompt: str | Sequence[str],
    continuation: str | Sequence[str],
    *,
    top_k_logits: int = 10,
    keep_logits: bool = False,
    keep_attention: bool = True,
    attention_dtype: torch.dtype | str = torch.float16,
    sources: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
) -> Capture | list[Capture]:
    """Score ``continuation`` after ``prompt`` by teacher forcing; see the module docstring.

    Args:
        model: a model from :func:`inspector.load_model`.
        prompt: a string, or a list of strings scored together in one left-padded batch.
        continuation: the text to force after each prompt: a string with a string prompt, else a
            list as long as ``prompt``.
        top_k_logits: candidates kept per continuation token.
        keep_logits: also keep the raw logits ``[step, vocab]`` (needed for exact divergences).
        keep_attention: keep ``[layer, head, query, key]`` attention (default).
        attention_dtype: ``torch.float16`` (default), ``torch.float32`` or ``torch.bfloat16``.
        sources: where each item came from (stored in ``capture.meta.source``).

    Returns:
        A :class:`Capture` for string arguments, else a list in the order given.

    Raises:
        ValueError: mismatched or empty inputs, bad options, or an item longer than the model's
            context, before any model work.
        NonFiniteError: the model produced NaN or inf (names the item and the token).
    """
    prompts, single = _as_batch(prompt, "prompt")
    conts, single_c = _as_batch(continuation, "continuation")
    if single != single_c:
        raise ValueError("give prompt and continuation both as strings or both as lists of the same length")
    if not prompts:
        raise ValueError("no prompts given; pass a string or a non-empty list of strings")
    if len(prompts) != len(conts):
        raise ValueError(f"got {len(prompts)} prompts but {len(conts)} continuations; give one continuation per prompt")
    for i, (p, c) in enumerate(zip(prompts, conts, strict=True)):
        if not isinstance(p, str) or not p.strip():
            raise ValueError(f"prompt {i} is empty; give some text to condition on")
        if not isinstance(c, str) or not c:
            raise ValueError(f"continuation {i} is empty; give the text to score")
        check_encodable(p, f"prompt {i}")
        check_encodable(c, f"continuation {i}")
    _settings(top_k_logits, keep_logits, keep_attention, attention_dtype)
    tok = model.tokenizer
    p_ids = [list(tok(p, add_special_tokens=False)["input_ids"]) for p in prompts]
    c_ids = [list(tok(c, add_special_tokens=False)["input_ids"]) for c in conts]
    caps = score_tokens(
        model, p_ids, c_ids, prompt_texts=prompts, top_k_logits=top_k_logits, keep_logits=keep_logits,
        keep_attention=keep_attention, attention_dtype=attention_dtype, sources=sources,
    )
    return caps[0] if single else caps


def score_tokens(
    model: ModelHandle,
    prompt_ids: Sequence[Sequence[int]],
    continuation_ids: Sequence[Sequence[int]],
    *,
    prompt_texts: Sequence[str] | None = None,
    top_k_logits: int = 10,
    keep_logits: bool = False,
    keep_attention: bool = True,
    attention_dtype: torch.dtype | str = torch.float16,
    sources: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
) -> list[Capture]:
    """Score a batch given as token ids: ``continuation_ids[i]`` forced after ``prompt_ids[i]``.

    ``prompt_texts`` (default: the decoded prompt ids) fill ``Capture.prompt_text``. The other
    arguments, the result and the errors are those of :func:`score`; the result is always a list.
    """
    settings = _settings(top_k_logits, keep_logits, keep_attention, attention_dtype)
    items = _items(model, prompt_ids, continuation_ids)
    texts = _texts(model, items, prompt_texts)
    return _score(model, items, texts, settings, _sources(sources, len(items)))


def _items(
    model: ModelHandle, prompt_ids: Sequence[Sequence[int]], continuation_ids: Sequence[Sequence[int]]
) -> list[tuple[list[int], list[int]]]:
    """The validated ``(prompt ids, continuation ids)`` pairs of :func:`score_tokens` (ValueError on bad input)."""
    n = len(prompt_ids)
    if n == 0:
        raise ValueError("no prompts given; pass a non-empty list of token id lists")
    if len(continuation_ids) != n:
        raise ValueError(f"got {n} prompts but {len(continuation_ids)} continuations; give one per prompt")
    vocab = int(model.model.config.vocab_size)
    ctx = model.context_length
    items: list[tuple[list[int], list[int]]] = []
    for i, (p, c) in enumerate(zip(prompt_ids, continuation_ids, strict=True)):
        if not isinstance(p, Sequence) or not isinstance(c, Sequence) or isinstance(p, str) or isinstance(c, str):
            raise ValueError(f"item {i}: give a list of token id lists (one per item), e.g. [[464, 3290]]")
        p, c = [int(x) for x in p], [int(x) for x in c]
        if not p:
            raise ValueError(f"prompt {i} has no tokens; give some text to condition on")
        if not c:
            raise ValueError(f"continuation {i} has no tokens; give the text to score")
        bad = [x for x in p + c if not 0 <= x < vocab]
        if bad:
            raise ValueError(f"item {i} has token ids outside the vocabulary 0..{vocab - 1}: {bad[:5]}")
        if len(p) + len(c) > ctx:
            raise ValueError(
                f"item {i} has {len(p)} prompt + {len(c)} continuation tokens = {len(p) + len(c)}, more than the "
                f"model's {ctx}-token context; shorten the prompt (drop earlier turns) or the continuation"
            )
        items.append((p, c))
    return items


def _texts(
    model: ModelHandle, items: list[tuple[list[int], list[int]]], prompt_texts: Sequence[str] | None
) -> list[str]:
    """``Capture.prompt_text`` per item: ``prompt_texts``, else the decoded prompt ids."""
    n = len(items)
    tok = model.tokenizer
    texts = [str(t) for t in prompt_texts] if prompt_texts is not None else [str(tok.decode(p)) for p, _ in items]
    if len(texts) != n:
        raise ValueError(f"got {len(texts)} prompt_texts for {n} prompts")
    return texts


@torch.no_grad()
def _forward(
    model: ModelHandle, items: list[tuple[list[int], list[int]]], keep_attention: bool
) -> tuple[Any, list[int]]:
    """One left-padded forward pass; logits only for the last ``max continuation + 1`` positions."""
    lengths = [len(p) + len(c) for p, c in items]
    width = max(lengths)
    c_max = max(len(c) for _, c in items)
    pad_id = model.tokenizer.pad_token_id if model.tokenizer.pad_token_id is not None else 0
    input_ids = torch.full((len(items), width), int(pad_id), dtype=torch.long)
    mask = torch.zeros((len(items), width), dtype=torch.long)
    pads = []
    for row, ((p, c), length) in enumerate(zip(items, lengths, strict=True)):
        pad = width - length
        input_ids[row, pad:] = torch.tensor(p + c, dtype=torch.long)
        mask[row, pad:] = 1
        pads.append(pad)
    # position ids count from each item's first real token, as in a pass over the item alone
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    dev = model.device
    out = model.model(
        input_ids=input_ids.to(dev),
        attention_mask=mask.to(dev),
        position_ids=position_ids.to(dev),
        output_attentions=keep_attention,
        use_cache=False,
        logits_to_keep=c_max + 1,
    )
    return out, pads


def _token_stats(logits: torch.Tensor, forced: torch.Tensor, k: int) -> TokenScores:
    """Statistics of ``logits`` ``[step, vocab]`` for the forced ids ``[step]`` (float32 log-softmax)."""
    logp = torch.log_softmax(logits.float(), dim=-1)
    entropy = entropy_of_logprobs(logp)
    chosen = logp.gather(-1, forced[:, None])
    # ties count in the forced token's favour, as in generated captures
    rank = (logp > chosen).sum(-1) + 1
    topv, topi = topk_rows(logp, k)
    return TokenScores(entropy.cpu(), chosen[:, 0].cpu(), rank.long().cpu(), topi.cpu(), topv.cpu())


def _score(
    model: ModelHandle,
    items: list[tuple[list[int], list[int]]],
    texts: list[str],
    settings: GenerationSettings,
    sources: list[dict[str, Any]],
) -> list[Capture]:
    out, pads = _forward(model, items, settings.keep_attention)
    logits = out.logits  # [batch, c_max + 1, vocab]: the last c_max + 1 positions
    rows = _forced_rows(logits, items)
    atts = None
    if settings.keep_attention:
        atts = [[a[b, :, pad:, pad:] for a in out.attentions] for b, pad in enumerate(pads)]
    return _captures(model, items, texts, settings, sources, rows, atts)


def _forced_rows(logits: torch.Tensor, items: list[tuple[list[int], list[int]]]) -> list[torch.Tensor]:
    """Per item, the rows of :func:`_forward`'s logits ``[batch, c_max + 1, vocab]`` that predict its forced tokens."""
    c_max = int(logits.shape[1]) - 1
    # position -1 of the kept window follows the whole sequence and predicts nothing forced
    return [logits[b, c_max - len(c) : c_max] for b, (_, c) in enumerate(items)]


def _captures(
    model: ModelHandle,
    items: list[tuple[list[int], list[int]]],
    texts: list[str],
    settings: GenerationSettings,
    sources: list[dict[str, Any]],
    rows_per_item: list[torch.Tensor],
    attentions: list[list[torch.Tensor]] | None,
) -> list[Capture]:
    """The captures of scored items, from each item's logits ``[len(continuation), vocab]`` (the rows that
    predict its forced tokens) and, with ``keep_attention``, its per-layer unpadded attentions ``[head, q, k]``."""
    k = min(settings.top_k_logits, int(rows_per_item[0].shape[-1]))
    att_dtype = getattr(torch, settings.attention_dtype)
    tok = model.tokenizer
    gen = {
        "mode": FORCED_MODE,
        "top_k_logits": settings.top_k_logits,
        "keep_logits": settings.keep_logits,
        "keep_attention": settings.keep_attention,
        "attention_dtype": settings.attention_dtype,
        "prompt_truncated_tokens": 0,
    }
    versions = library_versions()
    created = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    captures = []
    for b, ((p, c), rows) in enumerate(zip(items, rows_per_item, strict=True)):
        steps = len(c)
        forced = torch.tensor(c, dtype=torch.long, device=rows.device)
        scores = _token_stats(rows, forced, k)
        if not bool(torch.isfinite(scores.entropy).all()):
            step = int((~torch.isfinite(scores.entropy)).nonzero()[0])
            raise NonFiniteError(f"item {b}: NaN or inf logits at continuation token {step} (final layer output)")
        att = None
        if attentions is not None:
            att = torch.stack(attentions[b]).to(att_dtype).cpu()
            if not bool(torch.isfinite(att).all()):
                layer = int((~torch.isfinite(att)).flatten(1).any(-1).nonzero()[0])
                raise NonFiniteError(f"item {b}: NaN or inf attention weights at layer {layer}")
        ids = p + c
        labels = token_labels(tok, set(ids) | set(scores.topk_ids.flatten().tolist()))
        meta = CaptureMeta(
            model=model.name,
            revision=model.revision,
            random_weights=model.random_weights,
            tokenizer=str(getattr(tok, "name_or_path", "")),
            generation={**gen, "continuation_tokens": steps},
            device=str(model.device),
            dtype=dtype_name(model.dtype),
            attention_dtype=settings.attention_dtype,
            versions=versions,
            source=sources[b],
            created=created,
            model_file=model.model_file,
        )
        captures.append(
            Capture(
                token_ids=torch.tensor(ids, dtype=torch.long),
                tokens=[labels[i] for i in ids],
                prompt_len=len(p),
                prompt_text=texts[b],
                generated_text=str(tok.decode(c, skip_special_tokens=True)),
                stop_reason="forced",
                raw=scores,
                # a copy, not the same tensors: safetensors refuses to store shared memory twice
                processed=TokenScores(*(t.clone() for t in (scores.entropy, scores.chosen_logprob, scores.chosen_rank,
                                                            scores.topk_ids, scores.topk_logprobs))),
                attentions=att,
                logits=rows.float().cpu().clone() if settings.keep_logits else None,
                meta=meta,
                labels=labels,
            )
        )
    return captures
