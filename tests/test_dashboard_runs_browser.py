"""A corpus run started from the dashboard in a real headless Chromium: start it from the page, reload the page
mid-run and see it still running, kill its process (a crash), resume it from the page, and compare the summary
with an uninterrupted run of the same command on the command line. Screenshots go to ``artifacts/``.

Skipped, as the other browser test, when chromium, chromedriver or selenium are missing. The page runs a
2-layer random-weights GPT-2 folder with the byte-level tokenizer (``tests/run_helpers.py``), which
``inspector run`` loads too, on a handmade DailyDialog split: no file from ../shared is needed.
"""

from __future__ import annotations

import os
import re
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
    open_tab,
    page_text,
    settle,
    shot,
    wait_visible,
)
from run_helpers import stored_run_command, write_byte_model_folder, write_dailydialog

from inspector.runs import load_run, run_status

pytestmark = [pytest.mark.browser, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[1]
#: Turns of the run, one per batch, 40 new tokens each (the sidebar's default): long enough to reload and kill.
TURNS = 16



@pytest.fixture(scope="module")
def served(browser_tools, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash_runs_browser")
    model = write_byte_model_folder(tmp / "tiny-gpt2")
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf_home"),
               INSPECTOR_DAILYDIALOG_DIR=str(write_dailydialog(tmp / "dailydialog")))
    for name in ("INSPECTOR_DASHBOARD_RUN", "INSPECTOR_DASHBOARD_CAPTURE", "INSPECTOR_DASHBOARD_REMOTE"):
        env.pop(name, None)
    args = ["--model", str(model), "--random-weights", "--device", "cpu"]
    with dashboard_server(args, env, ARTIFACTS / "dashboard_runs_server.log") as url:
        yield url, tmp


@pytest.fixture(scope="module")
def driver(browser_tools):
    with chromium(browser_tools) as drv:
        yield drv


def _type(drv, key: str, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = drv.find_element(By.CSS_SELECTOR, f".st-key-{key} input")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.DELETE)
    box.send_keys(text, Keys.ENTER)
    settle(drv)


def _wait_text(drv, pattern: str, timeout: float = 180.0) -> re.Match:
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
        shot(drv, "runs_failed")
        raise AssertionError(f"{pattern!r} not on the page; see artifacts/dashboard_runs_failed.png") from exc
    return found[-1]


def test_start_reload_kill_resume_in_chromium(served, driver):
    url, tmp = served
    out = tmp / "runs" / "from-browser"
    driver.get(url)
    wait_visible(driver, "generate_button", ".st-key-generate button")
    settle(driver)
    open_tab(driver, "Corpus")
    wait_visible(driver, "run_form", ".st-key-run_start button")
    _type(driver, "run_out", str(out))
    _type(driver, "run_limit", str(TURNS))
    _type(driver, "run_batch", "1")
    shots = [shot(driver, "runs_1_form")]
    driver.find_element("css selector", ".st-key-run_start button").click()
    # Paused (it keeps its lock, so it is running as far as the folder can tell) as soon as two batches are
    # done, before the page is read and reloaded: a short run on a fast machine would otherwise finish first.
    deadline = time.monotonic() + 120
    while (status := run_status(out)).batches_done < 2 or status.pid is None:
        assert status.state != "finished" and time.monotonic() < deadline, status.describe()
        time.sleep(0.01)
    pid = status.pid
    os.kill(pid, signal.SIGSTOP)
    assert run_status(out).running
    assert int(_wait_text(driver, rf"running \(pid ({pid})").group(1)) == pid
    driver.refresh()  # a reloaded page: a new session, the run goes on
    wait_visible(driver, "generate_after_reload", ".st-key-generate button")
    settle(driver)
    open_tab(driver, "Corpus")
    again = int(_wait_text(driver, rf"running \(pid ({pid})").group(1))
    assert again == pid == run_status(out).pid
    _wait_text(driver, rf"of {TURNS} planned \(status: running\)")
    shots.append(shot(driver, "runs_2_reloaded_running"))

    os.kill(pid, signal.SIGKILL)  # the writer crashes (a stopped process dies too); the page shows it stopped
    _wait_text(driver, r"stopped \(exit status -9\)")
    settle(driver)
    assert not (out / "summary.parquet").exists(), "the run finished before it was killed; make it longer"
    killed_at = run_status(out).turns_done
    assert 2 <= killed_at < TURNS
    _wait_text(driver, rf"of {TURNS} planned \(status: stopped\)")
    shots.append(shot(driver, "runs_3_killed"))

    wait_visible(driver, "resume_button", ".st-key-run_resume button").click()
    _wait_text(driver, rf"finished: {TURNS} of {TURNS} turns", timeout=300)
    settle(driver)
    shots.append(shot(driver, "runs_4_finished"))
    text = page_text(driver)
    assert "Traceback" not in text
    assert "resuming" in run_status(out).log_tail

    reference = tmp / "runs" / "cli"
    cli = [sys.executable, "-m", "inspector.cli.main", *stored_run_command(out, reference)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=400, cwd=tmp,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    ran, ref = load_run(out), load_run(reference)
    assert ran.settings["identity"] == ref.settings["identity"]
    pd.testing.assert_frame_equal(ran.summary.drop(columns="seconds"), ref.summary.drop(columns="seconds"),
                                  check_exact=True)
    for path in shots:
        assert path.stat().st_size > 10_000, path
