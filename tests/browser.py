"""Helpers to drive the dashboard in a real headless Chromium (Selenium + Debian's chromium/chromedriver).

Used by ``tests/test_dashboard_browser.py`` and ``benchmarks/bench_dashboard.py``: start
``inspector dashboard`` on 127.0.0.1 at a free port, open a browser, wait for Streamlit
to finish a run, click tabs, save screenshots under ``artifacts/`` (git-ignored).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
ARTIFACTS = ROOT / "artifacts"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
)


def _find(*names: str) -> str | None:
    for name in names:
        found = shutil.which(name) or (name if os.path.isfile(name) else None)
        if found:
            return found
    return None


def browser_tools() -> tuple[str, str] | str:
    """``(chromium, chromedriver)`` paths, or a string saying what is missing."""
    chromium = _find("chromium", "chromium-browser", "/usr/bin/chromium")
    driver = _find("chromedriver", "/usr/bin/chromedriver", "/usr/lib/chromium/chromedriver")
    if chromium is None or driver is None:
        return "chromium and chromedriver not found (Debian: apt-get install -y chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install selenium)"
    return chromium, driver


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_http(url: str, proc: subprocess.Popen, timeout: float = 90.0) -> None:
    """Until ``url`` answers 200; ``RuntimeError`` when ``proc`` exits first, ``TimeoutError`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited early with code {proc.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise TimeoutError(f"no answer at {url} within {timeout:.0f} s")


@contextlib.contextmanager
def dashboard_server(args: list[str], env: dict[str, str], log: Path, timeout: float = 90) -> Iterator[str]:
    """``inspector dashboard ARGS`` on 127.0.0.1 at a free port; yields its URL, stops it afterwards."""
    port = free_port()
    cmd = [sys.executable, "-m", "inspector.cli.main", "dashboard", "--port", str(port), "--host", "127.0.0.1",
           *args]
    log.parent.mkdir(parents=True, exist_ok=True)
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT,
                                start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(url + "/_stcore/health", proc, timeout=timeout)
        yield url
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)  # our own process group: the server and nothing else
            try:
                proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=15)


@contextlib.contextmanager
def chromium(tools: tuple[str, str], size: str = "1500,1900") -> Iterator[Any]:
    """A headless Chromium WebDriver started with :data:`CHROMIUM_FLAGS`."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, chromedriver = tools
    opts = webdriver.ChromeOptions()
    opts.binary_location = binary
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--window-size={size}")
    drv = webdriver.Chrome(service=Service(executable_path=chromedriver), options=opts)
    drv.set_page_load_timeout(60)
    try:
        yield drv
    finally:
        drv.quit()


def shot(drv: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    path = ARTIFACTS / f"dashboard_{name}.png"
    drv.save_screenshot(str(path))
    return path


def wait_visible(drv: Any, what: str, css: str, timeout: float = 90.0) -> Any:
    """The first element matching ``css`` once visible; on timeout a screenshot and an AssertionError."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as ec
    from selenium.webdriver.support.ui import WebDriverWait

    try:
        return WebDriverWait(drv, timeout, poll_frequency=0.05).until(
            ec.visibility_of_element_located((By.CSS_SELECTOR, css))
        )
    except Exception as exc:
        shot(drv, f"failed_{what}")
        raise AssertionError(f"timed out waiting for {what} ({css}); see artifacts/dashboard_failed_{what}.png") \
            from exc


IDLE_JS = (
    "return document.querySelectorAll('[data-testid=\"stStatusWidget\"] *').length === 0 "
    "&& document.querySelectorAll('[data-stale=\"true\"]').length === 0"
)


def settle(drv: Any, timeout: float = 90.0, pause: float = 0.5) -> None:
    """Wait until Streamlit has finished running the script (no running indicator, no stale elements)."""
    from selenium.webdriver.support.ui import WebDriverWait

    time.sleep(pause)
    WebDriverWait(drv, timeout, poll_frequency=0.05).until(lambda d: d.execute_script(IDLE_JS))
    time.sleep(pause)


def open_tab(drv: Any, label: str, wait: bool = True) -> None:
    from selenium.webdriver.common.by import By

    drv.find_element(By.XPATH, f"//*[@role='tab'][.//p[normalize-space()='{label}']]").click()
    if wait:
        settle(drv)


def page_text(drv: Any) -> str:
    return drv.execute_script("return document.body.innerText")


def figure_js(key: str) -> str:
    """JS expression for the plotly graph div of the chart with Streamlit key ``key`` (null when absent)."""
    return f"document.querySelector('.st-key-{key} .js-plotly-plot')"


def figure_signature(drv: Any, key: str) -> str | None:
    """A string that changes whenever the chart ``key`` is redrawn with other data (None when not drawn)."""
    return drv.execute_script(
        f"const g = {figure_js(key)};"
        "if (!g || !g._fullLayout || !g.data) return null;"
        "const t = g.layout && g.layout.title; const d = g.data[0] || {};"
        "return JSON.stringify([t && (t.text || t), g.data.length, d.name || null, "
        "(d.z && d.z.length) || (d.y && d.y.length) || 0, g._fullLayout.height]);"
    )
