"""Chat-template prompts: dialogue turns rendered with the tokenizer's chat template, piece by piece.

:func:`chat_pieces` renders messages with ``tokenizer.apply_chat_template(..., tokenize=False,
add_generation_prompt=True)`` and cuts the rendered text into pieces that remember the dialogue
turn, speaker and role of every character:

* ``"text"``: a message's content, exactly as written into the template;
* ``"template"``: what the template writes around a message (``<|im_start|>user\\n`` before it,
  ``<|im_end|>\\n`` after it), with that message's turn and speaker, like the ``User:`` markers of
  the notebook's form; text before the first message's own marker (a default system message the
  template inserts, a BOS token) is ``"template"`` with no turn and no speaker, like a header;
* ``"cue"``: the generation prompt (``<|im_start|>assistant\\n``) with the turn being generated and
  the agent as speaker.

Where the pieces lie is read from the template itself, not guessed from its text: the messages are
rendered once with a unique placeholder for each content (the template's own text lies between the
placeholders), the split between one message's end and the next one's marker is where the rendering
of the messages up to that one ends, and the first message's marker is the one the template writes
before a later message of the same role. The pieces are then checked to concatenate to the rendering
of the real messages; a template that rewrites message content is refused with a ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

#: Prompt style names besides the line templates: the tokenizer's chat template, and the default
#: that picks it where the tokenizer has one (the notebook's form otherwise).
CHAT, AUTO = "chat", "auto"
#: Segment role of the tokens a chat template writes around the messages.
TEMPLATE_ROLE = "template"
#: Chat roles of the two dialogue speakers.
USER_ROLE, ASSISTANT_ROLE = "user", "assistant"


@dataclass(frozen=True)
class Piece:
    """A run of prompt characters from one dialogue turn, speaker and role (``None``: no turn or speaker)."""

    text: str
    turn: int | None
    speaker: str | None
    role: str


@dataclass(frozen=True)
class ChatMessage:
    """One dialogue turn as a chat message, from the user (``user=True``) or the assistant."""

    content: str
    turn: int
    speaker: str
    user: bool

    @property
    def role(self) -> str:
        return USER_ROLE if self.user else ASSISTANT_ROLE


def has_chat_template(tokenizer: Any) -> bool:
    """Whether the tokenizer carries a chat template."""
    return bool(getattr(tokenizer, "chat_template", None))


def render_chat(tokenizer: Any, messages: Sequence[dict[str, str]], *, add_generation_prompt: bool) -> str:
    """``apply_chat_template(messages, tokenize=False)``, with a ``ValueError`` saying what to change."""
    if not has_chat_template(tokenizer):
        raise ValueError("the tokenizer has no chat template; use the 'notebook' prompt template instead")
    try:
        text = tokenizer.apply_chat_template(list(messages), tokenize=False,
                                             add_generation_prompt=add_generation_prompt)
    except Exception as exc:  # noqa: BLE001 - a template raises what it likes (jinja2's TemplateError mostly)
        raise ValueError(
            f"the tokenizer's chat template refused the messages ({type(exc).__name__}: {exc}); templates that "
            "require a user message first need an odd number of context turns, or use the 'notebook' template"
        ) from exc
    if not isinstance(text, str):
        raise ValueError(f"the chat template rendered a {type(text).__name__}, not text")
    return text


def _placeholder(i: int) -> str:
    return f"\u27ea{i}\u27eb"  # not whitespace: survives a template that strips content


def _between(rendered: str, n: int) -> list[str]:
    """The template's text around ``n`` placeholders: ``n + 1`` strings (before the first, ..., after the last)."""
    out, pos = [], 0
    for i in range(n):
        at = rendered.find(_placeholder(i), pos)
        if at < 0:
            raise ValueError("the chat template does not write each message's content once, in order")
        out.append(rendered[pos:at])
        pos = at + len(_placeholder(i))
    out.append(rendered[pos:])
    return out


def _message_ends(tokenizer: Any, probes: list[dict[str, str]], full: str, gaps: list[str]) -> list[int]:
    """For each message, how many characters of the gap after it belong to it (its end tokens)."""
    ends, pos = [], 0
    for i in range(len(probes)):
        pos += len(gaps[i]) + len(_placeholder(i))
        try:
            prefix = render_chat(tokenizer, probes[: i + 1], add_generation_prompt=False)
        except ValueError:
            prefix = ""
        keep = len(prefix) - pos
        ok = full.startswith(prefix) and 0 <= keep <= len(gaps[i + 1])
        ends.append(keep if ok else 0)  # not a prefix: the whole gap goes to what follows
    return ends


def _first_marker(tokenizer: Any, role: str, gap: str) -> int:
    """How many trailing characters of the text before the first message are that message's own marker."""
    other = ASSISTANT_ROLE if role == USER_ROLE else USER_ROLE
    probes = [{"role": r, "content": _placeholder(i)} for i, r in enumerate((role, other, role))]
    try:
        full = render_chat(tokenizer, probes, add_generation_prompt=False)
        prefix = render_chat(tokenizer, probes[:2], add_generation_prompt=False)
    except ValueError:
        return len(gap)
    at = full.find(_placeholder(2))
    marker = full[len(prefix) : at] if full.startswith(prefix) and at >= len(prefix) else ""
    return len(marker) if marker and gap.endswith(marker) else len(gap)


def chat_pieces(tokenizer: Any, messages: Sequence[ChatMessage], *, cue_turn: int, cue_speaker: str) -> list[Piece]:
    """The chat prompt of ``messages`` (generation prompt added) cut into pieces; see the module docstring.

    Args:
        tokenizer: a tokenizer with a chat template.
        messages: the dialogue turns, oldest first.
        cue_turn, cue_speaker: the turn and speaker of the generation prompt (the reply to come).

    Returns:
        Pieces whose texts concatenate to ``apply_chat_template(messages, tokenize=False,
        add_generation_prompt=True)``.

    Raises:
        ValueError: no chat template, a template that refuses the messages, rewrites their content or adds
            no generation prompt.
    """
    if not messages:
        raise ValueError("a chat prompt needs at least one message")
    probes = [{"role": m.role, "content": _placeholder(i)} for i, m in enumerate(messages)]
    full = render_chat(tokenizer, probes, add_generation_prompt=True)
    gaps = _between(full, len(messages))
    ends = _message_ends(tokenizer, probes, full, gaps)
    closed = render_chat(tokenizer, probes, add_generation_prompt=False)
    if not full.startswith(closed) or len(full) == len(closed):
        raise ValueError("the chat template adds no generation prompt after the messages; it cannot cue a reply")
    marker = _first_marker(tokenizer, messages[0].role, gaps[0])
    pieces = [Piece(gaps[0][: len(gaps[0]) - marker], None, None, TEMPLATE_ROLE)]
    for i, m in enumerate(messages):
        lead = gaps[0][len(gaps[0]) - marker :] if i == 0 else gaps[i][ends[i - 1] :]
        pieces.append(Piece(lead, m.turn, m.speaker, TEMPLATE_ROLE))
        pieces.append(Piece(m.content, m.turn, m.speaker, "text"))
        pieces.append(Piece(gaps[i + 1][: ends[i]], m.turn, m.speaker, TEMPLATE_ROLE))
    pieces.append(Piece(gaps[-1][ends[-1] :], cue_turn, cue_speaker, "cue"))
    real = render_chat(tokenizer, [{"role": m.role, "content": m.content} for m in messages],
                       add_generation_prompt=True)
    if "".join(p.text for p in pieces) != real:
        raise ValueError("the chat template changes the messages' text (e.g. strips it), so prompt tokens cannot be "
                         "traced to their turns; use the 'notebook' prompt template")
    return [p for p in pieces if p.text]
