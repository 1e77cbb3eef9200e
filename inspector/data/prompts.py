"""Dialogue prompts that remember, for every prompt token, which turn and speaker it belongs to.

The default template reproduces the notebook's ``"User: ...\\nAgent:"`` prompt: the
last ``k`` turns up to the turn being answered are written as alternating ``User:`` /
``Agent:`` lines (the turn being answered is always ``User``), followed by the cue
``Agent:`` so the model writes the next reply, i.e. that turn's ``response``. Each line is
``"{role}: {text} \\n"``, the notebook's form (DailyDialog utterances end with a space
before ``__eou__``); with ``k=1`` and the utterance ``"hey how are you?"`` the prompt is
exactly ``"User: hey how are you? \\nAgent:"``.

Token provenance is kept as *segments*: maximal runs of prompt tokens with the same
dialogue ``turn``, ``speaker`` (``"User"``/``"Agent"``, or ``None``) and ``role``:

* ``"marker"``: a line's role marker (``User:``);
* ``"text"``: the utterance and the line's end (``" \\n"``);
* ``"cue"``: the final ``Agent:``; its ``turn`` is the turn being generated (``turn + 1``);
* ``"header"``: an optional template header (``turn`` and ``speaker`` are ``None``).

The ``"chat"`` style writes the same turns with the tokenizer's chat template instead
(:mod:`inspector.data.chat`): each turn is a message (``User`` = ``"user"``, ``Agent`` =
``"assistant"``), its content is ``"text"``, the template's own tokens are ``"template"``
(with the message's turn and speaker, or none for a system message the template inserts), and
the generation prompt is the ``"cue"``. The default style, ``"auto"``, is ``"chat"`` for a
tokenizer with a chat template and ``"notebook"`` otherwise; the resolved name is recorded.

A token belongs to the piece that holds its last character. The tokens are exactly
those the capture engine gets from ``tokenizer(text, add_special_tokens=False)`` (special
tokens written in a chat prompt's text come back as those tokens).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from inspector.data.chat import AUTO, CHAT, ChatMessage, Piece, chat_pieces, has_chat_template

USER, AGENT = "User", "Agent"
#: Dialogue turns written into a prompt when nothing else is asked for: the one default of
#: :func:`build_prompt`, ``RunConfig.context_turns``, ``inspector run --context-turns`` and the
#: dashboard's "Context turns" slider, so the same turn gives the same prompt everywhere.
DEFAULT_CONTEXT_TURNS = 3


@dataclass(frozen=True)
class PromptTemplate:
    """How a dialogue becomes a prompt.

    Attributes:
        name: template name (recorded in captures).
        line: one context turn; must contain ``{text}`` once and may contain ``{role}``.
            Everything before ``{text}`` is the role marker, the rest is the turn's text.
        cue: written after the context so the model speaks next (``{role}`` is the agent).
        user, agent: the role labels written into the prompt.
        header: text placed before the first turn (empty by default).
    """

    name: str = "notebook"
    line: str = "{role}: {text} \n"
    cue: str = "{role}:"
    user: str = USER
    agent: str = AGENT
    header: str = ""

    def __post_init__(self) -> None:
        if self.line.count("{text}") != 1:
            raise ValueError(f"template line {self.line!r} must contain {{text}} exactly once")
        for what, fmt in (("line", self.line), ("cue", self.cue)):
            try:
                fmt.format(role="R", text="T")
            except (KeyError, IndexError, ValueError) as exc:
                raise ValueError(
                    f"template {what} {fmt!r} may only use the fields {{role}} and {{text}} ({exc})"
                ) from exc

    def to_dict(self) -> dict[str, str]:
        return {"name": self.name, "line": self.line, "cue": self.cue, "user": self.user,
                "agent": self.agent, "header": self.header}


#: Named line templates; ``notebook`` is what the default ``auto`` style gives without a chat template.
TEMPLATES: Mapping[str, PromptTemplate] = {
    "notebook": PromptTemplate(),
    "plain": PromptTemplate(name="plain", line="{role}: {text}\n"),
}
#: Every named prompt style, the default first: ``auto`` (``chat`` where the tokenizer has a chat
#: template, else ``notebook``), ``chat`` (the tokenizer's chat template), then :data:`TEMPLATES`.
TEMPLATE_NAMES: tuple[str, ...] = (AUTO, CHAT, *TEMPLATES)
DEFAULT_TEMPLATE = AUTO


def check_template(spec: str | PromptTemplate) -> None:
    """``ValueError`` unless ``spec`` is a style name (:data:`TEMPLATE_NAMES`), a line format or a template."""
    if spec not in (AUTO, CHAT):
        get_template(spec)


def template_choices(tokenizer: Any) -> tuple[str, ...]:
    """The style names that work with ``tokenizer``: :data:`TEMPLATE_NAMES`, less ``chat`` without a chat template."""
    return tuple(n for n in TEMPLATE_NAMES if n != CHAT or has_chat_template(tokenizer))


def resolve_template(spec: str | PromptTemplate, tokenizer: Any) -> PromptTemplate | str:
    """The style ``spec`` means for ``tokenizer``: :data:`CHAT` or a :class:`PromptTemplate` (``auto`` resolved)."""
    if spec == AUTO:
        return CHAT if has_chat_template(tokenizer) else TEMPLATES["notebook"]
    if spec == CHAT and not has_chat_template(tokenizer):
        raise ValueError("the 'chat' prompt template needs a tokenizer with a chat template; this one has none, "
                         "use 'notebook' (or 'auto')")
    return CHAT if spec == CHAT else get_template(spec)


def template_identity(spec: str | PromptTemplate, tokenizer: Any = None) -> dict[str, Any]:
    """What the prompt style ``spec`` is, for a run's command identity.

    The resolved style (``{"name": "chat"}`` or :meth:`PromptTemplate.to_dict`), with ``"requested":
    "auto"`` added when it came from ``auto``. Without a tokenizer ``auto`` cannot be resolved yet:
    the result is ``{"requested": "auto"}`` and has no ``"name"``.
    """
    if spec == AUTO:
        if tokenizer is None:
            return {"requested": AUTO}
        return {**template_identity(resolve_template(AUTO, tokenizer)), "requested": AUTO}
    return {"name": CHAT} if spec == CHAT else get_template(spec).to_dict()


def get_template(spec: str | PromptTemplate = "notebook", user: str | None = None,
                 agent: str | None = None) -> PromptTemplate:
    """A template by name (see :data:`TEMPLATES`), or a custom line format such as ``"{role}> {text}\\n"``.

    In a custom format the two characters ``\\n`` stand for a newline (handy on a command line).
    """
    if isinstance(spec, PromptTemplate):
        tpl = spec
    elif spec in TEMPLATES:
        tpl = TEMPLATES[spec]
    elif "{text}" in spec:
        tpl = PromptTemplate(name="custom", line=spec.replace("\\n", "\n"))
    elif spec in (AUTO, CHAT):
        raise ValueError(f"the {spec!r} style depends on the tokenizer: use resolve_template({spec!r}, tokenizer)")
    else:
        raise ValueError(
            f"unknown prompt template {spec!r}; choose one of {list(TEMPLATE_NAMES)} or give a line format "
            "containing {text} (and optionally {role}), e.g. '{role}: {text}\\n'"
        )
    if user is not None or agent is not None:
        tpl = replace(tpl, user=user or tpl.user, agent=agent or tpl.agent)
    return tpl


@dataclass(frozen=True)
class Segment:
    """Prompt tokens ``[start, end)`` from one dialogue turn, speaker and role."""

    start: int
    end: int
    turn: int | None
    speaker: str | None
    role: str

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "turn": self.turn, "speaker": self.speaker, "role": self.role}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Segment:
        return cls(int(d["start"]), int(d["end"]), None if d.get("turn") is None else int(d["turn"]),
                   d.get("speaker"), str(d["role"]))


@dataclass(frozen=True)
class Prompt:
    """A prompt for one dialogue turn, its tokens and their provenance.

    Attributes:
        text: the prompt string given to the model.
        token_ids: its token ids (``tokenizer(text, add_special_tokens=False)``).
        segments: contiguous, non-overlapping, covering ``0..len(token_ids)``.
        turn: the dialogue turn being answered (the last context turn).
        context_turns: dialogue turns written into the prompt, oldest first.
        dropped_turns: context turns dropped from the left to fit the token budget.
        truncated_chars: characters cut from the left of the oldest kept turn to fit.
        template: the prompt style it was written in (``auto`` resolved).
        kind: ``"dailydialog"``, or ``"text"`` for free text (:func:`chat_text_prompt`).
    """

    text: str
    token_ids: tuple[int, ...]
    segments: tuple[Segment, ...]
    turn: int
    context_turns: tuple[int, ...]
    template: str = "notebook"
    split: str | None = None
    dial_id: int | None = None
    dropped_turns: int = 0
    truncated_chars: int = 0
    extra: dict[str, Any] = field(default_factory=dict)
    kind: str = "dailydialog"

    def __len__(self) -> int:
        return len(self.token_ids)

    def _per_token(self, attr: str) -> list[Any]:
        out: list[Any] = [None] * len(self.token_ids)
        for s in self.segments:
            out[s.start : s.end] = [getattr(s, attr)] * (s.end - s.start)
        return out

    def token_turns(self) -> list[int | None]:
        """Dialogue turn of every prompt token."""
        return self._per_token("turn")

    def token_roles(self) -> list[str]:
        """Role (marker/text/cue/header) of every prompt token."""
        return self._per_token("role")

    def source(self) -> dict[str, Any]:
        """JSON-serialisable provenance for ``capture.meta.source`` (see :func:`segments_from_source`)."""
        return {
            "kind": self.kind,
            "split": self.split,
            "dial_id": self.dial_id,
            "turn": self.turn,
            "template": self.template,
            "context_turns": list(self.context_turns),
            "dropped_turns": self.dropped_turns,
            "truncated_chars": self.truncated_chars,
            "num_tokens": len(self.token_ids),
            "segments": [s.to_dict() for s in self.segments],
            **self.extra,
        }


def segments_from_source(source: Mapping[str, Any]) -> list[Segment]:
    """The segments stored by :meth:`Prompt.source` (empty when the source has none)."""
    return [Segment.from_dict(d) for d in source.get("segments", []) or []]


# --------------------------------------------------------------------------- building
def speaker_for(turn: int, answered_turn: int) -> str:
    """Who speaks ``turn`` in the prompt answering ``answered_turn``: the answered turn is always
    ``"User"``, and earlier turns alternate (``"Agent"``, ``"User"``, ...) going back."""
    return USER if (answered_turn - turn) % 2 == 0 else AGENT


def _render(turns: Sequence[str], context: Sequence[int], turn: int, tpl: PromptTemplate | str, tokenizer: Any,
            first_text: str | None) -> list[Piece]:
    if not isinstance(tpl, PromptTemplate):  # the chat template
        messages = [ChatMessage(first_text if (n == 0 and first_text is not None) else turns[t], t,
                                speaker_for(t, turn), speaker_for(t, turn) == USER) for n, t in enumerate(context)]
        return chat_pieces(tokenizer, messages, cue_turn=turn + 1, cue_speaker=AGENT)
    pieces: list[Piece] = []
    if tpl.header:
        pieces.append(Piece(tpl.header, None, None, "header"))
    at = tpl.line.index("{text}")
    before, after = tpl.line[:at], tpl.line[at + len("{text}") :]
    for n, t in enumerate(context):
        speaker = speaker_for(t, turn)
        label = tpl.user if speaker == USER else tpl.agent
        text = first_text if (n == 0 and first_text is not None) else turns[t]
        marker = before.format(role=label)
        if marker:
            pieces.append(Piece(marker, t, speaker, "marker"))
        pieces.append(Piece(text + after.format(role=label), t, speaker, "text"))
    pieces.append(Piece(tpl.cue.format(role=tpl.agent), turn + 1, AGENT, "cue"))
    return pieces


def _encode(tokenizer: Any, text: str) -> tuple[list[int], list[tuple[int, int]]]:
    try:
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    except NotImplementedError as exc:  # slow tokenizers have no offsets
        raise ValueError("prompt building needs a fast tokenizer (character offsets)") from exc
    return list(enc["input_ids"]), [tuple(o) for o in enc["offset_mapping"]]


def _segments(pieces: list[Piece], offsets: list[tuple[int, int]]) -> tuple[Segment, ...]:
    ends, pos = [], 0
    for p in pieces:
        pos += len(p.text)
        ends.append(pos)
    owner = []
    k = 0
    for start, end in offsets:
        ch = end - 1 if end > start else start
        while k < len(ends) - 1 and ch >= ends[k]:
            k += 1
        owner.append(k)
    segs: list[Segment] = []
    for i, k in enumerate(owner):
        p = pieces[k]
        key = (p.turn, p.speaker, p.role)
        if segs and (segs[-1].turn, segs[-1].speaker, segs[-1].role) == key and segs[-1].end == i:
            segs[-1] = replace(segs[-1], end=i + 1)
        else:
            segs.append(Segment(i, i + 1, *key))
    return tuple(segs)


def build_prompt(
    turns: Sequence[str] | Any,
    turn: int,
    tokenizer: Any,
    *,
    context_turns: int = DEFAULT_CONTEXT_TURNS,
    template: str | PromptTemplate = DEFAULT_TEMPLATE,
    max_tokens: int | None = None,
    split: str | None = None,
    dial_id: int | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Prompt:
    """The prompt asking for the reply to ``turns[turn]``.

    Args:
        turns: the dialogue's utterances (or a :class:`~inspector.data.dailydialog.Dialogue`).
        turn: index of the turn being answered; it is written last, as ``User``.
        tokenizer: a fast Hugging Face tokenizer.
        context_turns: ``k``, how many turns up to and including ``turn`` to show (>= 1).
        template: a name from :data:`TEMPLATE_NAMES` (default ``auto``: the tokenizer's chat template
            where it has one, else ``notebook``), a line format, or a :class:`PromptTemplate`.
        max_tokens: token budget; whole turns are dropped from the left until the prompt
            fits, then the remaining turn is cut from the left.
        split, dial_id, extra: provenance recorded in :meth:`Prompt.source`.

    Raises:
        ValueError: bad ``turn``/``context_turns``, a budget too small for the markers, or ``chat``
            with a tokenizer whose template is missing or refuses the turns.
    """
    if hasattr(turns, "turns") and hasattr(turns, "dial_id"):
        dial_id = turns.dial_id if dial_id is None else dial_id
        turns = turns.turns
    turns = list(turns)
    if not 0 <= turn < len(turns):
        raise ValueError(f"turn {turn} out of range: the dialogue has turns 0..{len(turns) - 1}")
    if not isinstance(context_turns, int) or context_turns < 1:
        raise ValueError(f"context_turns must be an integer >= 1, got {context_turns!r}")
    if max_tokens is not None and max_tokens < 1:
        raise ValueError(f"max_tokens must be >= 1, got {max_tokens}")
    tpl = resolve_template(template, tokenizer)
    context = list(range(max(0, turn - context_turns + 1), turn + 1))
    dropped = 0
    first_text: str | None = None
    cut_total = 0
    while True:
        pieces = _render(turns, context, turn, tpl, tokenizer, first_text)
        text = "".join(p.text for p in pieces)
        ids, offsets = _encode(tokenizer, text)
        if max_tokens is None or len(ids) <= max_tokens:
            break
        if len(context) > 1:
            context.pop(0)
            dropped += 1
            continue
        # One turn left: cut its utterance from the left at a token boundary.
        current = first_text if first_text is not None else turns[context[0]]
        text_piece = next(i for i, p in enumerate(pieces) if p.role == "text")
        piece_start = sum(len(p.text) for p in pieces[:text_piece])
        in_text = [i for i, (s, e) in enumerate(offsets)
                   if piece_start <= max(s, e - 1) < piece_start + len(current)]
        excess = len(ids) - max_tokens
        if len(in_text) <= excess:
            raise ValueError(
                f"max_tokens={max_tokens} is too small for the template's markers around turn {turn} "
                f"({len(ids) - len(in_text)} tokens without any text)"
            )
        cut = max(0, offsets[in_text[excess]][0] - piece_start)
        new_text = current[cut:].lstrip()
        cut_total += len(current) - len(new_text)
        if not new_text or new_text == current:
            raise ValueError(f"max_tokens={max_tokens} is too small to keep any text of turn {turn}")
        first_text = new_text
    return Prompt(
        text=text,
        token_ids=tuple(ids),
        segments=_segments(pieces, offsets),
        turn=turn,
        context_turns=tuple(context),
        template=tpl.name if isinstance(tpl, PromptTemplate) else CHAT,
        split=split,
        dial_id=dial_id,
        dropped_turns=dropped,
        truncated_chars=cut_total,
        extra=dict(extra or {}),
    )


def chat_text_prompt(text: str, tokenizer: Any, *, max_tokens: int | None = None) -> Prompt:
    """Free text (ends stripped) sent as one user message of the tokenizer's chat template.

    The text is turn 0 (``User``, role ``"text"``), the generation prompt is the cue of turn 1;
    ``source()["kind"]`` is ``"text"``. ``max_tokens`` cuts the text from the left as in :func:`build_prompt`.
    """
    if not isinstance(text, str) or not text.strip():
        raise ValueError("the prompt text is empty")
    prompt = build_prompt([text.strip()], 0, tokenizer, context_turns=1, template=CHAT, max_tokens=max_tokens)
    return replace(prompt, kind="text")
