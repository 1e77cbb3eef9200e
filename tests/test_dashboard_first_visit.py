"""A new user's first hour with the dashboard (AppTest): the sidebar shows the model actually loaded, the Corpus
tab lists the run folders, and a generation runs in the background, cancelled only by Stop or by a change to
what it uses (the plumbing, with a real model; the page in a browser is in ``test_dashboard_browser.py``)."""

from __future__ import annotations

import contextlib
import os
import threading
from pathlib import Path

import pytest
from conftest import gpt2_offline_dir
from dashboard_helpers import new_app, ok, set_server_address, texts
from run_helpers import write_dailydialog

pytest.importorskip("streamlit.testing.v1")


@pytest.fixture(autouse=True)
def _bound_locally():
    before = set_server_address("127.0.0.1")
    yield
    set_server_address(before)


@pytest.fixture
def fresh(monkeypatch, tmp_path):
    from dashboard import state

    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "builtin")
    for name in ("INSPECTOR_DASHBOARD_RUN", "INSPECTOR_DASHBOARD_CAPTURE", "INSPECTOR_DASHBOARD_RANDOM_WEIGHTS",
                 "INSPECTOR_DASHBOARD_REMOTE", "INSPECTOR_DASHBOARD_CONFIG_DIR"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("INSPECTOR_DAILYDIALOG_DIR", str(write_dailydialog(tmp_path / "dailydialog")))
    state.clear_caches()
    yield state
    state.clear_caches()


# ----------------------------------------------------------------------------- the model the sidebar shows
def test_after_a_fallback_the_model_box_and_switch_show_the_model_loaded(no_demo_model, fresh, monkeypatch,
                                                                         tmp_path):
    """Asked for a hub id that cannot load here: the page uses GPT-2's offline config with random weights,
    and the sidebar says that (box, switch, caption), what was asked, and why; nothing loads twice."""
    src = gpt2_offline_dir()
    if src is None:
        pytest.skip("GPT-2 config/tokenizer not found: set INSPECTOR_GPT2_OFFLINE_DIR (see ../shared/README.md)")
    from transformers import GPT2Config

    narrow = tmp_path / "gpt2-narrow"  # GPT-2's tokenizer with a small config: quick to build
    GPT2Config(n_layer=2, n_head=2, n_embd=32).save_pretrained(narrow)
    for name in ("tokenizer.json", "tokenizer_config.json", "vocab.json", "merges.txt"):
        if (src / name).exists():
            (narrow / name).symlink_to(src / name)
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf_home"))
    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "gpt2")
    monkeypatch.setenv("INSPECTOR_DASHBOARD_CONFIG_DIR", str(narrow))
    monkeypatch.setattr("inspector._fallback.default_config_dirs", lambda extra=None: [Path(extra)] if extra else [])

    at = new_app().run()
    ok(at)
    assert at.sidebar.text_input(key="model_name").value == str(narrow)  # what is loaded, not "gpt2"
    assert at.sidebar.toggle(key="random_weights").value is True
    caption = texts(at.sidebar.caption).replace("\\", "")
    assert f"Loaded: {narrow}" in caption and "random weights" in caption and "not quantised" in caption
    said = texts(at.sidebar.warning).replace("\\", "")
    assert "Asked for gpt2" in said and "Could not load 'gpt2'" in said
    assert "Could not load 'gpt2'" in texts(at.error)  # the page's banner names the model asked for

    # the box now names the fallback: rerunning loads nothing new and keeps saying what was asked
    loads = []
    monkeypatch.setattr("inspector._fallback.load_with_fallback", lambda *a, **k: loads.append(a))
    at.run()
    ok(at)
    assert not loads
    assert "Asked for gpt2" in texts(at.sidebar.warning).replace("\\", "")
    assert at.sidebar.text_input(key="model_name").value == str(narrow)


@pytest.mark.slow
def test_the_demo_model_is_named_with_its_quantisation(fresh, monkeypatch, smollm2):
    """A GGUF model: the sidebar says it is quantised, and in which format (as the file records it)."""
    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "smollm2")
    monkeypatch.setenv("INSPECTOR_DASHBOARD_DEVICE", "cpu")
    at = new_app().run()
    ok(at)
    caption = texts(at.sidebar.caption).replace("\\", "")
    quant = smollm2.model_file["quantization"]
    assert f"{quant} GGUF, de-quantised to float32" in caption and "real (pretrained) weights" in caption
    assert at.sidebar.toggle(key="random_weights").value is False


# ----------------------------------------------------------------------------- the Corpus tab's run list
def _run(out: Path, data: Path, halt_after_first_batch: bool = False) -> None:
    from inspector._capture.settings import GenerationSettings
    from inspector._fallback import builtin_model
    from inspector.runs import RunConfig, run_corpus

    class Halt(Exception):
        pass

    def halt(_batch: int) -> None:
        raise Halt

    cfg = RunConfig(split="validation", data=str(data), limit=8, batch_size=4, attention="full",
                    settings=GenerationSettings(max_new_tokens=3))
    with contextlib.suppress(Halt):
        run_corpus(cfg, out, builtin_model(), progress=False, log=lambda _m: None,
                   on_batch=halt if halt_after_first_batch else None)


def test_the_corpus_tab_lists_the_runs_newest_first_and_opens_one(fresh, monkeypatch, tmp_path):
    from dashboard.corpus_view import run_button_key

    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "out" / "runs"
    data = Path(os.environ["INSPECTOR_DAILYDIALOG_DIR"])
    _run(runs / "older", data)  # 8 turns in batches of 4: finished
    _run(runs / "newer", data, halt_after_first_batch=True)  # stopped after its first batch: 4 of 8
    (runs / "notes").mkdir()  # a folder that holds no run is not listed
    os.utime(runs / "older", (1_000_000_000, 1_000_000_000))
    os.utime(runs / "newer", (2_000_000_000, 2_000_000_000))

    at = new_app().run()
    at.session_state["view"] = "Corpus"
    at.run()
    ok(at)
    listed = [m.value.replace("\\", "") for m in at.markdown if m.value.startswith("**")]
    lines = [m for m in listed if m.startswith(("**newer**", "**older**", "**notes**"))]
    assert [m.split("**")[1] for m in lines] == ["newer", "older"]  # newest first; not the empty folder
    assert "stopped" in lines[0] and "4 of 8 turns" in lines[0]
    assert "finished" in lines[1] and "8 of 8 turns" in lines[1]

    at.button(key=run_button_key(Path("out/runs") / "older")).click().run()
    ok(at)
    assert at.session_state["run_path"] == str(Path("out/runs") / "older")
    assert at.text_input(key="run_dir").value == str(Path("out/runs") / "older")
    assert "8 turns" in texts(at.success)  # the run is open: its table and figures follow
    assert at.get("plotly_chart")


# ----------------------------------------------------------------------------- background generation plumbing
def _hooks(model) -> int:
    return sum(len(m._forward_hooks) + len(m._forward_pre_hooks) for m in model.modules())


def _job(state, load, req, prompt, settings, on_step=None):
    from dashboard import jobs

    job = jobs.GenerationJob(origin="test", settings=settings, settings_key=state.settings_key(settings),
                             model_key=req.key, total=settings.max_new_tokens)
    lock, store = state.generation_lock(), state.capture_store()

    def step(done, total):
        if on_step is not None:
            on_step(done)
        job.on_step(done, total)

    def work(job):
        return state.generate(load, req, prompt, settings, {"kind": "text"}, on_step=step, on_start=job.on_start,
                              store=store, lock=lock)

    return job, jobs.start(job, work)


def test_a_cancelled_generation_stops_releases_the_lock_and_keeps_nothing(fresh):
    from inspector._capture.settings import GenerationSettings

    state = fresh
    req = state.ModelRequest("builtin", "cpu")
    load = state.load_model(req)
    hooks_before = _hooks(load.model.model)
    settings = GenerationSettings(max_new_tokens=200)
    first_step = threading.Event()
    resume = threading.Event()

    def pause_at_step_2(done):
        if done == 2:
            first_step.set()
            assert resume.wait(60)

    job, thread = _job(state, load, req, "User: hi\nAgent:", settings, on_step=pause_at_step_2)
    assert first_step.wait(60)
    job.cancel("you pressed Stop")
    job.cancel("the temperature changed")  # the first reason is the one kept
    resume.set()
    thread.join(60)
    assert job.outcome == "cancelled" and str(job.error) == "you pressed Stop"
    assert job.done == 2 and job.result is None
    assert state.generate_calls() == 0  # nothing generated to the end, nothing cached
    assert _hooks(load.model.model) == hooks_before
    assert state.generation_lock().acquire(blocking=False)
    state.generation_lock().release()
    # the same request runs to the end afterwards
    job, thread = _job(state, load, req, "User: hi\nAgent:", GenerationSettings(max_new_tokens=3))
    thread.join(60)
    assert job.outcome == "done" and 1 <= job.result.num_steps <= 3


def test_a_generation_waiting_for_the_lock_can_be_cancelled_before_it_starts(fresh):
    from inspector._capture.settings import GenerationSettings

    state = fresh
    req = state.ModelRequest("builtin", "cpu")
    load = state.load_model(req)
    lock = state.generation_lock()
    assert lock.acquire(timeout=60)  # another page is generating
    try:
        job, thread = _job(state, load, req, "User: wait\nAgent:", GenerationSettings(max_new_tokens=5))
        assert job.waiting and job.outcome == "running"
        job.cancel("the model changed")
    finally:
        lock.release()
    thread.join(60)
    assert job.outcome == "cancelled" and str(job.error) == "the model changed" and job.done == 0
    assert state.generate_calls() == 0


def test_the_page_names_the_setting_that_changed(fresh):
    from dataclasses import replace

    from dashboard import jobs
    from dashboard.job_view import changed
    from inspector._capture.settings import GenerationSettings

    state = fresh
    req = state.ModelRequest("builtin", "cpu")
    before = GenerationSettings(max_new_tokens=40, do_sample=True, temperature=1.0)
    job = jobs.GenerationJob(origin="t", settings=before, settings_key=state.settings_key(before),
                             model_key=req.key, total=40)
    assert changed(job, req, before) is None
    assert changed(job, req, replace(before, temperature=0.7)) == "the temperature"
    assert changed(job, req, replace(before, max_new_tokens=12, seed=3)) == "Max new tokens and the seed"
    assert changed(job, state.ModelRequest("builtin", "cpu", random_weights=True), before) == "the model"
    assert changed(job, req, None) == "the decoding settings (now invalid)"


def test_setting_labels_name_every_setting_the_page_sets():
    from dashboard.decoding import SETTING_LABELS, SETTING_WIDGETS

    assert set(SETTING_LABELS) == set(SETTING_WIDGETS)
