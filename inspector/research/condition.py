"""Target-conditioned prompts: the reply's emotion or act stated in the cue, with its own token segment.

:func:`condition_prompt` turns a dialogue prompt (:func:`inspector.data.prompts.build_prompt`)
ending in the cue ``Agent:`` into one that states a target before the reply, ``Agent (happiness):``
(style ``"paren"``) or ``Agent [inform]:`` (style ``"bracket"``). The inserted text's tokens form a
segment of role ``"condition"`` (same turn and speaker as the cue); every other token keeps the
provenance it had. As in prompts.py, a token belongs to the piece holding its last character, so a
token straddling the insertion's end (GPT-2 writes ``"):"`` as one token) counts as cue.

A prompt in the tokenizer's chat template (``prompt.template == "chat"``) states the target at the
end of the **last user message** (the turn being answered), after its content and before the
template's end-of-message tokens: ``"...got ?\n\n(The reply's emotion: happiness)<|im_end|>"``
(style ``"paren"``; ``"bracket"`` writes ``[...]``). The default system message stays as the
template writes it. The condition segment has the cue's turn and speaker in both forms, so the
answered turn's own shares do not change with the condition.

:func:`condition_attention_share` is where the continuation looked: for every layer and head, the
mean over the continuation's query rows (positions ``prompt_len .. seq_len - 1``, the rows
:mod:`inspector._metrics` uses for its shares) of the attention summed over the condition's keys.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import torch

from inspector.data.chat import CHAT
from inspector.data.prompts import Prompt, Segment, segments_from_source

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture

CONDITION_ROLE = "condition"
#: How the target is written into the cue (inserted before the cue's final colon).
CONDITION_STYLES: dict[str, str] = {"paren": " ({target})", "bracket": " [{target}]"}
#: How a chat prompt states the target, per style: appended to the last user message.
CHAT_CONDITION_STYLES: dict[str, str] = {"paren": "\n\n(The reply's {what}: {target})",
                                         "bracket": "\n\n[The reply's {what}: {target}]"}
#: Summary column: :func:`condition_attention_share` averaged over layers and heads.
CONDITION_SHARE_COLUMN = "attn_condition"


def _offsets(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:  # slow tokenizers have no offsets
        raise ValueError("conditioned prompts need a fast tokenizer (character offsets)") from exc
    return list(enc["input_ids"]), [(int(s), int(e)) for s, e in enc["offset_mapping"]]


def _owner_char(start: int, end: int) -> int:
    return end - 1 if end > start else start


def condition_prompt(prompt: Prompt, target: str, tokenizer: Any, *, style: str = "paren",
                     what: str = "label") -> Prompt:
    """``prompt`` with ``target`` stated in its final cue (a chat prompt: its last user message), re-tokenized,
    with a ``"condition"`` segment.

    Args:
        prompt: a prompt whose last segment is the cue (``role == "cue"``), as built by
            :func:`~inspector.data.prompts.build_prompt`.
        target: what to state, e.g. ``"happiness"`` or ``"inform"`` (one line, not empty).
        tokenizer: the fast tokenizer the prompt was built with.
        style: a key of :data:`CONDITION_STYLES` (and :data:`CHAT_CONDITION_STYLES`).
        what: what the target is (``"emotion"``, ``"act"``), named in a chat prompt only.

    Returns:
        A :class:`Prompt` whose ``extra`` records ``condition`` and ``condition_style``.
    """
    if style not in CONDITION_STYLES:
        raise ValueError(f"style must be one of {sorted(CONDITION_STYLES)}, got {style!r}")
    if not isinstance(target, str) or not target.strip() or "\n" in target:
        raise ValueError(f"target must be a non-empty single-line string, got {target!r}")
    if not isinstance(what, str) or not what.strip() or "\n" in what:
        raise ValueError(f"what must be a non-empty single-line string, got {what!r}")
    if not prompt.segments or prompt.segments[-1].role != "cue":
        raise ValueError("the prompt does not end with a reply cue (its last segment's role is not 'cue')")
    if any(s.role == CONDITION_ROLE for s in prompt.segments):
        raise ValueError("the prompt is already conditioned")
    ids, offsets = _offsets(tokenizer, prompt.text)
    if tuple(ids) != tuple(prompt.token_ids):
        raise ValueError("the tokenizer does not give the prompt's token ids; pass the one it was built with")
    cue_seg = prompt.segments[-1]
    if prompt.template == CHAT:
        last_text = [seg for seg in prompt.segments if seg.role == "text"]
        if not last_text:
            raise ValueError("the chat prompt has no message text to state the target in")
        at = offsets[last_text[-1].end - 1][1]
        inserted = CHAT_CONDITION_STYLES[style].format(what=what.strip(), target=target.strip())
    else:
        cue_start = offsets[cue_seg.start][0]
        cue = prompt.text[cue_start:]
        stripped = cue.rstrip()
        at = cue_start + (len(stripped) - 1 if stripped.endswith(":") else len(cue))
        inserted = CONDITION_STYLES[style].format(target=target.strip())
    text = prompt.text[:at] + inserted + prompt.text[at:]
    old_owner = {}  # character of the plain prompt -> its token
    for i, (s, e) in enumerate(offsets):
        for ch in range(s, e):
            old_owner[ch] = i
    token_segment = [next(seg for seg in prompt.segments if seg.start <= i < seg.end) for i in range(len(ids))]
    new_ids, new_offsets = _offsets(tokenizer, text)
    keys: list[tuple[int | None, str | None, str]] = []
    for s, e in new_offsets:
        ch = _owner_char(s, e)
        if at <= ch < at + len(inserted):
            keys.append((cue_seg.turn, cue_seg.speaker, CONDITION_ROLE))
            continue
        old = ch if ch < at else ch - len(inserted)  # the same character in the plain prompt
        seg = token_segment[old_owner[old]] if old in old_owner else cue_seg
        keys.append((seg.turn, seg.speaker, seg.role))
    segments: list[Segment] = []
    for i, key in enumerate(keys):
        if segments and (segments[-1].turn, segments[-1].speaker, segments[-1].role) == key:
            segments[-1] = replace(segments[-1], end=i + 1)
        else:
            segments.append(Segment(i, i + 1, *key))
    extra = {**prompt.extra, "condition": target.strip(), "condition_style": style}
    return replace(prompt, text=text, token_ids=tuple(new_ids), segments=tuple(segments), extra=extra)


def condition_positions(segments: Sequence[Segment]) -> list[int]:
    """Token positions of the ``"condition"`` segments (empty for an unconditioned prompt)."""
    return [i for s in segments if s.role == CONDITION_ROLE for i in range(s.start, s.end)]


def condition_attention_share(attentions: torch.Tensor, prompt_len: int, positions: Sequence[int]) -> torch.Tensor:
    """Attention the continuation paid to the condition tokens, per layer and head.

    Args:
        attentions: ``[layer, head, query, key]`` over prompt + continuation.
        prompt_len: number of prompt tokens; query rows ``prompt_len ..`` are the continuation's.
        positions: key positions of the condition (prompt tokens).

    Returns:
        ``[layer, head]`` float64: the mean over continuation rows of the summed attention on
        ``positions`` (0 when ``positions`` is empty).
    """
    if attentions.dim() != 4 or attentions.shape[2] != attentions.shape[3]:
        raise ValueError(f"attentions must be [layer, head, seq, seq], got {tuple(attentions.shape)}")
    seq = int(attentions.shape[-1])
    if not 0 < prompt_len < seq:
        raise ValueError(f"prompt_len={prompt_len} must be in 1..{seq - 1} (the continuation needs a row)")
    bad = [p for p in positions if not 0 <= p < prompt_len]
    if bad:
        raise ValueError(f"condition positions {bad[:5]} are not prompt positions 0..{prompt_len - 1}")
    rows = attentions[:, :, prompt_len:, :].double()  # [layer, head, step, key]
    idx = torch.tensor(sorted(set(positions)), dtype=torch.long)
    return rows.index_select(-1, idx).sum(-1).mean(-1)


def capture_condition_share(capture: Capture) -> torch.Tensor:
    """:func:`condition_attention_share` of a capture whose ``meta.source`` holds the prompt segments."""
    positions = condition_positions(segments_from_source(capture.meta.source))
    if not positions:
        raise ValueError("the capture's prompt has no condition segment (meta.source['segments'])")
    return condition_attention_share(capture.require_attentions(), capture.prompt_len, positions)
