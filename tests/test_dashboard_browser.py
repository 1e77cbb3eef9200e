"""The dashboard in a real headless Chromium: start the server, click Generate, see the attention heatmap.

Starts ``inspector dashboard`` (which runs ``streamlit run dashboard/app.py``) on
127.0.0.1 at a free port, drives Debian's ``chromium`` through the system
``chromedriver`` with Selenium, and saves screenshots of every view under
``artifacts/`` (git-ignored) as test artifacts. Skipped when chromium,
chromedriver or selenium are missing.

The server is started the way the README starts it, ``--model gpt2``, but with the
Hub offline and an empty Hugging Face cache, so loading fails and the page falls
back (with its banner) to random weights built from a config folder: GPT-2's real
tokenizer (symlinked from the shared offline copy) with a narrow 12-layer x 12-head
config, fast on a CPU. Without the shared copy, the built-in model is the fallback.
"""

from __future__ import annotations

import os
import re
import time
from pathlib import Path

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
from conftest import dailydialog_dir, demo_gguf, gpt2_offline_dir

pytestmark = [pytest.mark.browser, pytest.mark.slow]


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A small corpus run (built-in model, 8 turns) when DailyDialog is available, else ``None``."""
    dd = dailydialog_dir()
    if dd is None:
        return None
    from inspector._capture.settings import GenerationSettings
    from inspector._fallback import builtin_model
    from inspector.runs import RunConfig, run_corpus

    out = tmp_path_factory.mktemp("dash_run") / "demo"
    cfg = RunConfig(split="validation", data=str(dd), limit=8, batch_size=8, attention="full",
                    settings=GenerationSettings(max_new_tokens=8))
    run_corpus(cfg, out, builtin_model(), progress=False, log=lambda _m: None)
    return out


def narrow_gpt2_config(folder: Path) -> Path | None:
    """GPT-2's tokenizer (symlinks to the shared copy) with a 12 x 12-head, 96-dim config; ``None`` without it."""
    import json

    src = gpt2_offline_dir()
    if src is None:
        return None
    folder.mkdir(parents=True, exist_ok=True)
    config = json.loads((src / "config.json").read_text())
    config.update(n_layer=12, n_head=12, n_embd=96)
    (folder / "config.json").write_text(json.dumps(config))
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        if (src / name).exists():
            (folder / name).symlink_to(src / name)
    return folder


def _env(tmp: Path, keep_offline_dir: bool) -> dict[str, str]:
    # No hub, an empty cache: `gpt2` cannot load, so the page must fall back, and say so.
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1", HF_HOME=str(tmp / "hf_home"))
    if not keep_offline_dir:
        env.pop("INSPECTOR_GPT2_OFFLINE_DIR", None)
    if dailydialog_dir() is not None:
        env["INSPECTOR_DAILYDIALOG_DIR"] = str(dailydialog_dir())
    return env


@pytest.fixture(scope="module")
def server(browser_tools, run_folder, tmp_path_factory):
    tmp = tmp_path_factory.mktemp("dash_server")
    config_dir = narrow_gpt2_config(tmp / "gpt2-narrow")
    args = ["--model", "gpt2"]
    if config_dir is not None:
        args += ["--config-dir", str(config_dir)]
    if run_folder is not None:
        args += ["--run", str(run_folder)]
    with dashboard_server(args, _env(tmp, config_dir is not None), ARTIFACTS / "dashboard_server.log") as url:
        yield url


@pytest.fixture(scope="module")
def driver(browser_tools):
    with chromium(browser_tools) as drv:
        yield drv


# ----------------------------------------------------------------------------- the test
def test_generate_and_see_attention_in_chromium(server, driver, run_folder):
    from selenium.webdriver.common.by import By

    driver.get(server)
    generate = wait_visible(driver, "generate_button", ".st-key-generate button")
    settle(driver)
    text = page_text(driver)
    assert "could not be loaded here" in text or "Could not load 'gpt2'" in text  # said plainly ...
    if demo_gguf() is not None:  # ... and the trained demo model stands in, saying what it is
        assert "SmolLM2-135M-Instruct, a real trained model" in text and "not GPT-2" in text
    else:  # ... or a GPT-2 with random weights, saying so
        assert "the generated text is meaningless" in text
    assert "Traceback" not in text
    shots = [shot(driver, "1_prompt")]

    t0 = time.monotonic()
    generate.click()
    from selenium.webdriver.support.ui import WebDriverWait

    # the flash "Generated N tokens in ..." (not the progress bar's "Generated N of up to ...")
    WebDriverWait(driver, 180, poll_frequency=0.25).until(lambda d: re.search(r"Generated \d+ tokens", page_text(d)))
    settle(driver, timeout=180)
    # the app switches to the Generation tab after generating; Streamlit's tab switch has
    # occasionally left the page on an empty Prompt tab, so open it explicitly (harmless if open)
    open_tab(driver, "Generation")
    wait_visible(driver, "generated_text", ".st-key-fig_topk .js-plotly-plot", timeout=180)
    settle(driver)
    generated_after = time.monotonic() - t0
    assert "Generated" in page_text(driver)
    shots.append(shot(driver, "2_generation"))

    t0 = time.monotonic()  # timed from the click to both figures visible (no settling sleeps)
    driver.find_element(By.XPATH, "//*[@role='tab'][.//p[normalize-space()='Attention']]").click()
    heatmap = wait_visible(driver, "attention_heatmap", ".st-key-fig_heatmap .js-plotly-plot")
    wait_visible(driver, "token_strip", ".st-key-fig_token .js-plotly-plot")
    attention_after = time.monotonic() - t0
    settle(driver)
    assert not driver.find_elements(By.CSS_SELECTOR, ".st-key-fig_grid")  # the grid is drawn on request
    t0 = time.monotonic()
    driver.find_element(By.CSS_SELECTOR, ".st-key-att_grid label").click()
    grid = wait_visible(driver, "head_grid", ".st-key-fig_grid .js-plotly-plot")
    grid_after = time.monotonic() - t0
    settle(driver)
    assert heatmap.size["height"] > 200
    # The heatmap draws as a plotly heatmap trace (an image layer inside the plot).
    assert driver.find_elements(By.CSS_SELECTOR, ".st-key-fig_heatmap .heatmaplayer, .st-key-fig_heatmap image")
    shots.append(shot(driver, "3_attention"))
    driver.execute_script("arguments[0].scrollIntoView()", grid)
    time.sleep(0.5)
    shots.append(ARTIFACTS / "dashboard_3b_head_grid.png")
    grid.screenshot(str(shots[-1]))

    open_tab(driver, "Corpus")
    if run_folder is not None:
        wait_visible(driver, "corpus_figure", ".st-key-fig_corpus .js-plotly-plot")
        assert "Opened" in page_text(driver)
    shots.append(shot(driver, "4_corpus"))

    # A second browser session at the same time: its own state, the same model and capture cache.
    first = driver.current_window_handle
    driver.switch_to.new_window("tab")
    driver.get(server)
    second_generate = wait_visible(driver, "second_session", ".st-key-generate button")
    settle(driver)
    assert "No capture yet" in page_text(driver)
    second_generate.click()
    # same as the first session: wait for the flash, then open the Generation tab explicitly (Streamlit's
    # automatic tab switch has left the page on the Prompt tab under load; CI failed on exactly that)
    WebDriverWait(driver, 180, poll_frequency=0.25).until(lambda d: re.search(r"Generated \d+ tokens", page_text(d)))
    settle(driver, timeout=180)
    open_tab(driver, "Generation")
    wait_visible(driver, "second_session_topk", ".st-key-fig_topk .js-plotly-plot", timeout=180)
    driver.close()
    driver.switch_to.window(first)

    open_tab(driver, "Export")
    wait_visible(driver, "download_button", ".st-key-dl_figure button")
    shots.append(shot(driver, "5_export"))

    text = page_text(driver)
    assert "Traceback" not in text and "Error" not in text.split("Download")[0][-200:]
    for path in shots:
        assert path.stat().st_size > 10_000, path
    print(f"head grid drawn in {grid_after:.1f} s after its toggle")
    print(f"generate -> top-k figure shown in {generated_after:.1f} s; Attention tab drawn in {attention_after:.1f} s;"
          f" screenshots: {[str(s) for s in shots]}")


# ----------------------------------------------------------------------------- stop a long generation
@pytest.fixture(scope="module")
def full_size_server(browser_tools, tmp_path_factory):
    """Full-size GPT-2 with random weights (the offline config): 256 tokens take long enough to stop."""
    src = gpt2_offline_dir()
    if src is None:
        pytest.skip("GPT-2 config/tokenizer not found: set INSPECTOR_GPT2_OFFLINE_DIR (see ../shared/README.md)")
    tmp = tmp_path_factory.mktemp("dash_full")
    args = ["--model", str(src), "--random-weights", "--device", "cpu"]
    with dashboard_server(args, _env(tmp, True), ARTIFACTS / "dashboard_server_full.log") as url:
        yield url


def _slider_to(drv, key: str, end: str) -> int:
    """Move the slider ``key`` to its maximum (``end="END"``) or minimum (``"HOME"``), or a step up
    (``"PAGE_UP"``), with the keyboard."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    value = f".st-key-{key} input[type='range']"
    drv.execute_script(f"document.querySelector(\"{value}\").focus()")
    ActionChains(drv).send_keys(getattr(Keys, end)).perform()
    settle(drv)
    return int(drv.find_element(By.CSS_SELECTOR, value).get_attribute("value"))


def _progress(drv, total: int) -> int | None:
    """Tokens done, as the progress bar says (``None`` when no generation runs)."""
    m = re.search(rf"Generated (\d+) of up to {total} tokens", page_text(drv))
    return int(m.group(1)) if m else None


def test_first_visit_says_the_model_is_loading(full_size_server, driver):
    """The first visit to a fresh server: the page is drawn and says what it waits for while the model loads."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(full_size_server)
    seen = WebDriverWait(driver, 90, poll_frequency=0.05).until(
        lambda d: t if "Loading the model" in (t := page_text(d)) else False)
    shot(driver, "0_loading")
    assert "inside a language model as it generates" in seen  # the page around it is drawn
    wait_visible(driver, "generate_after_loading", ".st-key-generate button", timeout=180)
    settle(driver)
    assert "Loading the model" not in page_text(driver)


def test_a_tab_click_while_generating_keeps_the_generation(full_size_server, driver):
    """Changing tabs while the model generates: it goes on, the page stays on the tab, the capture appears."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(full_size_server)
    wait_visible(driver, "generate_button", ".st-key-generate button", timeout=180)
    settle(driver)
    total = _slider_to(driver, "max_new_tokens", "PAGE_UP")  # a step of the slider up from 40: long enough
    total = _slider_to(driver, "max_new_tokens", "PAGE_UP")  # to click around, short enough to wait for
    assert 40 < total < 256
    wait_visible(driver, "generate_button", ".st-key-generate button").click()
    WebDriverWait(driver, 120, poll_frequency=0.1).until(lambda d: (_progress(d, total) or 0) >= 2)
    open_tab(driver, "Attention", wait=False)
    at_click = _progress(driver, total)
    assert at_click is not None, "the generation ended before the tab click"
    finished = re.compile(r"Generated (\d+) tokens in")
    WebDriverWait(driver, 120, poll_frequency=0.1).until(
        lambda d: (_progress(d, total) or 0) > at_click + 2 or finished.search(page_text(d)))
    open_tab(driver, "Analysis", wait=False)  # and again
    WebDriverWait(driver, 500, poll_frequency=0.25).until(lambda d: finished.search(page_text(d)))
    settle(driver)
    text = page_text(driver)
    shot(driver, "6b_after_tab_clicks")
    assert "Generation stopped" not in text and "Traceback" not in text
    found = finished.search(text)
    assert found is not None
    made = int(found.group(1))
    assert made > at_click + 2  # tokens generated after the tab clicks are in the capture
    tab = driver.find_element(By.XPATH, "//*[@role='tab'][.//p[normalize-space()='Analysis']]")
    assert tab.get_attribute("aria-selected") == "true"  # the reader stays where they went
    assert f"{made} generated tokens" in text  # the capture is the one shown


def test_changing_the_temperature_while_generating_cancels_and_says_so(full_size_server, driver):
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(full_size_server)
    wait_visible(driver, "generate_button", ".st-key-generate button", timeout=180)
    settle(driver)
    driver.find_element(By.XPATH, "//*[contains(@class, 'st-key-decoding')]//label[.//p[normalize-space()="
                                  "'Sampling']]").click()
    settle(driver)
    assert _slider_to(driver, "max_new_tokens", "END") == 256
    wait_visible(driver, "generate_button", ".st-key-generate button").click()
    WebDriverWait(driver, 120, poll_frequency=0.1).until(lambda d: (_progress(d, 256) or 0) >= 2)
    driver.execute_script("document.querySelector(\".st-key-temperature input[type='range']\").focus()")
    ActionChains(driver).send_keys(Keys.ARROW_LEFT).perform()
    WebDriverWait(driver, 60, poll_frequency=0.1).until(lambda d: "Generation stopped after" in page_text(d))
    settle(driver)
    text = page_text(driver)
    shot(driver, "8_setting_changed")
    assert "(stopped: the temperature changed)" in text and "nothing was kept" in text
    assert "No capture yet" in text and "Traceback" not in text


def test_stop_button_cancels_a_long_generation(full_size_server, driver):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(full_size_server)
    generate = wait_visible(driver, "generate_button", ".st-key-generate button")
    settle(driver)
    assert _slider_to(driver, "max_new_tokens", "END") == 256
    generate.click()
    stop = wait_visible(driver, "stop_button", ".st-key-stop_generation button", timeout=60)
    progress = re.compile(r"Generated (\d+) of up to 256")
    WebDriverWait(driver, 60, poll_frequency=0.1).until(
        lambda d: (m := progress.search(page_text(d))) is not None and int(m.group(1)) >= 3)
    driver.execute_script("arguments[0].scrollIntoView({block: 'center'})", stop)
    shot(driver, "6_generating")
    stop.click()
    WebDriverWait(driver, 60, poll_frequency=0.1).until(lambda d: "Generation stopped after" in page_text(d))
    settle(driver)
    text = page_text(driver)
    shot(driver, "7_stopped")
    assert "of up to 256 tokens" in text and "nothing was kept" in text and "(stopped: you pressed Stop)" in text
    done = int(text.split("Generation stopped after ")[1].split(" ")[0])
    assert 3 <= done < 256
    assert "No capture yet" in text and "Traceback" not in text
    assert not driver.find_elements(By.CSS_SELECTOR, ".st-key-stop_generation")

    # The lock was released and the model's hooks removed: a short generation works at once.
    assert _slider_to(driver, "max_new_tokens", "HOME") == 1
    wait_visible(driver, "generate_after_stop", ".st-key-generate button").click()
    WebDriverWait(driver, 60, poll_frequency=0.1).until(lambda d: "Generated 1 tokens" in page_text(d))
    assert "Generation stopped after" not in page_text(driver)
