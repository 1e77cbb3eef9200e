"""Dialogue data for corpus runs: DailyDialog loading, the turn table and prompt building.

``schema`` (label names and order, splits, columns) -> ``dialogues`` (records, the turn
table) -> ``readers`` (original release, tables, the Hub) -> ``dailydialog``
(:func:`load_dailydialog`, and the old import path of every name) ; ``filters`` (selecting
turns) ; ``chat`` -> ``prompts`` (prompts with per-token provenance, in a line template or the
tokenizer's chat template).
"""

from inspector.data.dailydialog import load_dailydialog
from inspector.data.dialogues import DailyDialog, Dialogue, turn_table
from inspector.data.filters import filter_turns, parse_filters
from inspector.data.prompts import (
    TEMPLATE_NAMES,
    TEMPLATES,
    Prompt,
    PromptTemplate,
    Segment,
    build_prompt,
    chat_text_prompt,
    get_template,
    segments_from_source,
)
from inspector.data.schema import ACT_NAMES, EMOTION_NAMES, HUB_REPO, DailyDialogError

__all__ = [
    "ACT_NAMES",
    "EMOTION_NAMES",
    "HUB_REPO",
    "TEMPLATES",
    "TEMPLATE_NAMES",
    "DailyDialog",
    "DailyDialogError",
    "Dialogue",
    "Prompt",
    "PromptTemplate",
    "Segment",
    "build_prompt",
    "chat_text_prompt",
    "filter_turns",
    "get_template",
    "load_dailydialog",
    "parse_filters",
    "segments_from_source",
    "turn_table",
]
