"""Teacher-forced scoring of the same continuations after two prompts that share a prefix, with one prefix pass.

:func:`score_token_pairs` gives what :func:`inspector._capture.forced.score_tokens` (with
``keep_attention=False``) gives for each of two prompt lists, but computes each item's shared prefix
once: a corpus run's plain and conditioned prompts differ only in the cue (``Agent:`` becomes
``Agent (happiness):``), so scoring the reference reply after both costs little more than one pass.

Per item the prefix is the longest common prefix of the two prompts' token ids, shortened so that
each prompt keeps at least one token of its own (the logits predicting the first forced token come
from the prompt's last token, which must be in the second pass). The passes:

1. one left-padded pass over the prefixes with the KV cache on (position ids count from each item's
   first real token, as in :mod:`inspector._capture.forced`);
2. for each of the two prompt lists, one right-padded pass over ``[own suffix + continuation]``
   reading that cache, with the attention mask ``[prefix mask, segment mask]`` and position ids that
   continue from each item's real prefix length; the cache is cropped back to the prefixes after the
   first of them.

Items whose prompts share no prefix are scored alone by :func:`~inspector._capture.forced.score_tokens`'s
single pass. Attention is not recorded on this path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from inspector._capture.forced import _captures, _forced_rows, _forward, _items, _settings, _sources, _texts
from inspector._compat import cache_kwarg
from inspector._records.capture import Capture

if TYPE_CHECKING:  # pragma: no cover
    from inspector._capture.prompt_cache import PromptCache
    from inspector._handle import ModelHandle

__all__ = ["score_token_pairs", "shared_prefix_lengths"]


def shared_prefix_lengths(first: Sequence[Sequence[int]], second: Sequence[Sequence[int]]) -> list[int]:
    """Per item, the prefix computed once: the common prefix, leaving each prompt at least one own token."""
    out = []
    for a, b in zip(first, second, strict=True):
        n = 0
        limit = min(len(a), len(b)) - 1
        while n < limit and a[n] == b[n]:
            n += 1
        out.append(max(n, 0))
    return out


def _pad_id(model: ModelHandle) -> int:
    pad = model.tokenizer.pad_token_id
    return int(pad) if pad is not None else 0


@torch.no_grad()
def _prefix_cache(model: ModelHandle, prefixes: list[list[int]]) -> tuple[Any, torch.Tensor]:
    """(the KV cache of the left-padded prefixes, their attention mask ``[batch, width]``)."""
    width = max(len(p) for p in prefixes)
    input_ids = torch.full((len(prefixes), width), _pad_id(model), dtype=torch.long)
    mask = torch.zeros((len(prefixes), width), dtype=torch.long)
    for row, p in enumerate(prefixes):
        input_ids[row, width - len(p) :] = torch.tensor(p, dtype=torch.long)
        mask[row, width - len(p) :] = 1
    position_ids = (mask.cumsum(-1) - 1).clamp(min=0)
    dev = model.device
    out = model.model(input_ids=input_ids.to(dev), attention_mask=mask.to(dev), position_ids=position_ids.to(dev),
                      use_cache=True, logits_to_keep=1)
    from inspector._compat import generated_cache  # imports transformers

    cache = generated_cache(out)
    if cache is None or not hasattr(cache, "crop"):
        raise ValueError(f"{type(model.model).__name__} returned no croppable KV cache; score the prompts one by one "
                         "with inspector._capture.forced.score_tokens")
    return cache, mask


@torch.no_grad()
def _segment_rows(
    model: ModelHandle, cache: Any, prefix_mask: torch.Tensor, prefix_lens: list[int],
    segments: list[tuple[list[int], list[int]]],
) -> list[torch.Tensor]:
    """Per item, the logits ``[len(continuation), vocab]`` predicting its forced tokens after ``prefix + suffix``.

    ``segments`` holds ``(suffix, continuation)`` per item. The cache is left as it was (cropped back).
    """
    lengths = [len(s) + len(c) for s, c in segments]
    width = max(lengths)
    input_ids = torch.full((len(segments), width), _pad_id(model), dtype=torch.long)
    seg_mask = torch.zeros((len(segments), width), dtype=torch.long)
    for row, ((s, c), length) in enumerate(zip(segments, lengths, strict=True)):
        input_ids[row, :length] = torch.tensor(s + c, dtype=torch.long)
        seg_mask[row, :length] = 1
    mask = torch.cat([prefix_mask, seg_mask], dim=1)
    # right padding: the pads come after every real token, so no real query sees them; their positions
    # are clamped only to stay inside the position table
    position_ids = (torch.tensor(prefix_lens)[:, None] + torch.arange(width)[None, :]).clamp(
        max=model.context_length - 1)
    first = min(len(s) for s, _ in segments) - 1  # the first row that predicts a forced token
    dev = model.device
    hf = model.model
    # The output layer sees only the positions that predict a forced token: the right padding and the
    # suffixes' other positions (more than half of a corpus batch's window) skip the vocabulary projection.
    starts = [len(s) - 1 - first for s, _ in segments]  # in the kept window, positions first .. width - 1
    row_ids = torch.cat([torch.full((len(c),), b, dtype=torch.long) for b, (_, c) in enumerate(segments)]).to(dev)
    pos_ids = torch.cat([torch.arange(a, a + len(c)) for a, (_, c) in zip(starts, segments, strict=True)]).to(dev)
    gathered: list[bool] = []

    def gather(hidden: torch.Tensor) -> torch.Tensor:
        gathered.append(True)
        return hidden[row_ids, pos_ids][None]  # [1, forced tokens, d_model]

    from inspector._compat import output_layer_input  # imports transformers

    with output_layer_input(hf, gather):
        out = hf(input_ids=input_ids.to(dev), attention_mask=mask.to(dev), position_ids=position_ids.to(dev),
                 use_cache=True, logits_to_keep=width - first, **{cache_kwarg(hf): cache})
    cache.crop(-width)
    logits = out.logits
    if gathered == [True]:  # [1, forced tokens, vocab], item after item
        return list(logits[0].split([len(c) for _, c in segments]))
    # the output layer was not called as a module: [batch, width - first, vocab]
    return [logits[b, a : a + len(c)] for b, (a, (_, c)) in enumerate(zip(starts, segments, strict=True))]


def _cached_items(
    cache: PromptCache | None, cache_rows: Sequence[int] | None, second: list[tuple[list[int], list[int]]],
    prefix: list[int],
) -> list[int]:
    """The items whose cache row holds exactly their second prompt and who share a prefix with the first."""
    if cache is None:
        return []
    if cache_rows is None or len(cache_rows) != len(second):
        raise ValueError(f"give one cache row per item with prompt_cache: {len(second)} items, "
                         f"{None if cache_rows is None else len(cache_rows)} cache rows")
    return [i for i, (r, (p, _)) in enumerate(zip(cache_rows, second, strict=True))
            if prefix[i] > 0 and cache.prompt_ids(r) == p]


@torch.no_grad()
def _after_prompt_cache(
    model: ModelHandle, cache: PromptCache, rows: list[int], first: list[tuple[list[int], list[int]]],
    second: list[tuple[list[int], list[int]]], prefix: list[int],
) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
    """Per item and prompt list, the logits predicting its forced tokens, reusing the generation's prompt cache.

    The prompts are left-padded to the cache's width, so each ends at its last position. The cache is
    cropped to ``width - own``, where ``own`` is the largest number of second-prompt tokens after an
    item's shared prefix: every item then keeps only tokens of its shared prefix (at most), and each
    prompt list's pass feeds the rest of its prompt and the continuation, as with a prefix pass.
    """
    own = max(len(p) - n for (p, _), n in zip(second, prefix, strict=True))
    kv, mask, kept = cache.take(rows, cache.width - own)
    out = tuple(
        _segment_rows(model, kv, mask, kept, [(p[k:], c) for (p, c), k in zip(items, kept, strict=True)])
        for items in (first, second)
    )
    return out[0], out[1]


def score_token_pairs(
    model: ModelHandle,
    first_prompt_ids: Sequence[Sequence[int]],
    second_prompt_ids: Sequence[Sequence[int]],
    continuation_ids: Sequence[Sequence[int]],
    *,
    first_texts: Sequence[str] | None = None,
    second_texts: Sequence[str] | None = None,
    top_k_logits: int = 10,
    keep_logits: bool = False,
    keep_attention: bool = False,
    sources: Sequence[dict[str, Any]] | dict[str, Any] | None = None,
    prompt_cache: PromptCache | None = None,
    cache_rows: Sequence[int] | None = None,
) -> tuple[list[Capture], list[Capture]]:
    """Score ``continuation_ids[i]`` after ``first_prompt_ids[i]`` and after ``second_prompt_ids[i]``.

    ``prompt_cache`` (with ``cache_rows[i]``, the cache row of item ``i``): the KV cache a batched
    generation from the second prompts left (:func:`inspector._capture.engine.generate_with_prompt_cache`).
    An item whose cache row holds exactly its second prompt takes its shared prefix from there instead
    of a prefix pass; the cache is used up (cropped and its rows selected in place). Other items are
    scored as without it.

    Returns:
        ``(first captures, second captures)``, each what
        ``score_tokens(model, prompt_ids, continuation_ids, keep_attention=False, ...)`` returns for that
        prompt list (up to float rounding: the passes are split differently).

    Raises:
        ValueError: ``keep_attention=True`` (not supported here: use ``score_tokens``), mismatched
            lengths, and every error of :func:`~inspector._capture.forced.score_tokens`, before any
            model work.
        NonFiniteError: the model produced NaN or inf.
    """
    if keep_attention:
        raise ValueError("score_token_pairs records no attention; use inspector._capture.forced.score_tokens "
                         "with keep_attention=True for each prompt list instead")
    if len(first_prompt_ids) != len(second_prompt_ids):
        raise ValueError(f"got {len(first_prompt_ids)} first prompts but {len(second_prompt_ids)} second prompts; "
                         "give two prompts per item")
    settings = _settings(top_k_logits, keep_logits, False, torch.float16)
    first = _items(model, first_prompt_ids, continuation_ids)
    second = _items(model, second_prompt_ids, continuation_ids)
    texts = (_texts(model, first, first_texts), _texts(model, second, second_texts))
    srcs = _sources(sources, len(first))
    prefix = shared_prefix_lengths([p for p, _ in first], [p for p, _ in second])
    rows: tuple[list[Any], list[Any]] = ([None] * len(first), [None] * len(first))
    cached = _cached_items(prompt_cache, cache_rows, second, prefix)
    if cached:
        assert prompt_cache is not None and cache_rows is not None
        for out, got in zip(rows, _after_prompt_cache(model, prompt_cache, [cache_rows[i] for i in cached],
                                                      [first[i] for i in cached], [second[i] for i in cached],
                                                      [prefix[i] for i in cached]), strict=True):
            for i, r in zip(cached, got, strict=True):
                out[i] = r
    shared = [i for i, n in enumerate(prefix) if n > 0 and rows[0][i] is None]
    alone = [i for i, n in enumerate(prefix) if n == 0]
    if shared:
        cache, pmask = _prefix_cache(model, [first[i][0][: prefix[i]] for i in shared])
        lens = [prefix[i] for i in shared]
        for out, items in zip(rows, (first, second), strict=True):
            segs = [(items[i][0][prefix[i] :], items[i][1]) for i in shared]
            for i, r in zip(shared, _segment_rows(model, cache, pmask, lens, segs), strict=True):
                out[i] = r
    if alone:
        # no shared prefix to reuse: one ordinary left-padded pass per prompt list, as score_tokens does
        for out, items in zip(rows, (first, second), strict=True):
            sub = [items[i] for i in alone]
            for i, r in zip(alone, _forced_rows(_forward(model, sub, False)[0].logits, sub), strict=True):
                out[i] = r
    return (
        _captures(model, first, texts[0], settings, srcs, rows[0], None),
        _captures(model, second, texts[1], settings, srcs, rows[1], None),
    )
