"""The dashboard in a real headless Chromium where it was never tried: paths that try to leave a shared page's
folders, two pages generating at once, and the server killed under a run it started.

Skipped, as the other browser tests, when chromium, chromedriver or selenium are missing. The pages run the
built-in random-weights model or a 2-layer byte-level GPT-2 folder (``tests/run_helpers.py``) on a handmade
DailyDialog split: no file from ../shared is needed.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
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
    wait_http,
    wait_visible,
)
from run_helpers import stored_run_command, write_byte_model_folder, write_dailydialog

from inspector.runs import load_run, run_status

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]



def _env(tmp: Path, **extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf_home"), **extra)
    for name in ("INSPECTOR_DASHBOARD_RUN", "INSPECTOR_DASHBOARD_CAPTURE", "INSPECTOR_DASHBOARD_REMOTE"):
        if name not in extra:
            env.pop(name, None)
    return env


def _type(drv, key: str, text: str, tag: str = "input") -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = drv.find_element(By.CSS_SELECTOR, f".st-key-{key} {tag}")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text)
    if tag == "input":
        box.send_keys(Keys.ENTER)
    else:  # a text area takes Enter as a newline: Ctrl+Enter submits it
        box.send_keys(Keys.CONTROL, Keys.ENTER)
    settle(drv)


def _wait_text(drv, pattern: str, timeout: float = 180.0, name: str = "live_failed") -> re.Match:
    from selenium.webdriver.support.ui import WebDriverWait

    found: list[re.Match] = []

    def seen(d) -> bool:
        m = re.search(pattern, page_text(d))
        if m:
            found.append(m)
        return m is not None

    try:
        WebDriverWait(drv, timeout, poll_frequency=0.1).until(seen)
    except Exception as exc:
        shot(drv, name)
        raise AssertionError(f"{pattern!r} not on the page; see artifacts/dashboard_{name}.png") from exc
    return found[-1]


# --------------------------------------------------------------------------- a shared page's paths
def _capture_box(drv) -> None:
    """Open the Corpus view's "Open a single capture file" expander unless its box shows already."""
    from selenium.webdriver.common.by import By

    boxes = drv.find_elements(By.CSS_SELECTOR, ".st-key-capture_path input")
    if not any(b.is_displayed() for b in boxes):
        drv.find_element(By.XPATH, "//summary[contains(., 'Open a single capture file')]").click()
        settle(drv)


def test_a_shared_page_opens_nothing_outside_its_folders(browser_tools, tmp_path):
    """Served beyond its machine (``--remote``), the page is given one run; every path a visitor types that
    leads elsewhere (``..``, a symlink inside the run, an absolute path, a relative path from the server's
    folder) is refused with one message, and nothing of the outside files reaches the page."""
    from inspector._capture.settings import GenerationSettings
    from inspector._fallback import builtin_model
    from inspector.runs import RunConfig, run_corpus

    im = builtin_model()
    data = write_dailydialog(tmp_path / "dd")
    run = tmp_path / "shared" / "run"
    run_corpus(RunConfig(data=str(data), limit=2, batch_size=2, settings=GenerationSettings(max_new_tokens=3)),
               run, im, progress=False, log=lambda m: None)
    outside = tmp_path / "private"
    outside.mkdir()
    secret = "User: the vault code is 4417\nAgent:"
    im.generate(secret, max_new_tokens=3).save(outside / "secret.safetensors")
    other_run = outside / "other-run"
    shutil.copytree(run, other_run)
    (run / "link-to-private").symlink_to(outside)
    (run / "captures" / "linked.safetensors").symlink_to(outside / "secret.safetensors")

    typed_runs = [str(run / ".." / ".." / "private" / "other-run"), str(run / "link-to-private" / "other-run"),
                  str(other_run), "/etc", "../../private/other-run"]
    typed_captures = [str(run / "captures" / ".." / ".." / ".." / "private" / "secret.safetensors"),
                      str(run / "captures" / "linked.safetensors"),
                      str(run / "link-to-private" / "secret.safetensors"), str(outside / "secret.safetensors"),
                      "/etc/hostname"]
    env = _env(tmp_path, INSPECTOR_DASHBOARD_REMOTE="1")
    with dashboard_server(["--model", "builtin", "--run", str(run)], env,
                          ARTIFACTS / "dashboard_remote_server.log") as url, chromium(browser_tools) as driver:
        driver.get(url)
        wait_visible(driver, "tabs", "[role='tab']")
        settle(driver)
        open_tab(driver, "Corpus")
        wait_visible(driver, "run_dir", ".st-key-run_dir input")
        for path in typed_runs:
            _type(driver, "run_dir", path)
            driver.find_element("css selector", ".st-key-open_run button").click()
            settle(driver)
            _wait_text(driver, "is not available here", name="remote_run_failed")
            text = page_text(driver)
            assert "Could not open run" in text and "other-run" not in text.replace(path, ""), path
        _type(driver, "run_dir", str(run))  # the run it was given opens
        driver.find_element("css selector", ".st-key-open_run button").click()
        settle(driver)
        assert "is not available here" not in page_text(driver)
        for path in typed_captures:
            _capture_box(driver)
            _type(driver, "capture_path", path)
            driver.find_element("css selector", ".st-key-open_capture button").click()
            settle(driver)
            _wait_text(driver, "is not available here", name="remote_capture_failed")
            for tab in ("Generation", "Attention", "Corpus"):
                open_tab(driver, tab)
                assert "4417" not in page_text(driver), (path, tab)
        shot(driver, "remote_paths")
        assert "Traceback" not in page_text(driver)


# --------------------------------------------------------------------------- two pages at once
def test_two_pages_generating_at_once_each_get_their_own_capture(browser_tools, tmp_path):
    from selenium.webdriver.support.ui import WebDriverWait

    prompts = {"a": "User: apples are red\nAgent:", "b": "User: the sea is wide and deep\nAgent:"}
    with dashboard_server(["--model", "builtin"], _env(tmp_path), ARTIFACTS / "dashboard_two_pages.log") as url, \
            chromium(browser_tools) as one, chromium(browser_tools) as two:
        pages = {"a": one, "b": two}
        for name, drv in pages.items():
            drv.get(url)
            wait_visible(drv, f"generate_{name}", ".st-key-generate button")
            settle(drv)
            drv.find_element("xpath", "//label[.//p[normalize-space()='Free text']]").click()
            settle(drv)
            _type(drv, "free_text", prompts[name], tag="textarea")
        # both clicks before either generation can end
        for drv in pages.values():
            drv.find_element("css selector", ".st-key-generate button").click()
        for drv in pages.values():
            WebDriverWait(drv, 240, poll_frequency=0.25).until(
                lambda d: re.search(r"Generated \d+ tokens|wait|busy|another generation", page_text(d), re.I))
            settle(drv, timeout=240)
        shown = {}
        for name, drv in pages.items():
            text = page_text(drv)
            assert "Traceback" not in text, name
            if re.search(r"Generated \d+ tokens", text) is None:  # told to wait: try again, now alone
                drv.find_element("css selector", ".st-key-generate button").click()
                _wait_text(drv, r"Generated \d+ tokens", timeout=240, name=f"two_pages_{name}")
                settle(drv)
            open_tab(drv, "Generation")
            wait_visible(drv, f"topk_{name}", ".st-key-fig_topk .js-plotly-plot", timeout=180)
            shown[name] = page_text(drv)
            shot(drv, f"two_pages_{name}")
        # each page shows its own prompt, and not the other page's
        assert "apples are red" in shown["a"] and "the sea is wide" not in shown["a"]
        assert "the sea is wide" in shown["b"] and "apples are red" not in shown["b"]


# --------------------------------------------------------------------------- the server killed under a run
def test_a_run_outlives_the_killed_server_and_the_same_command_finishes_it(browser_tools, tmp_path):
    turns = 16
    model = write_byte_model_folder(tmp_path / "tiny-gpt2")
    env = _env(tmp_path, INSPECTOR_DAILYDIALOG_DIR=str(write_dailydialog(tmp_path / "dailydialog")))
    out = tmp_path / "runs" / "from-page"
    port = free_port()
    log = open(ARTIFACTS / "dashboard_killed_server.log", "wb")  # noqa: SIM115
    server = subprocess.Popen(
        [sys.executable, "-m", "inspector.cli.main", "dashboard", "--port", str(port), "--host", "127.0.0.1",
         "--model", str(model), "--random-weights", "--device", "cpu"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(url + "/_stcore/health", server)
        with chromium(browser_tools) as driver:
            driver.get(url)
            wait_visible(driver, "generate_button", ".st-key-generate button")
            settle(driver)
            open_tab(driver, "Corpus")
            wait_visible(driver, "run_form", ".st-key-run_start button")
            _type(driver, "run_out", str(out))
            _type(driver, "run_limit", str(turns))
            _type(driver, "run_batch", "1")
            driver.find_element("css selector", ".st-key-run_start button").click()
            deadline = time.monotonic() + 180
            while (status := run_status(out)).batches_done < 2:
                assert status.state != "finished" and time.monotonic() < deadline, status.describe()
                time.sleep(0.02)
            writer = status.pid
            assert writer is not None and status.running
            os.killpg(server.pid, signal.SIGKILL)  # the server and everything in its process group, at once
            server.wait(timeout=30)
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
            server.wait(timeout=30)
        log.close()
    # the run goes on (or stops cleanly): never a folder that is half written or still locked by a dead writer
    deadline = time.monotonic() + 300
    while run_status(out).running:
        assert time.monotonic() < deadline, run_status(out).describe()
        time.sleep(0.2)
    after = run_status(out)
    assert after.state in ("finished", "stopped"), after.describe()
    command = [sys.executable, "-m", "inspector.cli.main", *stored_run_command(out, out)]
    again = subprocess.run(command, capture_output=True, text=True, timeout=400, cwd=tmp_path,
                           env={**env, "PYTHONPATH": str(ROOT)})
    assert again.returncode == 0, again.stderr
    run = load_run(out)
    assert run.complete and run.missing == () and len(run.summary) == turns
    assert not run.summary.duplicated(["dial_id", "turn"]).any()
    reference = tmp_path / "runs" / "cli"
    done = subprocess.run([sys.executable, "-m", "inspector.cli.main", *stored_run_command(out, reference)],
                          capture_output=True, text=True, timeout=400, cwd=tmp_path,
                          env={**env, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    pd.testing.assert_frame_equal(run.summary.drop(columns="seconds"),
                                  load_run(reference).summary.drop(columns="seconds"), check_exact=True)
