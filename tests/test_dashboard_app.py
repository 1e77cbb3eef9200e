"""The Streamlit dashboard end to end with AppTest, on the built-in random-weights model.

AppTest runs ``dashboard/app.py`` in this process, so :mod:`dashboard.state`'s
counter of model generations is the one the app uses: views must redraw without
generating again. Widgets are driven by their keys.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import pytest
from conftest import ROOT, dailydialog_dir
from dashboard_helpers import free_text, new_app, ok, set_server_address, texts, widgets

st_testing = pytest.importorskip("streamlit.testing.v1")


# ----------------------------------------------------------------------------- fixtures
@pytest.fixture(autouse=True)
def _bound_locally():
    """AppTest runs no server: say the page is bound to localhost, as every documented start does
    (the shipped .streamlit/config.toml is read only when pytest starts in the repository root)."""
    before = set_server_address("127.0.0.1")
    yield
    set_server_address(before)


@pytest.fixture
def fresh(monkeypatch):
    """Built-in model, caches cleared, DailyDialog from the shared copy when present."""
    from dashboard import state

    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "builtin")
    monkeypatch.delenv("INSPECTOR_DASHBOARD_RUN", raising=False)
    monkeypatch.delenv("INSPECTOR_DASHBOARD_CAPTURE", raising=False)
    monkeypatch.delenv("INSPECTOR_DASHBOARD_RANDOM_WEIGHTS", raising=False)
    monkeypatch.delenv("INSPECTOR_DASHBOARD_REMOTE", raising=False)
    dd = dailydialog_dir()
    if dd is not None:
        monkeypatch.setenv("INSPECTOR_DAILYDIALOG_DIR", str(dd))
    else:
        monkeypatch.delenv("INSPECTOR_DAILYDIALOG_DIR", raising=False)
    state.clear_caches()
    yield state
    state.clear_caches()


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A 6-turn corpus run with the built-in model (full attention, captures kept)."""
    dd = dailydialog_dir()
    if dd is None:
        pytest.skip("DailyDialog not found: set INSPECTOR_DAILYDIALOG_DIR (see ../shared/README.md)")
    from inspector._capture.settings import GenerationSettings
    from inspector._fallback import builtin_model
    from inspector.runs import RunConfig, run_corpus

    out = tmp_path_factory.mktemp("dash_runs") / "demo"
    cfg = RunConfig(split="validation", data=str(dd), limit=6, batch_size=6, attention="full",
                    settings=GenerationSettings(max_new_tokens=6))
    run_corpus(cfg, out, builtin_model(), progress=False, log=lambda _m: None)
    return out


# ----------------------------------------------------------------------------- the page
def test_page_opens_with_banner_and_keyed_widgets(fresh):
    at = new_app().run()
    ok(at)
    assert "Random weights: the generated text is meaningless" in texts(at.warning)
    assert "No capture yet" in texts(at.info)
    unkeyed = [type(w).__name__ for w in widgets(at) if not w.key]
    assert not unkeyed, f"widgets without a key: {unkeyed}"
    caption = texts(at.sidebar.caption)
    assert "cpu" in caption and "cuda" in caption and "mps" in caption  # which devices exist here
    assert "Loaded: builtin" in caption


def test_pick_a_turn_generate_then_change_views_without_generating(fresh):
    if dailydialog_dir() is None:
        pytest.skip("DailyDialog not found: set INSPECTOR_DAILYDIALOG_DIR")
    state = fresh
    at = new_app().run()
    ok(at)
    at.multiselect(key="f_act").select("question")
    at.multiselect(key="f_response_emotion").select("happiness").run()
    ok(at)
    options = at.selectbox(key="dd_turn").options
    assert options and "question/" in options[0] and "/happiness" in options[0]
    at.selectbox(key="dd_turn").set_value(at.selectbox(key="dd_turn").value).run()
    dial_id, turn = at.selectbox(key="dd_turn").value
    assert "reference response" in texts(at.markdown)
    at.slider(key="max_new_tokens").set_value(12)
    at.button(key="generate").click().run()
    ok(at)
    assert state.generate_calls() == 1
    cap = at.session_state[state.CAPTURE]
    assert cap.num_steps >= 1 and cap.meta.random_weights
    assert cap.meta.source["kind"] == "dailydialog" and (cap.meta.source["dial_id"], cap.meta.source["turn"]) == (
        dial_id, turn)
    assert at.session_state[state.VIEW] == "Generation"  # switched to show the result
    assert "Generated" in texts(at.success)
    assert at.get("plotly_chart")  # top-k figure

    at.segmented_control(key="gen_color_by").set_value("entropy").run()
    ok(at)
    at.session_state[state.VIEW] = "Attention"
    at.run()
    ok(at)
    assert len(at.get("plotly_chart")) == 2  # heatmap, token strip; the head grid is drawn on request
    at.toggle(key="att_grid").set_value(True).run()
    ok(at)
    assert len(at.get("plotly_chart")) == 3  # + head grid
    for key, value in (("att_layer", 1), ("att_head", 2), ("att_layer", "all")):
        at.selectbox(key=key).set_value(value).run()
        ok(at)
    for agg in ("max", "stacked-mean", "mean"):
        at.segmented_control(key="att_agg").set_value(agg).run()
        ok(at)
    at.selectbox(key="att_token").set_value(cap.seq_len - 1).run()
    ok(at)
    assert state.generate_calls() == 1, "changing layer/head/aggregate must not generate again"

    # Same prompt and settings again: served from the capture cache.
    at.session_state[state.VIEW] = "Prompt"
    at.run()
    at.button(key="generate").click().run()
    ok(at)
    assert state.generate_calls() == 1
    # New settings: a new generation.
    at.session_state[state.VIEW] = "Prompt"
    at.run()
    at.slider(key="max_new_tokens").set_value(5)
    at.button(key="generate").click().run()
    ok(at)
    assert state.generate_calls() == 2
    assert at.session_state[state.CAPTURE].num_steps <= 5


def test_bad_prompts_show_a_message_and_the_app_keeps_working(fresh):
    state = fresh
    at = new_app().run()
    free_text(at, "   ")
    at.button(key="generate").click().run()
    ok(at)
    assert "prompt is empty" in texts(at.error)
    assert state.generate_calls() == 0

    free_text(at, "word " * 400)  # 2000 bytes: the built-in byte-level model's context is 1024 tokens
    at.run()
    assert "Too long" in texts(at.warning)
    at.button(key="generate").click().run()
    ok(at)
    assert "context" in texts(at.error)
    assert state.generate_calls() == 0

    at.sidebar.checkbox(key="truncate_prompt").check()
    at.sidebar.slider(key="max_new_tokens").set_value(4)
    at.button(key="generate").click().run()
    ok(at)
    assert state.generate_calls() == 1
    assert at.session_state[state.CAPTURE].prompt_len == 1024 - 4

    at.session_state[state.VIEW] = "Prompt"
    at.run()
    free_text(at, "User: hello there\nAgent:")
    at.sidebar.text_input(key="stop_strings").set_value("User:,\\n")
    at.button(key="generate").click().run()
    ok(at)
    assert state.generate_calls() == 2
    assert at.session_state[state.CAPTURE].meta.generation["stop_strings"] == ["User:", "\n"]


def test_a_failing_generation_is_said_and_the_app_keeps_working(fresh, monkeypatch):
    from inspector._model import InspectorModel

    original = InspectorModel.generate

    def out_of_memory(self, *args, **kwargs):
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(InspectorModel, "generate", out_of_memory)
    at = new_app().run()
    free_text(at, "User: hi\nAgent:")
    at.button(key="generate").click().run()
    ok(at)
    assert "Generation failed (RuntimeError): out of memory (simulated)" in texts(at.error)
    assert "Generation stopped" not in texts(at.warning)  # failed, not stopped
    assert fresh.JOB not in at.session_state and fresh.generate_calls() == 0

    monkeypatch.setattr(InspectorModel, "generate", original)
    at.button(key="generate").click().run()
    ok(at)
    assert fresh.generate_calls() == 1 and at.session_state[fresh.CAPTURE].num_steps > 0


def test_bad_decoding_settings_disable_generate(fresh):
    at = new_app().run()
    at.sidebar.radio(key="decoding").set_value("beam").run()
    ok(at)
    at.sidebar.slider(key="num_beams").set_value(2).run()
    ok(at)
    assert not at.button(key="generate").disabled
    at.button(key="generate").click().run()
    ok(at)
    assert at.session_state[fresh.CAPTURE].meta.generation["num_beams"] == 2


def test_without_dailydialog_it_says_how_and_free_text_works(fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("INSPECTOR_DAILYDIALOG_DIR", str(tmp_path / "nowhere"))
    at = new_app().run()
    ok(at)
    warning = texts(at.warning)
    assert "DailyDialog could not be loaded" in warning and "INSPECTOR_DAILYDIALOG_DIR" in warning
    # The page opens on free text with a prompt, so Generate works without typing anything.
    assert at.radio(key="prompt_source").value == "Free text" and at.text_area(key="free_text").value.strip()
    at.button(key="generate").click().run()
    ok(at)
    assert fresh.generate_calls() == 1
    # No local copy at all and no Hub: said at once, not after a minute of retries.
    monkeypatch.delenv("INSPECTOR_DAILYDIALOG_DIR")
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    at = new_app().run()
    ok(at)
    assert "Hub cannot be reached" in texts(at.warning) and "Point at a local copy" in texts(at.warning)


def test_model_that_cannot_load_falls_back_with_a_banner(no_demo_model, fresh, monkeypatch, tmp_path):
    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", str(tmp_path / "no-such-model"))
    monkeypatch.setenv("INSPECTOR_DASHBOARD_CONFIG_DIR", str(tmp_path / "no-config-either"))
    monkeypatch.setattr("inspector._fallback.default_config_dirs", lambda extra=None: [Path(extra)] if extra else [])
    at = new_app().run()
    ok(at)
    assert "Could not load" in texts(at.error) and "meaningless" in texts(at.error)
    assert "built-in" in texts(at.error)
    free_text(at, "hello")
    at.button(key="generate").click().run()
    ok(at)
    assert at.session_state[fresh.CAPTURE].meta.random_weights


# ----------------------------------------------------------------------------- corpus
def open_run(at, path) -> None:
    at.session_state["view"] = "Corpus"
    at.run()
    at.text_input(key="run_dir").set_value(str(path))
    at.button(key="open_run").click().run()
    ok(at)


def test_open_run_pick_a_row_and_export(fresh, run_dir):
    from inspector.runs import load_run

    state = fresh
    at = new_app().run()
    open_run(at, run_dir)
    assert "Opened" in texts(at.success)
    assert "random weights" in texts(at.warning)
    assert any(d.key == "corpus_table" for d in at.dataframe)
    stats = next(d for d in at.dataframe if d.key != "corpus_table").value
    assert "count" in stats.columns and stats["count"].sum() == 6
    at.segmented_control(key="corpus_by").set_value("response_act").run()
    ok(at)
    summary = load_run(run_dir).summary
    pick = (int(summary["dial_id"].iloc[2]), int(summary["turn"].iloc[2]))
    assert at.selectbox(key="corpus_row").value is None  # nothing opened until a row is chosen
    assert f"dialogue {pick[0]} · turn {pick[1]}" in at.selectbox(key="corpus_row").options[2]
    at.selectbox(key="corpus_row").set_value(pick).run()
    ok(at)
    cap = at.session_state[state.CAPTURE]
    assert cap.meta.source["kind"] == "dailydialog"
    assert (cap.meta.source["dial_id"], cap.meta.source["turn"]) == pick
    assert "is open in the other views" in texts(at.caption) or "Opened dialogue" in texts(at.success)
    assert state.generate_calls() == 0  # opened from disk, not generated

    at.session_state[state.VIEW] = "Attention"
    at.run()
    ok(at)
    assert at.get("plotly_chart")
    for view in state.VIEWS:  # every widget on every view has a key (tests and shadows rely on it)
        at.session_state[state.VIEW] = view
        at.run()
        ok(at)
        unkeyed = [type(w).__name__ for w in widgets(at) if not w.key]
        assert not unkeyed, f"{view}: widgets without a key: {unkeyed}"
    at.session_state[state.VIEW] = "Export"
    at.run()
    ok(at)
    for kind in ("heatmap", "heads", "token", "topk", "text", "corpus"):
        at.selectbox(key="export_kind").set_value(kind).run()
        ok(at)
        assert not at.error, texts(at.error)
        assert at.get("download_button"), kind
    at.selectbox(key="export_format").set_value("html").run()
    ok(at)
    assert not at.error, texts(at.error)
    at.get("download_button")[0].click().run()
    ok(at)
    assert state.generate_calls() == 0


def test_run_folder_missing_or_corrupted_shows_a_message(fresh, run_dir, tmp_path):
    import shutil

    from inspector.runs import load_run

    at = new_app().run()
    open_run(at, tmp_path / "missing")
    assert "does not exist" in texts(at.error)
    (tmp_path / "empty").mkdir()
    open_run(at, tmp_path / "empty")
    assert "not an inspector run folder" in texts(at.error)
    broken = tmp_path / "broken"
    shutil.copytree(run_dir, broken)
    (broken / "summary.parquet").write_bytes(b"this is not parquet")
    open_run(at, broken)
    assert "Could not open run" in texts(at.error)
    bad_json = tmp_path / "bad_json"
    shutil.copytree(run_dir, bad_json)
    (bad_json / "run.json").write_text("{ truncated")
    open_run(at, bad_json)
    assert "unreadable run.json" in texts(at.error)
    # A capture file that went missing: the row says so, the page keeps working.
    gone = tmp_path / "gone"
    shutil.copytree(run_dir, gone)
    shutil.rmtree(gone / "captures")
    open_run(at, gone)
    summary = load_run(gone).summary
    at.selectbox(key="corpus_row").set_value((int(summary["dial_id"].iloc[1]), int(summary["turn"].iloc[1]))).run()
    ok(at)
    assert "Could not open the capture" in texts(at.error)
    # ... and a good run still opens afterwards.
    open_run(at, run_dir)
    assert "Opened" in texts(at.success)


def test_capture_file_opens_and_bad_file_is_refused(fresh, tmp_path):
    from inspector._fallback import builtin_model

    cap = builtin_model().generate("User: hi\nAgent:", max_new_tokens=5)
    good = cap.save(tmp_path / "hi.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"\x00" * 50)
    at = new_app().run()
    at.session_state["view"] = "Corpus"
    at.run()
    at.text_input(key="capture_path").set_value(str(bad))
    at.button(key="open_capture").click().run()
    ok(at)
    assert "Could not open capture" in texts(at.error)
    at.text_input(key="capture_path").set_value(str(good))
    at.button(key="open_capture").click().run()
    ok(at)
    assert at.session_state[fresh.CAPTURE].tokens == cap.tokens
    assert at.session_state[fresh.VIEW] == "Generation"


def test_launch_with_run_opens_it(fresh, run_dir, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DASHBOARD_RUN", str(run_dir))
    at = new_app().run()
    at.session_state["view"] = "Corpus"
    at.run()
    ok(at)
    assert "Opened" in texts(at.success)


def test_launch_with_capture_file_opens_it_and_a_bad_one_is_said(fresh, monkeypatch, tmp_path):
    from inspector._fallback import builtin_model

    cap = builtin_model().generate("User: hi\nAgent:", max_new_tokens=4)
    monkeypatch.setenv("INSPECTOR_DASHBOARD_CAPTURE", str(cap.save(tmp_path / "hi.safetensors")))
    at = new_app().run()
    ok(at)
    assert at.session_state[fresh.VIEW] == "Generation"
    assert at.session_state[fresh.CAPTURE].token_ids.tolist() == cap.token_ids.tolist()
    assert "Opened capture file" in texts(at.success)
    at.session_state[fresh.VIEW] = "Prompt"
    at.run()  # opened once per session: going elsewhere is not undone by the launch option
    assert at.session_state[fresh.VIEW] == "Prompt"

    monkeypatch.setenv("INSPECTOR_DASHBOARD_CAPTURE", str(tmp_path / "missing.safetensors"))
    at = new_app().run()
    ok(at)
    assert "Could not open the capture file given at launch" in texts(at.error)
    assert fresh.CAPTURE not in at.session_state or at.session_state[fresh.CAPTURE] is None


# ----------------------------------------------------------------------------- export, speed, lock
def test_export_bytes_are_real_files(tmp_path):
    from dashboard import export_view as panels
    from inspector._fallback import builtin_model
    from inspector._store import capture_bytes, load_capture

    cap = builtin_model().generate("User: hi\nAgent:", max_new_tokens=6)
    png = panels.figure_bytes("heatmap", cap, "png", layer=1, head=None, agg="max")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    svg = panels.figure_bytes("token", cap, "svg", position=cap.seq_len - 1)
    assert b"<svg" in svg[:500]
    html = panels.figure_bytes("heads", cap, "html")
    assert b"<html" in html[:2000].lower() and b"plotly" in html
    text = panels.figure_bytes("text", cap, "html", color_by="entropy")
    assert b"<html" in text[:500].lower()
    data = capture_bytes(cap)
    (tmp_path / "c.safetensors").write_bytes(data)
    back = load_capture(tmp_path / "c.safetensors")
    assert back.tokens == cap.tokens and back.meta.random_weights


@pytest.mark.slow
def test_redraw_of_a_100_token_12x12_capture_needs_no_model(fresh):
    """Layer/head/aggregate changes on a GPT-2-small-shaped capture (12 x 12 heads, 100 new tokens) redraw
    without errors and without model work (benchmarks/bench_dashboard.py times redraws in a browser)."""
    from inspector._fallback import builtin_model

    im = builtin_model(n_layer=12, n_head=12, n_embd=48)
    cap = im.generate("User: hi\nAgent:", max_new_tokens=100)
    assert cap.attentions is not None
    assert cap.num_steps == 100 and cap.attentions.shape[:2] == (12, 12)
    at = new_app()
    at.session_state[fresh.CAPTURE] = cap
    at.session_state[fresh.CAPTURE_ORIGIN] = "test capture"
    at.session_state[fresh.VIEW] = "Attention"
    at.run()
    ok(at)
    for key, value in (("att_layer", 5), ("att_head", 7), ("att_head", "all")):
        at.selectbox(key=key).set_value(value).run()
        ok(at)
    at.segmented_control(key="att_agg").set_value("max").run()
    ok(at)
    at.session_state[fresh.VIEW] = "Generation"
    at.run()
    ok(at)
    assert fresh.generate_calls() == 0


def test_generation_is_serialised_across_sessions(fresh, monkeypatch):
    """Two sessions generating at once: both get their capture, never two generations at a time."""
    from inspector._model import InspectorModel

    state = fresh
    original = InspectorModel.generate
    active, peak = [0], [0]
    guard = threading.Lock()

    def slow_generate(self, *args, **kwargs):
        with guard:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        try:
            time.sleep(0.3)
            return original(self, *args, **kwargs)
        finally:
            with guard:
                active[0] -= 1

    monkeypatch.setattr(InspectorModel, "generate", slow_generate)
    from inspector._capture.settings import GenerationSettings

    req = state.ModelRequest("builtin", "cpu")
    load = state.load_model(req)
    settings = GenerationSettings(max_new_tokens=4)
    results, errors = {}, []

    def session(i: int) -> None:
        try:
            results[i] = state.generate(load, req, f"User: session {i}\nAgent:", settings, {"kind": "text"})
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=session, args=(i,)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and len(results) == 3
    assert peak[0] == 1
    assert state.generate_calls() == 3
    assert results[0].prompt_text != results[1].prompt_text


def test_candidate_table_is_built_only_when_opened(fresh):
    from inspector._fallback import builtin_model

    cap = builtin_model().generate("User: hi\nAgent:", max_new_tokens=5)
    at = new_app()
    at.session_state[fresh.CAPTURE] = cap
    at.session_state[fresh.VIEW] = "Generation"
    at.run()
    ok(at)
    assert len(at.dataframe) == 0  # the expander is closed: no table sent to the page
    at.session_state["gen_table_open"] = True
    at.run()
    ok(at)
    (table,) = at.dataframe
    df = table.value
    assert list(df["step"]) == list(range(cap.num_steps))
    assert df["prob"].iloc[0] == pytest.approx(cap.steps[0].prob, rel=1e-3)


def test_capture_store_keeps_the_most_recent_entries():
    from dashboard.state import CaptureStore

    store = CaptureStore(entries=2)
    store.put(("a",), 1)
    store.put(("b",), 2)
    assert store.get(("a",)) == 1  # "a" is now the most recent
    store.put(("c",), 3)
    assert store.get(("b",)) is None and store.get(("a",)) == 1 and store.get(("c",)) == 3
    store.clear()
    assert store.get(("a",)) is None


def test_same_request_from_two_sessions_generates_once(fresh):
    from inspector._capture.settings import GenerationSettings

    req = fresh.ModelRequest("builtin", "cpu")
    load = fresh.load_model(req)
    settings = GenerationSettings(max_new_tokens=3)
    results = []
    threads = [threading.Thread(target=lambda: results.append(
        fresh.generate(load, req, "User: same\nAgent:", settings, {"kind": "text"}))) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert len(results) == 2 and results[0] is results[1]
    assert fresh.generate_calls() == 1


# ----------------------------------------------------------------------------- launch
def test_launch_options_from_args_and_env(monkeypatch):
    from dashboard.launch import launch_options

    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "envmodel")
    monkeypatch.setenv("INSPECTOR_DASHBOARD_RANDOM_WEIGHTS", "1")
    assert launch_options([]).model == "envmodel" and launch_options([]).random_weights
    assert not launch_options([]).remote
    opts = launch_options(["--model", "builtin", "--run", "runs/x", "--device", "cpu", "--config-dir", "/c",
                           "--capture", "c.safetensors", "--remote"])
    assert (opts.model, opts.run, opts.device, opts.config_dir, opts.capture, opts.remote) == (
        "builtin", "runs/x", "cpu", "/c", "c.safetensors", True)


def test_cli_builds_a_local_headless_streamlit_command(monkeypatch, tmp_path):
    from inspector.cli import dashboard as cli
    from inspector.cli.main import build_parser, main

    args = build_parser().parse_args(["dashboard", "--model", "builtin", "--run", "runs/x", "--random-weights",
                                      "--capture", "c.safetensors"])
    cmd = cli.streamlit_command(args)
    assert cmd[1:4] == ["-m", "streamlit", "run"] and Path(cmd[4]) == ROOT / "dashboard" / "app.py"
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=False))
    assert flags["--server.address"] == "127.0.0.1" and flags["--server.port"] == "8501"
    assert flags["--server.headless"] == "true" and flags["--browser.gatherUsageStats"] == "false"
    assert cmd[cmd.index("--") + 1 :] == ["--model", "builtin", "--run", "runs/x", "--capture", "c.safetensors",
                                          "--random-weights"]
    args = build_parser().parse_args(["dashboard", "--host", "0.0.0.0", "--port", "9000"])
    cmd = cli.streamlit_command(args)
    flags = dict(zip(cmd[5::2], cmd[6::2], strict=False))
    assert flags["--server.address"] == "0.0.0.0" and flags["--server.port"] == "9000"
    assert cmd[cmd.index("--") + 1 :] == ["--remote"]  # shared on purpose: the page restricts its paths

    from browser import free_port

    seen: dict[str, Any] = {}
    monkeypatch.setattr(cli, "exec_streamlit", lambda c, env: seen.update(cmd=c, env=env) or 0)
    assert main(["dashboard", "--dailydialog", str(tmp_path), "--port", str(free_port())]) == 0
    assert seen["env"]["INSPECTOR_DAILYDIALOG_DIR"] == str(tmp_path)
    monkeypatch.setattr(cli, "app_path", lambda: tmp_path / "missing" / "app.py")
    assert main(["dashboard"]) == 2  # a clear error, not a traceback
