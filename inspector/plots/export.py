"""Saving figures: one function that picks the format from the file's suffix, writing atomically.

* matplotlib figures -> ``.png``, ``.svg`` (text kept as text), ``.pdf`` (fonts embedded as TrueType);
* plotly figures -> ``.html``, self-contained with plotly.js embedded, so it opens offline;
  ``.png``/``.svg``/``.pdf`` only where kaleido and a Chrome/Chromium browser work;
* HTML strings (the coloured-text view) -> ``.html``.
"""

from __future__ import annotations

import io
import os
import warnings
from pathlib import Path
from typing import Any

from inspector._atomic import write_bytes_atomic

#: File formats, by suffix without the dot.
FORMATS: tuple[str, ...] = ("png", "svg", "pdf", "html")

#: plotly's options for saved HTML: scroll to zoom (long sequences), no logo.
HTML_CONFIG: dict[str, Any] = {"scrollZoom": True, "displaylogo": False, "responsive": True}


class ExportError(ValueError):
    """A figure cannot be saved in the requested format (the message says what to do instead)."""


def _is_matplotlib(fig: Any) -> bool:
    try:
        from matplotlib.figure import Figure
    except ImportError:  # pragma: no cover - matplotlib is a dependency
        return False
    return isinstance(fig, Figure)


def _is_plotly(fig: Any) -> bool:
    try:
        from plotly.basedatatypes import BaseFigure
    except ImportError:  # pragma: no cover - plotly is a dependency
        return False
    return isinstance(fig, BaseFigure)


def format_of(path: str | os.PathLike[str]) -> str:
    """The format named by ``path``'s suffix, or an :class:`ExportError` listing the supported ones."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix not in FORMATS:
        shown = f"'.{suffix}'" if suffix else "no suffix"
        raise ExportError(f"cannot tell the format of {os.fspath(path)!r} ({shown}); use one of "
                          + ", ".join(f".{f}" for f in FORMATS))
    return suffix


def _matplotlib_bytes(fig: Any, fmt: str, dpi: float | None) -> bytes:
    import matplotlib

    if fmt == "html":
        raise ExportError(
            "a matplotlib figure cannot be saved as .html; use the interactive (plotly) version of "
            "this figure, e.g. inspector.plots.make_figure(kind, source, interactive=True)"
        )
    # Text stays text in SVG (searchable, editable); PDF embeds TrueType; no timestamps,
    # so the same figure gives the same bytes.
    metadata = {"png": {"Software": None}, "svg": {"Date": None}, "pdf": {"CreationDate": None}}[fmt]
    buf = io.BytesIO()
    rc = matplotlib.rc_context({"svg.fonttype": "none", "pdf.fonttype": 42, "svg.hashsalt": "inspector"})
    with rc, warnings.catch_warnings():
        # Tokens in scripts the bundled fonts lack (CJK, emoji) draw as boxes; one warning
        # per glyph would bury everything else the user sees.
        warnings.filterwarnings("ignore", message=r"Glyph \d+ .* missing from font")
        fig.savefig(buf, format=fmt, dpi=dpi if dpi is not None else fig.dpi, metadata=metadata)
    return buf.getvalue()


def _kaleido_error(fmt: str, why: str) -> ExportError:
    return ExportError(
        f"cannot save a plotly figure as .{fmt}: {why}. Static images of interactive figures need "
        "kaleido and a Chrome/Chromium browser (pip install kaleido; then kaleido.get_chrome_sync()). "
        f"Use the matplotlib version instead: inspector.plots.static, make_figure(..., interactive=False), "
        f"or `inspector plot ... --out FILE.{fmt}`, which draws with matplotlib"
    )


def _plotly_bytes(fig: Any, fmt: str, scale: float | None) -> bytes:
    if fmt == "html":
        text: str = fig.to_html(include_plotlyjs=True, full_html=True, include_mathjax=False, config=HTML_CONFIG)
        return text.encode("utf-8")
    try:
        import kaleido  # noqa: F401
    except ImportError:
        raise _kaleido_error(fmt, "kaleido is not installed") from None
    try:
        image: bytes = fig.to_image(format=fmt, scale=scale)
        return image
    except Exception as exc:  # kaleido fails in many ways without a browser
        raise _kaleido_error(fmt, f"kaleido failed ({type(exc).__name__}: {exc})") from exc


def export_bytes(fig: Any, fmt: str, *, dpi: float | None = None) -> bytes:
    """``fig`` encoded as ``fmt`` (``png``, ``svg``, ``pdf`` or ``html``), e.g. for a download button.

    ``fig`` is a matplotlib figure, a plotly figure or an HTML string. ``dpi`` sets the
    resolution of matplotlib PNGs (pixels = figure inches x dpi) and, divided by 100,
    the scale of plotly images.
    """
    fmt = fmt.lower().lstrip(".")
    if fmt not in FORMATS:
        raise ExportError(f"unknown format {fmt!r}; choose one of {list(FORMATS)}")
    if isinstance(fig, str):
        if fmt != "html":
            raise ExportError(
                f"this figure is HTML text and saves only as .html, not .{fmt}; for an image of the "
                "coloured text use inspector.plots.static.text_figure (make_figure('text', ..., interactive=False))"
            )
        return fig.encode("utf-8")
    if _is_matplotlib(fig):
        return _matplotlib_bytes(fig, fmt, dpi)
    if _is_plotly(fig):
        return _plotly_bytes(fig, fmt, None if dpi is None else dpi / 100)
    raise ExportError(
        f"cannot export a {type(fig).__name__}: expected a matplotlib Figure, a plotly Figure or HTML text"
    )


def export_figure(fig: Any, path: str | os.PathLike[str], *, dpi: float | None = None) -> Path:
    """Save ``fig`` to ``path`` in the format its suffix names; returns the path.

    The figure is encoded first and the file appears only once completely written, so
    a failure (unsupported format, no kaleido, unwritable folder) leaves no file behind.
    Raises :class:`ExportError` (a ``ValueError``) for a format that does not fit the
    figure and ``OSError`` naming the path when it cannot be written.
    """
    fmt = format_of(path)
    data = export_bytes(fig, fmt, dpi=dpi)
    return write_bytes_atomic(path, data)
