"""The "Why this token?" view in a real headless Chromium: pick a token, see its attribution, ablate a head.

Starts ``inspector dashboard --model builtin`` (the built-in random-weights GPT-2: no file, fast on a CPU) on
127.0.0.1 at a free port and drives it with Selenium; screenshots go to ``artifacts/`` (git-ignored).
Skipped when chromium, chromedriver or selenium are missing.
"""

from __future__ import annotations

import os
import re

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

pytestmark = [pytest.mark.browser, pytest.mark.slow]



@pytest.fixture(scope="module")
def server(browser_tools, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("why_server")
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf_home"))
    env.pop("INSPECTOR_DAILYDIALOG_DIR", None)
    with dashboard_server(["--model", "builtin"], env, ARTIFACTS / "dashboard_why_server.log") as url:
        yield url


@pytest.fixture(scope="module")
def driver(browser_tools):
    with chromium(browser_tools) as drv:
        yield drv


def _attribution_title(drv) -> str:
    return drv.execute_script("const h = document.querySelector('.st-key-why_attribution .insp-attr h1');"
                              "return h ? h.innerText : null;") or ""


def test_pick_a_token_see_why_and_ablate_a_head(server, driver):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(server)
    wait_visible(driver, "generate_button", ".st-key-generate button", timeout=180).click()
    WebDriverWait(driver, 180, poll_frequency=0.25).until(lambda d: re.search(r"Generated \d+ tokens", page_text(d)))
    settle(driver, timeout=180)
    found = re.search(r"Generated (\d+) tokens", page_text(driver))
    assert found is not None
    made = int(found.group(1))
    assert made >= 2

    open_tab(driver, "Why this token?")
    wait_visible(driver, "why_attribution", ".st-key-why_attribution .insp-attr", timeout=180)
    wait_visible(driver, "why_parts", ".st-key-fig_why_parts .js-plotly-plot", timeout=180)
    settle(driver)
    assert "step 0:" in _attribution_title(driver)
    coloured = driver.find_elements(By.CSS_SELECTOR, ".st-key-why_attribution .insp-tok")
    assert coloured and coloured[0].is_displayed()

    # Pick the last generated token with the keyboard, as a reader would.
    driver.execute_script("document.querySelector(\".st-key-why_step input[type='range']\").focus()")
    ActionChains(driver).send_keys(Keys.END).perform()
    WebDriverWait(driver, 120, poll_frequency=0.1).until(
        lambda d: f"step {made - 1}:" in _attribution_title(d))
    settle(driver)
    shot(driver, "why_1_token")

    field = driver.find_element(By.CSS_SELECTOR, ".st-key-why_ablate input")
    field.click()
    field.send_keys("L0.H0", Keys.ENTER)
    settle(driver)
    driver.find_element(By.CSS_SELECTOR, ".st-key-why_ablate_go button").click()
    figure = wait_visible(driver, "why_compare", ".st-key-fig_why_compare .js-plotly-plot", timeout=180)
    settle(driver)
    text = page_text(driver)
    assert "Top-1 agreement" in text and "ablated: L0.H0 (zero)" in text
    assert "Traceback" not in text
    driver.execute_script("arguments[0].scrollIntoView()", figure)
    path = shot(driver, "why_2_ablated")
    assert path.stat().st_size > 10_000
