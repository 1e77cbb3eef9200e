"""Text a model wrote is shown as text in a real browser, never as markup: an image link in a reply fetches nothing.

A capture whose (teacher-forced) reply holds ``![i](http://127.0.0.1:PORT/x.png)`` is opened in the
dashboard, in headless Chromium, and every view that prints the reply is drawn (Generation, and the
Analysis tab's Compare panel, which prints both replies). A local HTTP listener on PORT records every
request: markdown rendered as markup would make the browser fetch the image.
"""

from __future__ import annotations

import http.server
import os
import threading
from collections.abc import Iterator

import pytest
from browser import (
    ARTIFACTS,
    chromium,
    dashboard_server,
    free_port,
    open_tab,
    page_text,
    settle,
    shot,
    wait_visible,
)

pytestmark = [pytest.mark.browser, pytest.mark.slow]



@pytest.fixture(scope="module")
def listener() -> Iterator[tuple[int, list[str]]]:
    """An HTTP server on 127.0.0.1 that records the path of every request (and answers 404)."""
    seen: list[str] = []

    class Record(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the http.server name
            seen.append(self.path)
            self.send_error(404)

        def log_message(self, *args: object) -> None:
            pass

    port = free_port()
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Record)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield port, seen
    finally:
        server.shutdown()
        server.server_close()


def test_the_listener_records_a_request(listener):
    import urllib.error
    import urllib.request

    port, seen = listener
    with pytest.raises(urllib.error.HTTPError):
        urllib.request.urlopen(f"http://127.0.0.1:{port}/probe.png", timeout=10)
    assert "/probe.png" in seen
    seen.clear()


def test_an_image_link_in_a_reply_is_shown_as_text(browser_tools, listener, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    from inspector._fallback import builtin_model

    port, seen = listener
    link = f"![i](http://127.0.0.1:{port}/x.png)"
    capture = builtin_model().score("User: hi\nAgent:", f" {link}")
    assert capture.generated_text == f" {link}"
    path = tmp_path / "image-link.safetensors"
    capture.save(path)
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"))
    log = ARTIFACTS / "dashboard_escaping_server.log"
    with dashboard_server(["--model", "builtin", "--capture", str(path)], env, log) as url, \
            chromium(browser_tools) as driver:
        driver.get(url)
        wait_visible(driver, "tabs", "[role='tab']")
        settle(driver)
        WebDriverWait(driver, 60, poll_frequency=0.25).until(lambda d: "Opened capture file" in page_text(d))
        open_tab(driver, "Generation")
        open_tab(driver, "Analysis")
        button = wait_visible(driver, "compare_button", ".st-key-an_cmp_go button")
        button.click()
        wait_visible(driver, "compare_figure", ".st-key-fig_compare .js-plotly-plot", timeout=180)
        WebDriverWait(driver, 60, poll_frequency=0.25).until(lambda d: "A (current):" in page_text(d))
        settle(driver)
        shot(driver, "escaping_compare")
        text = page_text(driver)
        images = driver.execute_script(
            "return Array.from(document.querySelectorAll('img')).map(i => i.getAttribute('src') || '')")
    assert seen == [], f"the browser fetched {seen}: the reply was rendered as markup"
    assert not [src for src in images if str(port) in src], images
    assert "Traceback" not in text
    # the replies are on the page as the characters they hold (A, the capture's, as a quoted repr)
    assert f"A (current): ' {link}'" in text, text[-2000:]
