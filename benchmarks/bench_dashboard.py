"""Dashboard redraw times in a real headless Chromium on a 100-token capture, against a bound.

Builds a capture of exactly ``--tokens`` tokens (prompt + generated) with full-size GPT-2
(random weights from ``../shared/models/gpt2-offline``: 12 layers x 12 heads), saves it,
starts ``inspector dashboard --capture FILE`` on 127.0.0.1 and drives Debian's Chromium
(Selenium; headless, no sandbox, a fixed window size). Each action is timed from the click (for a
select box: the Enter that commits the typed choice) until the figure it changes shows
the new data and Streamlit has finished the run (no running indicator, no stale
elements): what a user waits for. Actions, each ``--repeats`` times:

* open the page (the capture opens on the Generation tab: coloured text, top-k figure);
* Generation -> Attention tab (heatmap + token strip), and back;
* layer, head, aggregate, picked token; the head grid toggled on (and off).

Prints a table (median and worst seconds per action) and writes JSON. The bound: no
view takes more than a couple of seconds to redraw on a 100-token capture on a CPU.

    python benchmarks/bench_dashboard.py [--tokens 100] [--repeats 3] [--json out.json]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the browser helpers shared with tests/test_dashboard_browser.py
sys.path.insert(0, str(ROOT / "benchmarks"))

import browser as B  # noqa: E402
from _common import gpt2_offline_dir, machine, write_json  # noqa: E402

PROMPT = ("User: I was wondering whether you could help me find a good restaurant near the station "
          "for dinner tonight, somewhere quiet?\nAgent:")


def make_capture(tokens: int, out: Path) -> Path:
    """A ``tokens``-token greedy capture from full-size random-weights GPT-2, saved to ``out``."""
    import inspector

    im = inspector.load_model(str(gpt2_offline_dir()), random_weights=True, device="cpu")
    prompt_len = len(im.tokenizer(PROMPT)["input_ids"])
    if prompt_len >= tokens:
        raise SystemExit(f"--tokens {tokens} must exceed the prompt's {prompt_len} tokens")
    cap = im.generate(PROMPT, max_new_tokens=tokens - prompt_len)
    if cap.seq_len != tokens:
        raise SystemExit(f"generation stopped early ({cap.stop_reason}): {cap.seq_len} tokens, not {tokens}")
    return cap.save(out)


def _select(drv: Any, key: str, label: str) -> tuple[Callable[[], None], Callable[[], None]]:
    """(open + type, press Enter) for picking ``label`` in the Streamlit selectbox ``key``.

    Opening the list and typing to filter it happen before the clock starts; Enter, the
    moment the user commits the choice, starts it.
    """
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    def prepare() -> None:
        box = drv.find_element(By.CSS_SELECTOR, f".st-key-{key} input")
        box.click()
        box.send_keys(label)
        time.sleep(0.3)

    def commit() -> None:
        drv.find_element(By.CSS_SELECTOR, f".st-key-{key} input").send_keys(Keys.ENTER)

    return prepare, commit


def _button(drv: Any, key: str, text: str) -> None:
    from selenium.webdriver.common.by import By

    drv.find_element(By.XPATH, f"//*[contains(@class,'st-key-{key}')]//button[normalize-space()='{text}']").click()


def _redrawn(drv: Any, fig: str, before: str | None, timeout: float = 60.0) -> None:
    """Wait until chart ``fig`` shows data other than ``before``, then until Streamlit is idle."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        sig = B.figure_signature(drv, fig)
        if sig is not None and sig != before and drv.execute_script(B.IDLE_JS):
            return
        time.sleep(0.02)
    B.shot(drv, f"bench_timeout_{fig}")
    raise TimeoutError(f"figure {fig!r} was not redrawn within {timeout:.0f} s")


def _gone(drv: Any, fig: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if B.figure_signature(drv, fig) is None and drv.execute_script(B.IDLE_JS):
            return
        time.sleep(0.02)
    raise TimeoutError(f"figure {fig!r} did not go away within {timeout:.0f} s")


def timed(drv: Any, action: Callable[[], None] | tuple[Callable[[], None], Callable[[], None]], fig: str, *,
          removed: bool = False) -> float:
    """Seconds from ``action`` (or the commit half of a (prepare, commit) pair) to figure ``fig`` redrawn."""
    if isinstance(action, tuple):
        prepare, action = action
        prepare()
    before = B.figure_signature(drv, fig)
    t0 = time.monotonic()
    action()
    if removed:
        _gone(drv, fig)
    else:
        _redrawn(drv, fig, before)
    took = time.monotonic() - t0
    time.sleep(0.3)  # let the browser go quiet before the next action
    return took


def run(drv: Any, url: str, repeats: int) -> dict[str, list[float]]:
    from selenium.webdriver.common.by import By

    times: dict[str, list[float]] = {}

    def add(name: str, secs: float) -> None:
        times.setdefault(name, []).append(secs)

    for r in range(repeats):
        t0 = time.monotonic()
        drv.get(url)
        _redrawn(drv, "fig_topk", None, timeout=120)
        add("open page (Generation tab)", time.monotonic() - t0)
        B.settle(drv, pause=0.3)
        if "Opened capture file" not in B.page_text(drv):
            raise SystemExit("the page did not open the capture given with --capture")
        add("Generation -> Attention tab", timed(drv, lambda: B.open_tab(drv, "Attention", wait=False),
                                                 "fig_heatmap"))
        add("layer: all -> layer 5", timed(drv, _select(drv, "att_layer", "layer 5"), "fig_heatmap"))
        add("head: all -> head 7", timed(drv, _select(drv, "att_head", "head 7"), "fig_heatmap"))
        add("head 7 -> all heads", timed(drv, _select(drv, "att_head", "all heads"), "fig_heatmap"))
        add("aggregate: mean -> max", timed(drv, lambda: _button(drv, "att_agg", "max"), "fig_heatmap"))
        add("pick token 60", timed(drv, _select(drv, "att_token", "60: "), "fig_token"))
        add("head grid: toggle on", timed(
            drv, lambda: drv.find_element(By.CSS_SELECTOR, ".st-key-att_grid label").click(), "fig_grid"))
        if r == 0:
            grid = drv.find_element(By.CSS_SELECTOR, ".st-key-fig_grid")
            drv.execute_script("arguments[0].scrollIntoView()", grid)
            time.sleep(0.5)
            grid.screenshot(str(B.ARTIFACTS / "dashboard_bench_head_grid.png"))
            drv.execute_script("window.scrollTo(0, 0)")
        add("layer with grid shown: -> layer 2", timed(drv, _select(drv, "att_layer", "layer 2"),
                                                        "fig_heatmap"))
        add("head grid: toggle off", timed(
            drv, lambda: drv.find_element(By.CSS_SELECTOR, ".st-key-att_grid label").click(), "fig_grid",
            removed=True))
        add("Attention -> Generation tab", timed(drv, lambda: B.open_tab(drv, "Generation", wait=False),
                                                 "fig_topk"))
        if r == 0:
            B.shot(drv, "bench_generation")
    return times


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tokens", type=int, default=100, help="capture length, prompt + generated (default 100)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", default=str(ROOT / "artifacts" / "bench_dashboard.json"))
    args = ap.parse_args(argv)
    tools = B.browser_tools()
    if isinstance(tools, str):
        raise SystemExit(tools)
    work = ROOT / "artifacts" / "bench_dashboard"
    work.mkdir(parents=True, exist_ok=True)
    cap_path = make_capture(args.tokens, work / f"capture_{args.tokens}.safetensors")
    env = dict(os.environ, PYTHONUNBUFFERED="1", HF_HUB_OFFLINE="1")
    server_args = ["--model", "builtin", "--capture", str(cap_path)]
    with B.dashboard_server(server_args, env, work / "server.log") as url, B.chromium(tools) as drv:
        times = run(drv, url, args.repeats)
    rows = {name: {"median_s": round(statistics.median(v), 2), "max_s": round(max(v), 2), "runs": len(v)}
            for name, v in times.items()}
    width = max(len(n) for n in rows)
    print(f"Dashboard redraw in headless Chromium, {args.tokens}-token capture, 12 layers x 12 heads "
          f"(seconds from click to the new figure shown and the run finished)")
    print(f"{'action':<{width}}  median    max")
    for name, row in rows.items():
        print(f"{name:<{width}}  {row['median_s']:6.2f} {row['max_s']:6.2f}")
    worst = max(r["max_s"] for n, r in rows.items() if not n.startswith("open page"))
    print(f"slowest redraw (any action but the first page load): {worst:.2f} s")
    write_json(args.json, {"benchmark": "dashboard_redraw", "tokens": args.tokens, "repeats": args.repeats,
                           "machine": machine(), "actions": rows, "slowest_redraw_s": worst})
    return 0


if __name__ == "__main__":
    sys.exit(main())
