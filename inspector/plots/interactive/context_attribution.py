"""The context-attribution figure as an HTML page: coloured tokens whose score shows on hover."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING, Any

from inspector.plots.context_attribution_data import attribution_colour, context_attribution_data
from inspector.plots.labels import display_token, escape_controls
from inspector.plots.text_data import rgba_hex

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture
    from inspector.analysis.context_attribution import ContextAttribution

# Every rule is scoped to .insp-attr: the page may be embedded in another.
_STYLE = """
.insp-attr { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; }
.insp-attr h1 { font-size: 1.05em; font-weight: 600; margin: 0 0 0.8em 0; white-space: pre-line; }
.insp-attr .insp-body { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
        font-size: 15px; line-height: 1.9; white-space: pre-wrap; overflow-wrap: anywhere; }
.insp-attr .insp-tok { border-radius: 3px; padding: 1px 0; }
.insp-attr .insp-target { outline: 2px solid #000; border-radius: 3px; }
.insp-attr .insp-later { color: #999; }
.insp-attr .insp-legend { margin-top: 1.5em; font-size: 13px; }
.insp-attr .insp-bar { display: inline-block; width: 240px; height: 12px; vertical-align: middle;
        margin: 0 0.5em; border: 1px solid #999; }
"""


def context_attribution_view(
    capture: Capture,
    model: Any = None,
    attribution: ContextAttribution | None = None,
    method: str | None = None,
    steps: int | None = None,
    step: int | None = None,
    width: int | None = None,
    height: int | None = None,
) -> str:
    """A self-contained HTML page (no scripts) of the text coloured by each token's score for one step;
    hovering a token shows its position and score. ``width``/``height``: the page's size in pixels
    (default: it flows with the window). Same arguments as the static figure."""
    d = context_attribution_data(capture, model, attribution, method, steps, step)
    parts: list[str] = []
    for tok in d.tokens:
        text = tok.text.replace("\r", "")
        shown = html.escape(display_token(text) + ("\n" if "\n" in text else "") if text.strip() == "" else
                            escape_controls(text, keep="\n\t"))
        if tok.colour is not None:
            tip = html.escape(f"position {tok.position} ({tok.role}): {tok.score:+.4f}")
            parts.append(f'<span class="insp-tok" style="background:{tok.colour};color:{tok.ink}" '
                         f'title="{tip}">{shown}</span>')
        elif tok.role == "target":
            tip = html.escape(f"position {tok.position}: the explained token, log p = {d.target:.4f}; "
                              f"sum of the scores {d.total:+.4f}")
            parts.append(f'<span class="insp-target" title="{tip}">{shown}</span>')
        else:
            parts.append(f'<span class="insp-later">{shown}</span>')
    vmax = d.vmax if d.vmax > 0 else 1.0
    stops = ", ".join(rgba_hex(attribution_colour(-vmax + 2 * vmax * i / 10, vmax)) for i in range(11))
    size = "".join(f"{k}:{v}px;" for k, v in (("max-width", width), ("height", height)) if v is not None)
    return (
        '<!DOCTYPE html>\n<html><head><meta charset="utf-8"><title>context attribution</title>'
        f"<style>{_STYLE}</style></head><body>"
        f'<div class="insp-attr" style="{size}"><h1>{html.escape(d.title)}</h1>'
        f'<div class="insp-body">{"".join(parts)}</div>'
        f'<div class="insp-legend">{-vmax:+.3g}<span class="insp-bar" '
        f'style="background:linear-gradient(to right, {stops})"></span>{vmax:+.3g}<br>{html.escape(d.legend)}</div>'
        "</div></body></html>\n"
    )
