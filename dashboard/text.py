"""Text helpers for the page: markdown escaping and the words shown for stop reasons."""

from __future__ import annotations

import re

STOP_LABELS = {"eos": "end of text", "stop_string": "stop string", "length": "token limit",
               "forced": "end of the given continuation (teacher-forced)"}
_MD_SPECIAL = re.compile(r"([\\`*_{}\[\]()#+\-.!|~<>$:])")


def md(text: str) -> str:
    """``text`` escaped for ``st.markdown`` (dialogue text must not turn into markup or LaTeX)."""
    return _MD_SPECIAL.sub(r"\\\1", " ".join(str(text).split()))


def md_paragraphs(text: str) -> str:
    """Plain text with blank-line paragraphs, escaped for markdown."""
    return "\n\n".join(md(p) for p in text.split("\n\n"))


def short(text: str, n: int) -> str:
    """``text`` on one line, cut to ``n`` characters with an ellipsis."""
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def stop_label(reason: str) -> str:
    """How the page names a capture's stop reason."""
    return STOP_LABELS.get(reason, reason)
