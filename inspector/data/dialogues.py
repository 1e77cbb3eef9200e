"""Validated DailyDialog records (:class:`Dialogue`, :class:`DailyDialog`) and their one-row-per-turn table."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

from inspector.data.schema import ACT_NAMES, EMOTION_NAMES, TURN_COLUMNS, DailyDialogError

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd


@dataclass(frozen=True)
class Dialogue:
    """One dialogue: utterances with their act and emotion label ids (same length).

    Speakers alternate; the first utterance is speaker ``"A"``, the second ``"B"``, ...
    """

    dial_id: int
    turns: tuple[str, ...]
    acts: tuple[int, ...]
    emotions: tuple[int, ...]

    def __post_init__(self) -> None:
        if not (len(self.turns) == len(self.acts) == len(self.emotions)):
            raise DailyDialogError(
                f"dialogue {self.dial_id}: {len(self.turns)} turns, {len(self.acts)} acts, "
                f"{len(self.emotions)} emotions"
            )

    def __len__(self) -> int:
        return len(self.turns)

    @property
    def act_names(self) -> list[str]:
        return [ACT_NAMES[a] for a in self.acts]

    @property
    def emotion_names(self) -> list[str]:
        return [EMOTION_NAMES[e] for e in self.emotions]

    @staticmethod
    def speaker(turn: int) -> str:
        """``"A"`` for even turns, ``"B"`` for odd ones."""
        return "A" if turn % 2 == 0 else "B"


@dataclass(frozen=True)
class DailyDialog:
    """One validated split: its dialogues and where they were read from."""

    split: str
    dialogues: tuple[Dialogue, ...]
    source: str

    def __len__(self) -> int:
        return len(self.dialogues)

    def __iter__(self) -> Iterator[Dialogue]:
        return iter(self.dialogues)

    def __getitem__(self, dial_id: int) -> Dialogue:
        return self.dialogues[dial_id]

    @property
    def num_turns(self) -> int:
        return sum(len(d) for d in self.dialogues)

    def turns(self) -> pd.DataFrame:
        """The turn table (see :func:`turn_table`)."""
        return turn_table(self)


def turn_table(data: DailyDialog | Iterable[Dialogue], split: str | None = None) -> pd.DataFrame:
    """One row per turn, with the next turn as its ``response``.

    Columns: ``split``, ``dial_id``, ``turn`` (0-based), ``speaker`` (``"A"``/``"B"``, alternating),
    ``utterance``, ``act``, ``emotion`` (label names), ``response``, ``response_act``,
    ``response_emotion`` (the next turn; ``None`` for a dialogue's last turn), the label ids
    ``act_id``, ``emotion_id``, ``response_act_id``, ``response_emotion_id`` (nullable ints) and
    ``num_turns`` (turns in the dialogue).
    """
    import pandas as pd

    if isinstance(data, DailyDialog):
        split = split or data.split
        dialogues: Iterable[Dialogue] = data.dialogues
    else:
        dialogues = data
    rows = []
    for d in dialogues:
        n = len(d)
        for t in range(n):
            last = t == n - 1
            rows.append(
                (split, d.dial_id, t, Dialogue.speaker(t), d.turns[t], ACT_NAMES[d.acts[t]],
                 EMOTION_NAMES[d.emotions[t]], None if last else d.turns[t + 1],
                 None if last else ACT_NAMES[d.acts[t + 1]], None if last else EMOTION_NAMES[d.emotions[t + 1]],
                 d.acts[t], d.emotions[t], None if last else d.acts[t + 1], None if last else d.emotions[t + 1], n)
            )
    df = pd.DataFrame.from_records(rows, columns=list(TURN_COLUMNS))
    for col in ("dial_id", "turn", "act_id", "emotion_id", "num_turns"):
        df[col] = df[col].astype("int64")
    for col in ("response_act_id", "response_emotion_id"):
        df[col] = df[col].astype("Int64")
    return df
