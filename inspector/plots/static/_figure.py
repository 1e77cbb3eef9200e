"""The matplotlib figure class the static builders return: a plain Figure that also shows itself in a notebook.

Figures are made without pyplot, so IPython's inline backend (registered when pyplot loads it)
never learns to display them; ``_repr_png_`` lets Jupyter show one inline all the same.
Imported only when a figure is drawn, so importing the package does not import matplotlib.
"""

from __future__ import annotations

import io

from matplotlib.figure import Figure


class InspectorFigure(Figure):
    """A :class:`matplotlib.figure.Figure` that Jupyter displays inline as a PNG."""

    def _repr_png_(self) -> bytes:
        buf = io.BytesIO()
        # savefig picks a canvas that can write PNG; no pyplot and no GUI backend involved.
        self.savefig(buf, format="png", bbox_inches="tight")
        return buf.getvalue()
