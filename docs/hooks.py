"""MkDocs hook: the example notebook's plotly figures are rendered as HTML when the notebook is executed.

Without a notebook front end, plotly's default renderer emits only its JSON MIME type, which the
rendered page cannot show; ``notebook_connected`` emits HTML that loads plotly.js from its CDN.
"""

from __future__ import annotations

import os
from typing import Any


def on_startup(**_: Any) -> None:
    """Set plotly's renderer for the kernel that executes the notebook (it inherits this environment)."""
    os.environ.setdefault("PLOTLY_RENDERER", "notebook_connected")
