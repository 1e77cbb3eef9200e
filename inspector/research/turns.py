"""Per-turn research columns for a batch of corpus-run turns: reference-reply difficulty and condition effect.

:func:`research_columns` is what a corpus run adds per turn (see :mod:`inspector.runs`): one batched
teacher-forced pass scores each turn's reference reply after its plain prompt (difficulty columns,
:data:`~inspector.research.difficulty.DIFFICULTY_COLUMNS`); with targets, a second batched pass
scores it after the conditioned prompt (:func:`~inspector.research.condition.condition_prompt`),
giving :data:`~inspector.research.difficulty.CONDITION_COLUMNS` and ``attn_condition``, the
continuation's mean attention share on the condition tokens. Without that share (``condition_share=False``,
as a corpus run asks), a turn with both prompts is scored after both in one shared-prefix computation
(:func:`~inspector._capture.forced_pair.score_token_pairs`): the two prompts differ only in the cue,
so their common prefix is computed once; the columns are those of two separate passes up to float rounding.
A turn without a reference reply (a dialogue's last turn) or without a target gets NaN in the
columns it cannot have, and so does a turn whose prompt and reply together exceed the model's
context (a truncated reply's likelihood would not be comparable with the others'): its difficulty
columns when the plain prompt does not fit, its condition columns when the conditioned one does not.

The reply is forced as ``" " + response.strip()``: the prompt ends with the cue ``Agent:`` and the
model's own continuation would start with a space there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from inspector._capture.forced import score
from inspector._capture.forced_pair import score_token_pairs
from inspector.research.condition import (
    CONDITION_SHARE_COLUMN,
    condition_attention_share,
    condition_positions,
    condition_prompt,
)
from inspector.research.difficulty import CONDITION_COLUMNS, DIFFICULTY_COLUMNS, condition_effect, reply_difficulty

if TYPE_CHECKING:  # pragma: no cover
    from inspector._capture.prompt_cache import PromptCache
    from inspector._model import InspectorModel
    from inspector._records.capture import Capture
    from inspector.data.prompts import Prompt

#: Every column :func:`research_columns` returns, in order.
RESEARCH_COLUMNS: tuple[str, ...] = (*DIFFICULTY_COLUMNS, *CONDITION_COLUMNS, CONDITION_SHARE_COLUMN)


def reply_text(response: str | None) -> str | None:
    """The continuation forced for a reference ``response`` (``None`` when there is none)."""
    if response is None or not isinstance(response, str) or not response.strip():
        return None
    return " " + response.strip()


def research_columns(
    model: InspectorModel,
    prompts: Sequence[Prompt],
    responses: Sequence[str | None],
    targets: Sequence[str | None] | None = None,
    *,
    style: str = "paren",
    condition_share: bool = True,
    prompt_cache: PromptCache | None = None,
) -> list[dict[str, float]]:
    """The :data:`RESEARCH_COLUMNS` of each turn (one dict per prompt, in order).

    Args:
        model: the run's model.
        prompts: the turns' plain prompts (:func:`~inspector.data.prompts.build_prompt`).
        responses: each turn's reference reply, ``None`` where there is none.
        targets: the condition stated per turn (e.g. its ``response_emotion``), ``None`` where
            none; ``targets=None`` skips the conditioned pass (condition columns all NaN).
        style: how the target is written (see :data:`~inspector.research.condition.CONDITION_STYLES`).
        condition_share: compute ``attn_condition`` from the conditioned forced pass; ``False`` skips the
            attention there (cheaper) and leaves the column NaN, e.g. for a caller that reads it off its
            own conditioned generation.
        prompt_cache: the KV cache of that generation, one row per prompt in order
            (:func:`~inspector._capture.engine.generate_with_prompt_cache`): a turn whose conditioned
            prompt is the one generated from skips its prefix pass (with ``condition_share=False``).
            Used up by the call.
    """
    n = len(prompts)
    if len(responses) != n or (targets is not None and len(targets) != n):
        raise ValueError(f"give one response (and target) per prompt: {n} prompts, {len(responses)} responses"
                         + ("" if targets is None else f", {len(targets)} targets"))
    nan = float("nan")
    out: list[dict[str, float]] = [dict.fromkeys(RESEARCH_COLUMNS, nan) for _ in range(n)]
    ctx = model.context_length
    replies: dict[int, str] = {}
    reply_len: dict[int, int] = {}
    for i, r in enumerate(responses):
        text = reply_text(r)
        if text is not None:
            reply_len[i] = len(model.tokenizer(text, add_special_tokens=False)["input_ids"])
            if len(prompts[i].token_ids) + reply_len[i] <= ctx:
                replies[i] = text
    todo = sorted(replies)
    if not todo:
        return out
    conditioned = {}
    for i in todo:
        if targets is not None and targets[i] is not None and str(targets[i]).strip():
            cond_prompt = condition_prompt(prompts[i], str(targets[i]), model.tokenizer, style=style)
            if len(cond_prompt.token_ids) + reply_len[i] <= ctx:
                conditioned[i] = cond_prompt
    order = sorted(conditioned)
    by_turn: dict[int, Capture] = {}
    cond: dict[int, Capture] = {}
    if order and not condition_share:
        # no attention wanted: the plain and conditioned prompts differ only in the cue, so score both
        # after one pass over their shared prefix (the corpus run's case; see inspector._capture.forced_pair)
        tok = model.tokenizer
        ids = [[list(tok(t, add_special_tokens=False)["input_ids"]) for t in (prompts[i].text, conditioned[i].text,
                                                                              replies[i])] for i in order]
        first, second = score_token_pairs(model, [x[0] for x in ids], [x[1] for x in ids], [x[2] for x in ids],
                                          first_texts=[prompts[i].text for i in order],
                                          second_texts=[conditioned[i].text for i in order], keep_logits=True,
                                          prompt_cache=prompt_cache, cache_rows=order if prompt_cache else None)
        by_turn.update(zip(order, first, strict=True))
        cond.update(zip(order, second, strict=True))
    rest = [i for i in todo if i not in by_turn]
    if rest:
        plain = score(model, [prompts[i].text for i in rest], [replies[i] for i in rest],
                      keep_logits=any(i in conditioned for i in rest), keep_attention=False)
        assert isinstance(plain, list)
        by_turn.update(zip(rest, plain, strict=True))
    for i in todo:
        out[i].update(reply_difficulty(by_turn[i]).columns())
    if order and not cond:
        scored = score(model, [conditioned[i].text for i in order], [replies[i] for i in order], keep_logits=True,
                       keep_attention=condition_share)
        assert isinstance(scored, list)
        cond.update(zip(order, scored, strict=True))
    for i in order:
        cap = cond[i]
        out[i].update(condition_effect(by_turn[i], cap).columns())
        if not condition_share:
            continue
        share = condition_attention_share(cap.require_attentions(), cap.prompt_len,
                                          condition_positions(conditioned[i].segments))
        out[i][CONDITION_SHARE_COLUMN] = float(share.mean())
    return out
