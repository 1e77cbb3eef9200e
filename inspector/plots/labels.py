"""Words around the figures' numbers: token labels and escapes, thinned axes, percentages, titles.

Every token a figure shows passes through :func:`display_token` (or
:func:`escape_controls`), so the matplotlib and the plotly version of a figure,
and the HTML text, name tokens the same way.
"""

from __future__ import annotations

import functools
import html
import math
import unicodedata
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

# Kept importable from here (its old home); the one definition is in inspector._formatting.
from inspector._formatting import format_prob as format_prob

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture

#: Unicode categories written as escapes: controls, format characters (zero-width, bidi marks),
#: surrogates, private use, unassigned, line and paragraph separators. Fonts have no glyph for
#: them (matplotlib warns "Glyph 19 missing from font") and most are invisible anyway.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape_char(c: str) -> str:
    return repr(c)[1:-1] if unicodedata.category(c) in _ESCAPED_CATEGORIES else c


def escape_controls(text: str, keep: str = "") -> str:
    r"""``text`` with control and other invisible characters written as Python escapes.

    A byte-level tokenizer makes tokens such as ``"\x13"``; they show as ``\x13``
    (as :func:`repr` writes them, without the quotes), ``"\u200b"`` as ``\u200b``.
    Characters in ``keep`` (e.g. ``"\n"`` where line breaks are laid out) stay as they are.
    Every token label of every figure passes through here (via :func:`display_token`).
    """
    if text.isprintable() and not keep:
        return text  # fast path: nothing to escape (also true for "")
    return "".join(c if c in keep else _escape_char(c) for c in text)


def display_token(token: str) -> str:
    r"""A token as a visible label: line breaks and tabs become symbols (``↵``, ``⇥``),
    other control characters escapes (``\x13``, see :func:`escape_controls`), blank tokens ``␣``."""
    out = token.replace("\r\n", "↵").replace("\n", "↵").replace("\r", "↵").replace("\t", "⇥")
    out = escape_controls(out)
    if out.strip() == "":
        return "␣" * max(len(out), 1)
    return out


#: What the marks in token labels mean: said under every table and figure that shows tokens.
TOKEN_LEGEND = ("tokens: ␣ a space, ↵ a newline, ⇥ a tab, \\x13 an invisible control character, "
                "<0xE2> one byte of a character that the tokenizer split across tokens")


def table_token(token: str) -> str:
    r"""A token for a text table: as :func:`display_token`, and its leading and trailing spaces as ``␣``
    (``" the" -> "␣the"``), which a column of text would otherwise hide."""
    shown = display_token(token)
    core = shown.strip(" ")
    if not core:
        return shown
    lead, trail = len(shown) - len(shown.lstrip(" ")), len(shown) - len(shown.rstrip(" "))
    return "␣" * lead + core + "␣" * trail


@functools.cache
def _byte_decoder() -> dict[str, int]:
    """GPT-2's byte-level alphabet read backwards: the printable character that stands for each byte."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    chars, extra = {}, 0
    for b in range(256):
        if b in printable:
            chars[chr(b)] = b
        else:
            chars[chr(256 + extra)] = b
            extra += 1
    return chars


def byte_level_text(piece: str) -> str | None:
    """A byte-level BPE piece (GPT-2's ``"Ġthe"``, ``"âĢ"``) as text, with each byte that does not complete a
    character written ``<0xE2>``; ``None`` when ``piece`` is not written in the byte-level alphabet."""
    table = _byte_decoder()
    if not piece or any(c not in table for c in piece):
        return None
    data = bytes(table[c] for c in piece)
    out, i = [], 0
    while i < len(data):
        for n in (1, 2, 3, 4):
            try:
                out.append(data[i : i + n].decode("utf-8"))
            except UnicodeDecodeError:
                continue
            i += n
            break
        else:
            out.append(f"<0x{data[i]:02X}>")
            i += 1
    return "".join(out)


def token_text(tokenizer: object, token_id: int) -> str:
    """Token ``token_id`` as text: ``tokenizer.decode``, or, where that gives the replacement character ``�``
    (a piece of a multi-byte character), its bytes as :func:`byte_level_text` writes them."""
    decode = getattr(tokenizer, "decode")  # noqa: B009 - any tokenizer-like object
    text = str(decode([int(token_id)], clean_up_tokenization_spaces=False))
    if "\ufffd" in text:
        pieces = getattr(tokenizer, "convert_ids_to_tokens", None)
        readable = byte_level_text(str(pieces(int(token_id)))) if pieces is not None else None
        if readable is not None:
            return readable
    return text


def quoted_token(token: str) -> str:
    r""":func:`display_token` in quotes, for titles and tooltips: ``'\x13'``, ``"'s"``.

    Unlike ``repr(display_token(t))`` it does not double the backslash of an escape.
    """
    shown = display_token(token)
    quote = '"' if "'" in shown and '"' not in shown else "'"
    return f"{quote}{shown}{quote}"


def html_label(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` for plotly, which reads labels as a little HTML."""
    return html.escape(text, quote=False)


def thin_indices(n: int, max_labels: int, keep: Sequence[int] = ()) -> list[int]:
    """Positions to label on an axis of ``n`` items: all of them, or every k-th plus ``keep``.

    ``max_labels`` bounds the count (``keep`` aside); ``max_labels <= 0`` labels nothing.
    """
    if n <= 0 or max_labels <= 0:
        return []
    if n <= max_labels:
        return list(range(n))
    step = math.ceil(n / max_labels)
    kept = {i for i in keep if 0 <= i < n}
    regular = set(range(0, n, step))
    # A regular label closer than a step to a kept one would crowd it: drop it.
    crowded = {j for j in regular for i in kept if j != i and abs(j - i) < max(step, 2)}
    return sorted((regular - crowded) | kept)


def axis_labels(
    tokens: Sequence[str], max_labels: int, prompt_len: int | None = None, keep: Sequence[int] = ()
) -> tuple[list[int], list[str]]:
    """Tick positions and labels for a token axis, thinned to about ``max_labels``.

    The first generated token (``prompt_len``) and ``keep`` are always labelled. When
    every token fits, labels are the tokens; when thinned, each carries its position
    (``"37 the"``) so the reader knows where it is.
    """
    keep = (*keep, *(() if prompt_len is None else (prompt_len,)))
    idx = thin_indices(len(tokens), max_labels, keep=keep)
    thinned = len(idx) < len(tokens)
    labels = [f"{i} {display_token(tokens[i])}" if thinned else display_token(tokens[i]) for i in idx]
    return idx, labels


def position_labels(tokens: Sequence[str]) -> list[str]:
    """Unique ``"position token"`` labels, one per token (plotly category axes need unique names)."""
    return [f"{i} {html_label(display_token(t))}" for i, t in enumerate(tokens)]


def intervention_note(interventions: Mapping[str, Any]) -> str:
    """What a run changed in the model (``CaptureMeta.interventions``), for titles: ``"ablated: L5.H3, L7.attn
    (zero)"``, ``"patched: 3:5, 4:5 from 'The Eiffel Tower is in'"``, both joined by ``" · "``; ``""`` for none."""
    notes = []
    ablated = list(interventions.get("ablate") or ())
    if ablated:
        shown = ", ".join(ablated[:8]) + (f" and {len(ablated) - 8} more" if len(ablated) > 8 else "")
        notes.append(f"ablated: {shown} ({interventions.get('ablate_mode', 'zero')})")
    patched = [f"{pair[0]}:{pair[1]}" for pair in interventions.get("patch") or ()]
    if patched:
        shown = ", ".join(patched[:8]) + (f" and {len(patched) - 8} more" if len(patched) > 8 else "")
        source = interventions.get("patch_source") or {}
        prompt = escape_controls(str(source.get("prompt_text", "")))
        prompt = prompt if len(prompt) <= 40 else prompt[:39] + "…"
        notes.append(f"patched: {shown} from {prompt!r}")
    return " · ".join(notes)


def capture_title(capture: Capture, what: str) -> str:
    """``what`` followed by the model name, flagged loudly when the weights are random; forced captures say so,
    and so do runs with ablated or patched parts (:func:`intervention_note`)."""
    model = capture.meta.model or "model"
    if capture.meta.generation.get("mode") == "forced":  # as capture.forced.is_forced (which loads torch)
        model = f"{model} · teacher-forced continuation ({capture.num_steps} tokens, not generated)"
    note = intervention_note(capture.meta.interventions)
    if note:
        model = f"{model} · {note}"
    if capture.meta.random_weights:
        return f"{what}\n{model}: RANDOM WEIGHTS (not real GPT-2)"
    return f"{what}\n{model}"


def check_index(value: int | None, size: int, what: str) -> int | None:
    """``value`` made non-negative, or a ``ValueError`` naming the valid range."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not -size <= value < size:
        raise ValueError(f"{what} {value} out of range: valid {what}s are 0..{size - 1}")
    return int(value) % size


def char_width(text: str) -> int:
    """Monospace cells a string takes (wide East Asian characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)

