"""Prompts -> model input: checking what was passed, tokenizing, the context budget, the left-padded batch."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch

if TYPE_CHECKING:  # pragma: no cover
    from inspector._capture.settings import GenerationSettings
    from inspector._handle import ModelHandle

_EXPECTED = "prompts must be a str or a list of str"


def check_prompts(prompts: Any) -> tuple[bool, list[str]]:
    """``(single, prompt_list)`` for a string or a sequence of strings; ``ValueError`` otherwise.

    Refused, each with a message naming the prompt: anything but ``str`` or a list/tuple of
    ``str`` (a dict, bytes, numbers, ``None``), an empty list, empty or blank prompts, and text
    that cannot be encoded (unpaired surrogates, e.g. undecodable bytes from a command line).
    """
    if isinstance(prompts, str):
        single, prompt_list = True, [prompts]
    elif isinstance(prompts, Sequence) and not isinstance(prompts, (bytes, bytearray, memoryview)):
        single, prompt_list = False, list(prompts)
    else:
        raise ValueError(f"{_EXPECTED}, got {type(prompts).__name__}")
    if not prompt_list:
        raise ValueError("no prompts given; pass a string or a non-empty list of strings")
    for i, prompt in enumerate(prompt_list):
        _check_text(i, prompt)
        if not prompt.strip():
            raise ValueError(f"prompt {i} is empty; give some text to continue")
    return single, prompt_list


def _check_text(i: int, prompt: Any) -> None:
    if not isinstance(prompt, str):
        raise ValueError(f"prompt {i} is {type(prompt).__name__}, not str: {_EXPECTED}")
    check_encodable(prompt, f"prompt {i}")


def check_encodable(text: str, what: str) -> None:
    """``ValueError`` naming ``what`` (e.g. ``"continuation 0"``) when ``text`` cannot be encoded as UTF-8: it
    holds an unpaired surrogate (e.g. undecodable bytes from a command line), on which a tokenizer raises its
    own ``TypeError`` or encodes garbage."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{what} ({_preview(text)}) is not valid text: it holds an unpaired surrogate "
            f"{text[exc.start]!r} at character {exc.start} (undecodable bytes?); pass valid Unicode text"
        ) from None


def _preview(text: str, n: int = 40) -> str:
    return repr(text if len(text) <= n else text[:n] + "...")


@dataclass
class PromptBatch:
    """Prompts tokenized and left-padded into one batch.

    Attributes:
        prompts: the prompts as given.
        input_ids: ``[batch, p_max]`` int64, left-padded with the pad token.
        attention_mask: ``[batch, p_max]`` int64, 0 on padding.
        pads: padding positions at the left of each row.
        truncated: prompt tokens dropped from the left of each prompt to fit the context.
    """

    prompts: list[str]
    input_ids: torch.Tensor
    attention_mask: torch.Tensor
    pads: list[int]
    truncated: list[int]

    @property
    def p_max(self) -> int:
        return int(self.input_ids.shape[1])


def encode_prompts(model: ModelHandle, prompts: Sequence[str], settings: GenerationSettings) -> PromptBatch:
    """Tokenize and left-pad; checks the prompts and the context length (``ValueError``)."""
    _, prompt_list = check_prompts(prompts)
    tok = model.tokenizer
    ctx = model.context_length
    budget = settings.prompt_token_budget(ctx)
    ids_list: list[list[int]] = []
    truncated: list[int] = []
    for i, prompt in enumerate(prompt_list):
        ids = tok(prompt, add_special_tokens=False)["input_ids"]
        if not ids:
            raise ValueError(f"prompt {i} encodes to no tokens; give some text to continue")
        cut = 0
        if len(ids) > budget:
            if not settings.truncate_prompt:
                raise ValueError(
                    f"prompt {i} has {len(ids)} tokens; with max_new_tokens={settings.max_new_tokens} it needs "
                    f"{len(ids) + settings.max_new_tokens} positions but the model's context is {ctx}. Shorten the "
                    f"prompt, lower max_new_tokens, or pass truncate_prompt=True to drop tokens from the left"
                )
            cut = len(ids) - budget
            ids = ids[cut:]
        ids_list.append(ids)
        truncated.append(cut)
    p_max = max(len(x) for x in ids_list)
    input_ids = torch.full((len(ids_list), p_max), tok.pad_token_id, dtype=torch.long)
    mask = torch.zeros((len(ids_list), p_max), dtype=torch.long)
    pads = []
    for row, ids in enumerate(ids_list):
        pad = p_max - len(ids)
        input_ids[row, pad:] = torch.tensor(ids, dtype=torch.long)
        mask[row, pad:] = 1
        pads.append(pad)
    return PromptBatch(prompt_list, input_ids, mask, pads, truncated)


@dataclass(frozen=True)
class PromptBudget:
    """How a prompt fits the model's context under some settings (before generating).

    Attributes:
        prompt_tokens: tokens of the prompt as given.
        max_new_tokens: new tokens asked for.
        context_length: the model's context.
        truncate: whether prompt tokens would be dropped from the left to fit.
    """

    prompt_tokens: int
    max_new_tokens: int
    context_length: int
    truncate: bool

    @property
    def fits(self) -> bool:
        return self.prompt_tokens + self.max_new_tokens <= self.context_length

    @property
    def dropped_tokens(self) -> int:
        """Prompt tokens that would be dropped from the left (0 when it fits or truncation is off)."""
        if self.fits or not self.truncate:
            return 0
        return self.prompt_tokens + self.max_new_tokens - self.context_length


def prompt_budget(model: ModelHandle, prompt: str, settings: GenerationSettings) -> PromptBudget:
    """Count ``prompt``'s tokens against the context left by ``settings.max_new_tokens`` (no model work).

    ``ValueError`` when ``prompt`` is not a string or not valid text (an empty one is fine: 0 tokens).
    """
    _check_text(0, prompt)
    n = len(model.tokenizer(prompt, add_special_tokens=False, verbose=False)["input_ids"])
    return PromptBudget(n, settings.max_new_tokens, model.context_length, settings.truncate_prompt)


def token_labels(tokenizer: Any, ids: Iterable[int], known: dict[int, str] | None = None) -> dict[int, str]:
    """``{id: tokenizer.decode([id])}`` (spaces kept as they are) for ``ids`` in increasing order; ``known``
    (updated) saves decoding an id twice (the captures of one batch share it)."""
    known = {} if known is None else known
    wanted = sorted(set(ids))
    for i in wanted:
        if i not in known:
            known[i] = str(tokenizer.decode([i], clean_up_tokenization_spaces=False))
    return {i: known[i] for i in wanted}
