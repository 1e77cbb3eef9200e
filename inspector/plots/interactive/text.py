"""The coloured text as an HTML page whose generated tokens show their top alternatives on hover."""

from __future__ import annotations

from typing import TYPE_CHECKING

from inspector.plots.html_text import text_document
from inspector.plots.text_data import text_data

if TYPE_CHECKING:  # pragma: no cover
    from inspector.records import Capture


def text_html(capture: Capture, color_by: str = "prob", alternatives: int = 5) -> str:
    """The text as a self-contained HTML page; hover a generated token for its top alternatives.

    ``color_by`` is ``"prob"`` (chosen-token probability) or ``"entropy"``. No scripts:
    the tooltips are CSS, so the page works offline and inside a sandboxed frame.
    """
    return text_document(text_data(capture, color_by, alternatives=alternatives), tooltips=True)
