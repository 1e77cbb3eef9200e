"""The coloured text as a self-contained HTML page: the renderer beside :mod:`.static` and :mod:`.interactive`.

:func:`text_document` lays out a :class:`~inspector.plots.text_data.TextData`: the
prompt in grey, generated tokens on coloured cells, with CSS-only tooltips (no
scripts, no external resources), so the page works offline and inside a sandboxed frame.
"""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from inspector._formatting import format_prob
from inspector.plots.labels import display_token, escape_controls, quoted_token
from inspector.plots.text_data import TextData, TextToken, colour_of, rgba_hex, text_data

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture

# Every rule is scoped to .insp-text: the page may be embedded in another (the dashboard's st.html).
_HTML_STYLE = """
.insp-text { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; }
.insp-text h1 { font-size: 1.05em; font-weight: 600; margin: 0 0 0.8em 0; }
.insp-text .insp-body { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
        font-size: 15px; line-height: 1.9; white-space: pre-wrap; overflow-wrap: anywhere; max-width: 60em; }
.insp-text .insp-prompt { color: #666; }
.insp-text .insp-tok { border-radius: 3px; padding: 1px 0; position: relative; }
.insp-text .insp-tip { display: none; position: absolute; left: 0; top: 1.7em; z-index: 10; background: #fff;
        color: #222; border: 1px solid #aaa; border-radius: 4px; padding: 4px 8px; white-space: pre;
        font-size: 13px; line-height: 1.4; box-shadow: 0 2px 6px rgba(0,0,0,.2); }
.insp-text .insp-tok:hover .insp-tip { display: block; }
.insp-text .insp-tok:hover { outline: 2px solid #333; }
.insp-text .insp-legend { margin-top: 1.5em; font-size: 13px; }
.insp-text .insp-bar { display: inline-block; width: 240px; height: 12px; vertical-align: middle;
        margin: 0 0.5em; border: 1px solid #999; }
"""


def _legend_gradient(data: TextData, stops: int = 11) -> str:
    cols = [
        rgba_hex(colour_of(data.color_by, data.vmin + (data.vmax - data.vmin) * i / (stops - 1), data.vmin, data.vmax))
        for i in range(stops)
    ]
    return f"linear-gradient(to right, {', '.join(cols)})"


def _step_summary(tok: TextToken) -> str:
    return f"p = {format_prob(tok.prob)} (rank {tok.rank}), entropy {tok.entropy:.3f} nats"


def text_document(data: TextData, tooltips: bool) -> str:
    """A self-contained HTML page of the coloured text (no scripts, no external resources).

    With ``tooltips`` each generated token shows its top alternatives on hover
    (CSS only); without, a plain ``title`` gives its probability, rank and entropy.
    All styles are scoped to the ``insp-text`` wrapper, so the page can be embedded.
    """
    parts: list[str] = []
    prompt_open = False
    for tok in data.tokens:
        text = html.escape(escape_controls(tok.text.replace("\r", ""), keep="\n\t"))
        if not tok.generated:
            if not prompt_open:
                parts.append('<span class="insp-prompt">')
                prompt_open = True
            parts.append(text)
            continue
        if prompt_open:
            parts.append("</span>")
            prompt_open = False
        shown = text
        if tok.text.strip() == "":
            # Blank tokens (spaces, line breaks) still need a visible cell to colour.
            shown = html.escape(display_token(tok.text)) + ("\n" if "\n" in tok.text else "")
        style = f"background:{tok.colour};color:{tok.ink}"
        if tooltips:
            rows = [f"{html.escape(quoted_token(tok.text))}: {_step_summary(tok)}", "top alternatives:"]
            for cand, prob, is_chosen in tok.tip:
                line = f"{format_prob(prob):>8}  {html.escape(quoted_token(cand))}"
                rows.append(f"<b>{line}  ← chosen</b>" if is_chosen else line)
            tip = '<span class="insp-tip">' + "\n".join(rows) + "</span>"
            parts.append(f'<span class="insp-tok" style="{style}">{shown}{tip}</span>')
        else:
            title = html.escape(_step_summary(tok))
            parts.append(f'<span class="insp-tok" style="{style}" title="{title}">{shown}</span>')
    if prompt_open:
        parts.append("</span>")
    lo, hi = (f"{data.vmin:.2f}", f"{data.vmax:.2f}")
    legend = (
        f'<div class="insp-legend">{html.escape(data.legend)}: {lo}<span class="insp-bar" '
        f'style="background:{_legend_gradient(data)}"></span>{hi}'
        + ("<br>Hover a generated token to see the top alternatives." if tooltips else "")
        + "<br>Grey: prompt.</div>"
    )
    title = "<br>".join(html.escape(line) for line in data.title.split("\n"))
    plain_title = html.escape(data.title.replace("\n", " — "))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{plain_title}</title>\n<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
        f"<div class=\"insp-text\">\n<h1>{title}</h1>\n<div class=\"insp-body\">{''.join(parts)}</div>\n{legend}\n"
        "</div>\n</body>\n</html>\n"
    )


def text_html(capture: Capture, color_by: str = "prob", alternatives: int = 5) -> str:
    """The text as a self-contained HTML page; hover a generated token for its top alternatives.

    ``color_by`` is ``"prob"`` (chosen-token probability) or ``"entropy"``. No scripts:
    the tooltips are CSS, so the page works offline and inside a sandboxed frame.
    """
    return text_document(text_data(capture, color_by, alternatives=alternatives), tooltips=True)
