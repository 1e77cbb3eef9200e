"""HTML a capture shows in a notebook: small, self-contained, no network.

A front end: records hold no presentation. ``import inspector`` inside IPython or Jupyter calls
:func:`register`, which tells the shell's HTML formatter to show every
:class:`~inspector._records.capture.Capture` with :func:`capture_display` (by the class's name, so nothing
is imported until a capture is shown).
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from inspector._formatting import format_prob

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture

#: Light yellow (sure) to red (surprising): the colour of a chosen-token probability.
_RAMP = ((255, 255, 204), (254, 217, 118), (253, 141, 60), (227, 26, 28), (128, 0, 38))


def _colour(prob: float) -> tuple[str, str]:
    """Background and ink for a token chosen with probability ``prob`` (red: improbable)."""
    frac = 1.0 - min(max(prob, 0.0), 1.0)
    pos = frac * (len(_RAMP) - 1)
    i = min(int(pos), len(_RAMP) - 2)
    t = pos - i
    r, g, b = (round(a + (c - a) * t) for a, c in zip(_RAMP[i], _RAMP[i + 1], strict=True))
    ink = "#000" if 0.299 * r + 0.587 * g + 0.114 * b > 140 else "#fff"
    return f"#{r:02x}{g:02x}{b:02x}", ink


def _visible(token: str) -> str:
    """A token's text with line breaks, tabs and other control characters made visible."""
    shown = token.replace("\r\n", "↵").replace("\n", "↵").replace("\r", "↵").replace("\t", "⇥")
    shown = "".join(c if c.isprintable() or c == " " else repr(c)[1:-1] for c in shown)
    return shown if shown.strip() else "␣" * max(len(shown), 1)


def capture_html(
    tokens: Sequence[str],
    prompt_len: int,
    chosen_logprobs: Sequence[float],
    *,
    model: str,
    random_weights: bool,
    stop_reason: str,
    attention_shape: Sequence[int] | None,
) -> str:
    """The prompt in grey and each generated token on a background coloured by its probability.

    Args:
        tokens: display strings of the whole sequence (prompt, then generated).
        prompt_len: number of prompt tokens.
        chosen_logprobs: ``[step]`` log-probability of each generated token under the raw logits.
        model, random_weights, stop_reason: shown in the header line.
        attention_shape: ``[layer, head, query, key]`` of the kept attention, or ``None``.
    """
    steps = len(tokens) - prompt_len
    parts = ['<span style="color:#777">']
    parts += [html.escape(t) for t in tokens[:prompt_len]]
    parts.append("</span>")
    for i, tok in enumerate(tokens[prompt_len:]):
        p = math.exp(chosen_logprobs[i]) if i < len(chosen_logprobs) else float("nan")
        bg, ink = _colour(p if p == p else 0.0)
        parts.append(
            f'<span style="background:{bg};color:{ink};border-radius:3px" '
            f'title="step {i}: p = {format_prob(p)}">{html.escape(_visible(tok) if not tok.strip() else tok)}</span>'
        )
    att = "not kept" if attention_shape is None else " × ".join(str(int(n)) for n in attention_shape)
    head = (
        f"<b>Capture</b> · {html.escape(model or 'model')} · {prompt_len} prompt + {steps} generated tokens · "
        f"stopped by {html.escape(stop_reason)} · attention [layer, head, query, key]: {att}"
    )
    warn = (
        '<div style="color:#b00;font-weight:600">Random weights: the generated text is meaningless; '
        "the numbers are still exact.</div>"
        if random_weights
        else ""
    )
    body = "".join(parts)
    return (
        '<div class="inspector-capture" style="font-family:system-ui,sans-serif;font-size:13px">'
        f"<div>{head}</div>{warn}"
        '<div style="font-family:ui-monospace,Menlo,Consolas,monospace;white-space:pre-wrap;'
        f'line-height:1.7;margin-top:4px">{body}</div>'
        '<div style="color:#777;font-size:11px">Generated tokens coloured by their probability '
        "(yellow: sure, red: surprising); hover one for its value.</div></div>"
    )


def capture_display(capture: Capture) -> str:
    """How a notebook shows a capture: the text coloured by probability, counts, stop reason, weights."""
    return capture_html(capture.tokens, capture.prompt_len, capture.raw.chosen_logprob.tolist(),
                        model=capture.meta.model, random_weights=capture.meta.random_weights,
                        stop_reason=capture.stop_reason,
                        attention_shape=None if capture.attentions is None else tuple(capture.attentions.shape))


def register(shell: Any) -> None:
    """Show captures as HTML in this IPython ``shell`` (``get_ipython()``)."""
    formatter = shell.display_formatter.formatters["text/html"]
    formatter.for_type_by_name("inspector._records.capture", "Capture", capture_display)
