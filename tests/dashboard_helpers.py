"""Helpers for the dashboard's AppTest tests: run the app, read its elements, drive widgets by key."""

from __future__ import annotations

from typing import Any

from conftest import ROOT

APP = str(ROOT / "dashboard" / "app.py")


def new_app() -> Any:
    from streamlit.testing.v1 import AppTest

    return AppTest.from_file(APP, default_timeout=180)


def ok(at: Any) -> None:
    """No uncaught exception in the page."""
    assert not at.exception, [e.value for e in at.exception]


def texts(elements: Any) -> str:
    return "\n".join(str(e.value) for e in elements)


def walk(node: Any):
    yield node
    for child in getattr(node, "children", {}).values():
        yield from walk(child)


def widgets(at: Any) -> list:
    from streamlit.testing.v1.element_tree import Widget

    return [n for n in walk(at._tree) if isinstance(n, Widget)]


def free_text(at: Any, prompt: str) -> Any:
    at.radio(key="prompt_source").set_value("Free text").run()
    ok(at)
    at.text_area(key="free_text").set_value(prompt)
    return at


def set_server_address(address: str | None) -> str | None:
    """Set Streamlit's ``server.address`` in this process (AppTest runs no server); returns the old value."""
    from streamlit import config

    before = config.get_option("server.address")
    config.set_option("server.address", address)
    return before
