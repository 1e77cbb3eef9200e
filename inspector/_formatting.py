"""Numbers as people read them: probabilities, shares and values that may be tiny or large.

One place for number formatting, so the CLI, the dashboard, figures and notebooks agree. With
random weights every probability is about ``1/vocab`` (``2e-05`` for GPT-2): a fixed number of
decimals shows ``0.0%`` or ``0.000``, which reads as "never"; these helpers keep significant
digits instead. Pure functions of plain floats: no imports from the rest of the package.
"""

from __future__ import annotations

import math

#: Shown for a missing value (NaN).
MISSING = "–"
#: The printf pattern for widgets that format numbers themselves (Streamlit's ``NumberColumn``):
#: three significant digits, like :func:`format_value`, so tiny values do not print as ``0.000``.
PRINTF_FORMAT = "%.3g"


def format_value(x: float, digits: int = 3) -> str:
    """``x`` with ``digits`` significant digits: fixed point from ``1e-3`` to ``1e5``, else scientific.

    ``10.67 -> "10.7"``, ``0.5 -> "0.500"``, ``2.1e-05 -> "2.10e-05"``, ``123456 -> "1.23e+05"``,
    ``0 -> "0"`` (``-0.0`` too); NaN gives :data:`MISSING`.
    """
    if isinstance(digits, bool) or not isinstance(digits, int) or digits < 1:
        raise ValueError(f"digits must be a positive integer, got {digits!r}")
    x = float(x)
    if math.isnan(x):
        return MISSING
    if x == 0:
        return "0"  # also -0.0, which would print "-0": a sign with no size
    if math.isinf(x):
        return f"{x:g}"
    size = abs(x)
    if 1e-3 <= size < 1e5:
        decimals = max(0, digits - 1 - math.floor(math.log10(size)))
        text = f"{x:.{decimals}f}"
        # Rounding can carry into a new digit (9.996 -> "10.00"): one decimal too many then.
        if decimals and len(text.lstrip("-").replace(".", "").lstrip("0")) > digits:
            text = f"{x:.{decimals - 1}f}"
        return text
    return f"{x:.{digits - 1}e}"


def format_prob(p: float) -> str:
    """A probability as a short percentage that stays informative when tiny (``0.0021%``).

    ``0.5 -> "50%"``, ``0.0421 -> "4.2%"``, ``2.1e-05 -> "0.0021%"``, below ``1e-6``
    ``"<0.0001%"``; exactly 0 is ``"0%"``, NaN :data:`MISSING`.
    """
    p = float(p)
    if math.isnan(p):
        return MISSING
    if p >= 0.995:
        return "100%"
    if p >= 0.1:
        return f"{p:.0%}"
    if p >= 1e-6:
        return f"{100 * p:.2g}%"
    return "<0.0001%" if p > 0 else "0%"


def format_percent(share: float) -> str:
    """A share of a whole (0..1) as a percentage with three significant digits (``"0.00199%"``, ``"42.0%"``)."""
    share = float(share)
    if math.isnan(share):
        return MISSING
    return f"{format_value(100 * share)}%"
