"""Dialogue data for corpus runs: DailyDialog loading, the turn table and prompt building."""

from inspector.data.dailydialog import (
    ACT_NAMES,
    EMOTION_NAMES,
    HUB_REPO,
    DailyDialog,
    DailyDialogError,
    Dialogue,
    filter_turns,
    load_dailydialog,
    parse_filters,
    turn_table,
)
from inspector.data.prompts import (
    TEMPLATES,
    Prompt,
    PromptTemplate,
    Segment,
    build_prompt,
    get_template,
    segments_from_source,
)

__all__ = [
    "ACT_NAMES",
    "EMOTION_NAMES",
    "HUB_REPO",
    "TEMPLATES",
    "DailyDialog",
    "DailyDialogError",
    "Dialogue",
    "Prompt",
    "PromptTemplate",
    "Segment",
    "build_prompt",
    "filter_turns",
    "get_template",
    "load_dailydialog",
    "parse_filters",
    "segments_from_source",
    "turn_table",
]
