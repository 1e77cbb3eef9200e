"""Planning a corpus run: select turns, build their prompts and cut them into fixed batches (no model work).

Turns are planned deterministically: the selected turns (after filters and ``limit``, in
``(dial_id, turn)`` order) are sorted by prompt length (stable, so batches need little
padding) and cut into fixed batches. The same command therefore always gives the same
batches, which is what lets a killed run resume batch by batch.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from inspector.data.dailydialog import load_dailydialog
from inspector.data.dialogues import DailyDialog
from inspector.data.filters import filter_turns
from inspector.data.prompts import Prompt, build_prompt
from inspector.runs.config import CONDITIONS, RunConfig, RunError


@dataclass(frozen=True)
class WorkItem:
    """One turn to generate for: its prompt and its labels (``dial_id``, ``turn``, label names, ...).

    With a run condition, ``prompt`` is the conditioned generation prompt (its condition tokens form a
    ``"condition"`` segment), ``plain`` the same prompt without it and ``target`` the stated label;
    otherwise ``plain`` is ``None`` (the prompt is plain) and so is ``target``.
    """

    prompt: Prompt
    labels: Mapping[str, Any]
    plain: Prompt | None = None
    target: str | None = None

    @property
    def plain_prompt(self) -> Prompt:
        """The prompt without a condition (what the reference reply's difficulty is scored after)."""
        return self.plain if self.plain is not None else self.prompt

    @property
    def key(self) -> tuple[int, int]:
        return int(self.labels["dial_id"]), int(self.labels["turn"])


@dataclass(frozen=True)
class RunPlan:
    """The turns of a run, their prompts, and the fixed batches they are generated in."""

    dataset: DailyDialog
    items: tuple[WorkItem, ...]
    batches: tuple[tuple[WorkItem, ...], ...]
    max_prompt_tokens: int

    @property
    def work_hash(self) -> str:
        """Hash of every selected turn and its prompt text (what a resume must find unchanged)."""
        h = hashlib.sha256()
        for b, batch in enumerate(self.batches):
            for it in batch:
                h.update(f"{b}\t{it.key[0]}\t{it.key[1]}\t{it.prompt.text}\n".encode())
        return h.hexdigest()


def _none(v: Any) -> Any:
    try:
        import pandas as pd

        return None if v is None or pd.isna(v) else v
    except (TypeError, ValueError):
        return v


def _target(config: RunConfig, labels: Mapping[str, Any]) -> str | None:
    """The label stated before the reply (``None``: no condition, or the turn has no such label)."""
    column = CONDITIONS[config.condition]
    value = None if column is None else labels.get(column)
    return str(value) if value is not None and str(value).strip() else None


def _conditioned(config: RunConfig, prompt: Prompt, target: str, tokenizer: Any) -> Prompt:
    from inspector.research.condition import condition_prompt

    return condition_prompt(prompt, target, tokenizer, style=config.condition_style, what=config.condition)


def plan_run(config: RunConfig, tokenizer: Any, context_length: int, dataset: DailyDialog | None = None) -> RunPlan:
    """Load the split, select turns, build prompts and cut them into batches (no model work)."""
    dataset = dataset if dataset is not None else load_dailydialog(config.split, config.data)
    try:
        budget_max = config.settings.prompt_token_budget(context_length)
    except ValueError as exc:
        raise RunError(str(exc)) from exc
    budget = config.max_prompt_tokens or budget_max
    if budget > budget_max:
        raise RunError(
            f"max_prompt_tokens={budget} plus max_new_tokens={config.settings.max_new_tokens} exceeds the "
            f"model's {context_length}-token context; lower one of them"
        )
    table = filter_turns(dataset.turns(), **dict(config.filters))
    if config.limit is not None:
        table = table.head(config.limit)
    if table.empty:
        raise RunError(f"no DailyDialog {config.split} turns match the filters {dict(config.filters)}")
    items = []
    for row in table.itertuples(index=False):
        labels = {
            "dial_id": int(row.dial_id),
            "turn": int(row.turn),
            "split": dataset.split,
            "act": row.act,
            "emotion": row.emotion,
            "response_act": _none(row.response_act),
            "response_emotion": _none(row.response_emotion),
            "response": _none(row.response),
            "utterance": row.utterance,
        }
        def build(max_tokens: int, row: Any = row, labels: dict[str, Any] = labels) -> Prompt:
            return build_prompt(
                dataset[int(row.dial_id)].turns,
                int(row.turn),
                tokenizer,
                context_turns=config.context_turns,
                template=config.template,
                max_tokens=max_tokens,
                split=dataset.split,
                dial_id=int(row.dial_id),
                extra={"act": row.act, "emotion": row.emotion, "response_act": labels["response_act"],
                       "response_emotion": labels["response_emotion"]},
            )

        prompt = build(budget)
        target = _target(config, labels)
        if target is None:
            items.append(WorkItem(prompt, labels))
            continue
        conditioned = _conditioned(config, prompt, target, tokenizer)
        if len(conditioned) > budget:  # the condition's tokens come out of the same budget
            prompt = build(max(1, budget - (len(conditioned) - len(prompt))))
            conditioned = _conditioned(config, prompt, target, tokenizer)
        items.append(WorkItem(conditioned, labels, plain=prompt, target=target))
    ordered = sorted(items, key=lambda it: len(it.prompt))
    b = config.batch_size
    batches = tuple(tuple(ordered[i : i + b]) for i in range(0, len(ordered), b))
    return RunPlan(dataset, tuple(items), batches, budget)
