"""DailyDialog's fixed vocabulary: label names and their order, splits, column lists, label parsing.

The one place that says which labels exist and in which order they are shown;
readers, filters, the turn table, run summaries and figures all take them from here.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

#: Dialogue act labels (the Hub copy's class 0, ``__dummy__``, never occurs).
ACT_NAMES: Mapping[int, str] = {1: "inform", 2: "question", 3: "directive", 4: "commissive"}
#: Emotion labels.
EMOTION_NAMES: Mapping[int, str] = {
    0: "no emotion",
    1: "anger",
    2: "disgust",
    3: "fear",
    4: "happiness",
    5: "sadness",
    6: "surprise",
}
#: Label columns of the turn table and of run summaries that results can be grouped by
#: (the first is the default). The one list: ``inspector stats --by``, corpus figures and the dashboard use it.
LABEL_COLUMNS: tuple[str, ...] = ("emotion", "act", "response_emotion", "response_act")
#: The label shown for a turn without one (the last turn of a dialogue has no response): the
#: group name in ``inspector stats``, corpus figures and the dashboard's tables.
NO_LABEL = "(none)"
#: The label names of each column of :data:`LABEL_COLUMNS`.
LABEL_NAMES: Mapping[str, Mapping[int, str]] = {
    "act": ACT_NAMES,
    "emotion": EMOTION_NAMES,
    "response_act": ACT_NAMES,
    "response_emotion": EMOTION_NAMES,
}
SPLITS: tuple[str, ...] = ("train", "validation", "test")
HUB_REPO = "li2017dailydialog/daily_dialog"
HUB_REVISION = "refs/convert/parquet"
ENV_VAR = "INSPECTOR_DAILYDIALOG_DIR"
EOU = "__eou__"
TABLE_SUFFIXES: tuple[str, ...] = (".parquet", ".csv", ".jsonl")

#: Columns of :func:`~inspector.data.dialogues.turn_table`, in order.
TURN_COLUMNS: tuple[str, ...] = (
    "split",
    "dial_id",
    "turn",
    "speaker",
    "utterance",
    "act",
    "emotion",
    "response",
    "response_act",
    "response_emotion",
    "act_id",
    "emotion_id",
    "response_act_id",
    "response_emotion_id",
    "num_turns",
)


class DailyDialogError(ValueError):
    """DailyDialog could not be found, read or validated; the message names split, file and line.

    ``str(error)`` is worded for Python callers; :attr:`cli_message`, where it differs, names the
    command line's flags instead (``--data``).
    """

    def __init__(self, message: str, cli_message: str | None = None) -> None:
        super().__init__(message)
        self.cli_message = cli_message or message


def label_id(value: Any, names: Mapping[int, str], kind: str, where: str) -> int:
    """The label id of ``value``: an id (int or digit string) or a label name (any case).

    Raises:
        DailyDialogError: not a known label; the message starts with ``where``.
    """
    if isinstance(value, str):
        v = value.strip()
        if re.fullmatch(r"[+-]?\d+", v):
            value = int(v)
        else:
            by_name = {n: i for i, n in names.items()}
            if v.lower() in by_name:
                return by_name[v.lower()]
            raise DailyDialogError(f"{where}: {kind} label {value!r} is not a number or one of {list(names.values())}")
    if isinstance(value, bool) or not isinstance(value, (int,)) and not hasattr(value, "__index__"):
        raise DailyDialogError(f"{where}: {kind} label {value!r} is not an integer")
    label = int(value)
    if label not in names:
        allowed = ", ".join(f"{i} {n}" for i, n in names.items())
        raise DailyDialogError(f"{where}: unknown {kind} label {label} (known: {allowed})")
    return label
