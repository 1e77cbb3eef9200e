"""Pictures for the docs: the dashboard's Generation, Attention, logit-lens and "Why this token?" views.

Generates the reply to one DailyDialog validation turn with the offline demo model ``smollm2`` (in its chat
format), saves the capture, opens it in ``inspector dashboard --model smollm2 --capture FILE`` on 127.0.0.1 and
drives Debian's Chromium (Selenium) to screenshot four views into ``docs/images/``:
``generation.png``, ``attention.png``, ``lens.png`` and ``why.png``.

    .venv/bin/python scripts/screenshots.py [--dialogue 3] [--turn 0] [--out docs/images]

Needs the demo model (``bash scripts/setup.sh`` installs it), DailyDialog (``INSPECTOR_DAILYDIALOG_DIR`` or
``../shared/data/dailydialog``), and chromium with chromedriver.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))  # the browser helpers shared with the browser tests

import browser as B  # noqa: E402


def make_capture(dialogue: int, turn: int, max_new_tokens: int, out: Path) -> tuple[Path, str]:
    """The demo model's greedy reply to one DailyDialog turn, saved to ``out``; returns (path, what it shows)."""
    import inspector
    from inspector.data import build_prompt, load_dailydialog

    model = inspector.load_model("smollm2", device="cpu")
    data = load_dailydialog("validation")
    dlg = data.dialogues[dialogue]
    prompt = build_prompt(dlg, turn, model.tokenizer, split="validation")
    cap = model.generate(prompt.text, max_new_tokens=max_new_tokens, sources=prompt.source())
    print(f"dialogue {dlg.dial_id}, turn {turn}: {dlg.turns[turn]!r}\nreply: {cap.generated_text!r} "
          f"({cap.stop_reason}, {cap.num_steps} tokens)")
    return cap.save(out), f"DailyDialog validation dialogue {dlg.dial_id}, turn {turn}"


def _why(drv: Any, path: Path, step: int = 3) -> None:
    """The "Why this token?" view with generated token ``step`` picked (with the keyboard, as a reader would)."""
    from selenium.webdriver.common.action_chains import ActionChains
    from selenium.webdriver.common.keys import Keys

    B.open_tab(drv, "Why this token?", wait=False)  # three analyses of the capture run first (a minute on a CPU)
    B.wait_visible(drv, "attribution", ".st-key-why_attribution .insp-attr", timeout=600)
    B.settle(drv, timeout=600)
    drv.execute_script("document.querySelector(\".st-key-why_step input[type='range']\").focus()")
    ActionChains(drv).send_keys(*[Keys.ARROW_RIGHT] * step).perform()
    B.settle(drv, timeout=600)
    B.wait_visible(drv, "logit attribution", ".st-key-fig_why_parts .js-plotly-plot", timeout=600)
    B.settle(drv, timeout=600)
    drv.execute_script("document.querySelector('.st-key-why_step').scrollIntoView()")  # the token and its parts
    time.sleep(0.5)
    drv.save_screenshot(str(path))


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dialogue", type=int, default=4, help="index of the validation dialogue (default: %(default)s)")
    ap.add_argument("--turn", type=int, default=0, help="the turn answered (default: %(default)s)")
    ap.add_argument("--max-new-tokens", type=int, default=40)
    ap.add_argument("--out", default=str(ROOT / "docs" / "images"), help="folder for the PNG files")
    args = ap.parse_args(argv)
    tools = B.browser_tools()
    if isinstance(tools, str):
        raise SystemExit(tools)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="inspector-shots-") as tmp:
        path, _ = make_capture(args.dialogue, args.turn, args.max_new_tokens, Path(tmp) / "turn.safetensors")
        server_args = ["--model", "smollm2", "--device", "cpu", "--capture", str(path)]
        with B.dashboard_server(server_args, dict(__import__("os").environ), Path(tmp) / "server.log",
                                timeout=180) as url, B.chromium(tools, size="1400,1500") as drv:
            drv.get(url)
            B.wait_visible(drv, "top-k figure", ".st-key-fig_topk .js-plotly-plot", timeout=180)
            B.settle(drv)
            drv.save_screenshot(str(out / "generation.png"))
            B.open_tab(drv, "Attention")
            B.wait_visible(drv, "heatmap", ".st-key-fig_heatmap .js-plotly-plot")
            B.settle(drv)
            drv.save_screenshot(str(out / "attention.png"))
            B.open_tab(drv, "Analysis")
            from selenium.webdriver.common.by import By

            drv.find_element(By.CSS_SELECTOR, ".st-key-an_lens label").click()
            lens = B.wait_visible(drv, "lens", ".st-key-fig_lens .js-plotly-plot", timeout=180)
            B.settle(drv)
            drv.execute_script("arguments[0].scrollIntoView()", lens)
            time.sleep(0.5)
            drv.save_screenshot(str(out / "lens.png"))
            _why(drv, out / "why.png")
    for name in ("generation.png", "attention.png", "lens.png", "why.png"):
        print(out / name, (out / name).stat().st_size, "bytes")
    return 0


if __name__ == "__main__":
    sys.exit(main())
