"""The user docs hold together: relative links resolve, every page is in the site's navigation, the README stays short.

The site itself is built by CI (``mkdocs build --strict``, which also checks anchors and the API reference);
these checks need no MkDocs and run with the tests.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from conftest import ROOT

DOCS = ROOT / "docs"
PAGES = sorted(DOCS.rglob("*.md"))
USER_DOCS = [ROOT / "README.md", ROOT / "CHANGELOG.md", *PAGES]
_FENCE = re.compile(r"^```.*?^```", re.S | re.M)
_LINK = re.compile(r"!?\[[^\]]*\]\(([^)\s]+)\)")


def _links(path: Path) -> list[str]:
    """Relative link targets of a Markdown file, code blocks left out, without their ``#anchor``."""
    text = _FENCE.sub("", path.read_text(encoding="utf-8"))
    out = []
    for target in _LINK.findall(text):
        if target.startswith(("http://", "https://", "mailto:", "#")):
            continue
        out.append(target.split("#", 1)[0])
    return out


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    missing = [t for t in _links(path) if not (path.parent / t).exists()]
    assert missing == [], f"{path.relative_to(ROOT)} links to missing files: {missing}"


def test_every_page_is_in_the_navigation_and_every_entry_exists():
    config = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    nav = config[config.index("\nnav:") :]
    entries = set(re.findall(r":\s*([\w./-]+\.(?:md|ipynb))\s*$", nav, re.M))
    assert entries, "mkdocs.yml has no nav entries"
    assert sorted(e for e in entries if not (DOCS / e).exists()) == []
    pages = {str(p.relative_to(DOCS)) for p in PAGES}
    assert sorted(pages - entries) == [], "pages missing from mkdocs.yml's nav"


def test_readme_is_short_and_states_the_test_command():
    lines = (ROOT / "README.md").read_text(encoding="utf-8").splitlines()
    assert len(lines) <= 200, f"README.md has {len(lines)} lines; move detail into docs/"
    assert any("bash scripts/test.sh" in line for line in lines)


@pytest.mark.parametrize("path", USER_DOCS, ids=lambda p: str(p.relative_to(ROOT)))
def test_user_docs_speak_about_the_product_only(path):
    text = path.read_text(encoding="utf-8")
    found = re.findall(r"\b(?:sessions?|issue \d+|issue #\d+|this machine)\b", text, re.I)
    assert found == [], f"{path.relative_to(ROOT)} mentions {found}"
