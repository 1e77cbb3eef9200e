"""Corpus runs started from the dashboard (AppTest): start, a reloaded page sees it, a second start is refused,
stop, resume; the result equals an uninterrupted run of the same command on the command line."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
from dashboard_helpers import new_app, ok, set_server_address, texts
from run_helpers import stored_run_command, write_byte_model_folder, write_dailydialog

from inspector.runs import load_run, run_status

pytest.importorskip("streamlit.testing.v1")
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _bound_locally():
    before = set_server_address("127.0.0.1")
    yield
    set_server_address(before)


@pytest.fixture
def page(monkeypatch, tmp_path):
    """The page on a tiny random-weights model folder that `inspector run` can load, and a handmade DailyDialog."""
    from dashboard import state

    model = write_byte_model_folder(tmp_path / "tiny-gpt2")
    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", str(model))
    monkeypatch.setenv("INSPECTOR_DASHBOARD_RANDOM_WEIGHTS", "1")
    monkeypatch.setenv("INSPECTOR_DASHBOARD_DEVICE", "cpu")
    monkeypatch.setenv("INSPECTOR_DAILYDIALOG_DIR", str(write_dailydialog(tmp_path / "dailydialog")))
    for name in ("INSPECTOR_DASHBOARD_RUN", "INSPECTOR_DASHBOARD_CAPTURE", "INSPECTOR_DASHBOARD_REMOTE"):
        monkeypatch.delenv(name, raising=False)
    state.clear_caches()
    yield tmp_path
    state.clear_caches()


def plain(elements) -> str:
    """The texts of ``elements`` without the Markdown escapes the page adds."""
    return texts(elements).replace("\\", "")


def corpus_page():
    at = new_app().run()
    ok(at)
    at.session_state["view"] = "Corpus"
    at.run()
    ok(at)
    return at


def wait_for(out: Path, ready, timeout: float = 240.0):
    deadline = time.monotonic() + timeout
    while not ready(status := run_status(out)):
        assert time.monotonic() < deadline, f"timed out: {status.describe()}\n{status.log_tail}"
        time.sleep(0.05)
    return status


@pytest.mark.slow
def test_start_reload_refuse_stop_resume_from_the_page(page):
    out = page / "runs" / "from-page"
    at = corpus_page()
    # long enough (29 turns of 128 tokens, one at a time) to be still running through every step below
    at.slider(key="max_new_tokens").set_value(128)
    at.text_input(key="run_out").set_value(str(out))
    at.number_input(key="run_limit").set_value(0)
    at.number_input(key="run_batch").set_value(1)
    at.run()
    ok(at)
    assert "greedy, up to 128 new tokens" in texts(at.caption)
    at.button(key="run_start").click().run()
    ok(at)
    assert not at.error, texts(at.error)
    assert "starting" in plain(at.info) or "running" in plain(at.info)

    running = wait_for(out, lambda s: s.state == "running" and s.batches_done >= 2)
    # a reloaded page (a new session) finds the run, running, and its table filling in
    again = corpus_page()
    assert again.text_input(key="run_out").value == str(out)
    assert f"running (pid {running.pid}" in plain(again.info)
    assert "of 29 planned (status: running)" in plain(again.success)
    assert any(d.key == "corpus_table" for d in again.dataframe)
    # the table fills in as batches finish, and a turn of a batch finished since the run was opened opens
    wait_for(out, lambda s: s.batches_done >= running.batches_done + 2)
    # read before the page: batches land meanwhile, and a turn newer than the page's table is not offered
    rows = load_run(out).summary
    newest = rows.loc[rows["batch"].idxmax()]
    again.run()
    ok(again)
    assert len(again.selectbox(key="corpus_row").options) >= running.batches_done + 2
    again.selectbox(key="corpus_row").set_value((int(newest["dial_id"]), int(newest["turn"]))).run()
    ok(again)
    assert not again.error, plain(again.error)
    assert "Opened dialogue" in plain(again.success)
    # starting it a second time (the same form, another page) is refused, naming the writer
    again.button(key="run_start").click().run()
    ok(again)
    assert f"this run is already running (pid {running.pid}, started" in plain(again.error)

    again.button(key="run_stop").click().run()
    ok(again)
    assert not again.error, plain(again.error)  # "Could not stop the run: ..."
    stopped = run_status(out)
    assert stopped.state == "stopped" and 2 <= stopped.turns_done < 29, stopped.describe()
    assert "stopped" in plain(again.warning)
    assert not (out / "summary.parquet").exists(), "the run finished before it was stopped; make it longer"

    at.run()  # the first page sees the stop too, and resumes
    ok(at)
    assert "stopped" in plain(at.warning)
    at.button(key="run_resume").click().run()
    ok(at)
    assert not at.error, texts(at.error)
    final = wait_for(out, lambda s: s.state == "finished" and s.exit_code is not None)
    assert final.exit_code == 0 and "resuming" in final.log_tail
    at.run()
    ok(at)
    assert "finished: 29 of 29 turns" in plain(at.success)

    # the same command on the command line, uninterrupted, into another folder
    # the page's child runs the config stored in the folder; the same config said as `inspector run` flags
    reference = page / "runs" / "cli"
    cli = [sys.executable, "-m", "inspector.cli.main", *stored_run_command(out, reference)]
    done = subprocess.run(cli, capture_output=True, text=True, timeout=400, cwd=page,
                          env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    ran, ref = load_run(out), load_run(reference)
    assert ran.settings["identity"] == ref.settings["identity"]
    assert ran.settings["identity"]["limit"] is None and ran.settings["identity"]["batch_size"] == 1
    assert ran.settings["identity"]["generation"]["max_new_tokens"] == 128
    pd.testing.assert_frame_equal(ran.summary.drop(columns="seconds"), ref.summary.drop(columns="seconds"),
                                  check_exact=True)


def test_the_built_in_model_cannot_start_a_run_and_says_why(page, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "builtin")
    at = corpus_page()
    at.text_input(key="run_out").set_value(str(page / "runs" / "x"))
    at.button(key="run_start").click().run()
    ok(at)
    assert "built-in model, which `inspector run` cannot load" in texts(at.error)
    assert not (page / "runs" / "x").exists()


def test_a_shared_page_offers_no_launcher(page, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DASHBOARD_REMOTE", "1")
    set_server_address("0.0.0.0")
    at = corpus_page()
    assert not [b for b in at.button if b.key == "run_start"]
    assert "Starting corpus runs is off" in texts(at.caption)
