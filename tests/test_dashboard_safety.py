"""The dashboard's safe defaults and the stop-string bound.

* Every documented start binds 127.0.0.1 with usage statistics off (shipped Streamlit config files),
  and the page shows nothing when it finds itself bound beyond localhost unasked.
* Shared on purpose (``--host``), the page opens only the paths it was started with, and says the
  same thing for a missing path as for a forbidden one.
* The stop-string box enforces the package's bounds before any model work.
"""

from __future__ import annotations

import os
import sys

import pytest
from conftest import ROOT
from dashboard_helpers import new_app, ok, set_server_address, texts, widgets

pytest.importorskip("streamlit.testing.v1")


@pytest.fixture
def fresh(monkeypatch, bound_locally):
    """Built-in model, caches cleared, no launch options but the model."""
    from dashboard import state

    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "builtin")
    for name in ("RUN", "CAPTURE", "RANDOM_WEIGHTS", "REMOTE", "CONFIG_DIR", "DEVICE"):
        monkeypatch.delenv(f"INSPECTOR_DASHBOARD_{name}", raising=False)
    monkeypatch.delenv("INSPECTOR_DAILYDIALOG_DIR", raising=False)
    state.clear_caches()
    yield state
    state.clear_caches()


# ----------------------------------------------------------------------------- where it serves
@pytest.mark.parametrize(("address", "local"), [
    (None, False), ("", False), ("0.0.0.0", False), ("::", False), ("192.168.1.7", False), ("example.org", False),
    ("127.0.0.1", True), ("127.0.0.2", True), ("localhost", True), ("::1", True), ("[::1]", True),
    ("unix:///tmp/dash.sock", True),
])
def test_which_addresses_are_local(address, local):
    from dashboard.access import exposure_refusal
    from inspector.cli.dashboard import is_local_address

    assert is_local_address(address) is local
    assert (exposure_refusal(address, remote=False) is None) is local
    assert exposure_refusal(address, remote=True) is None  # told to share: it serves


def test_page_shows_nothing_when_bound_beyond_localhost_unasked(fresh, monkeypatch):
    for address in ("0.0.0.0", None):  # None: Streamlit's default, every interface
        set_server_address(address)
        at = new_app().run()
        ok(at)
        assert "it shows nothing" in texts(at.error) and "inspector dashboard" in texts(at.error)
        assert not widgets(at), "no widget may be drawn"
        assert not at.sidebar.caption and not at.tabs
    monkeypatch.setenv("INSPECTOR_DASHBOARD_REMOTE", "1")  # what `inspector dashboard --host` passes
    at = new_app().run()
    ok(at)
    assert "it shows nothing" not in texts(at.error)
    assert "Loaded: builtin" in texts(at.sidebar.caption)


def test_shipped_streamlit_configs_bind_localhost_without_usage_statistics():
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    root, packaged = ROOT / ".streamlit" / "config.toml", ROOT / "dashboard" / ".streamlit" / "config.toml"
    for path in (root, packaged):
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
        assert doc["server"]["address"] == "127.0.0.1", path
        assert doc["browser"]["gatherUsageStats"] is False, path
    assert root.read_text() == packaged.read_text()  # one policy, two places Streamlit looks


@pytest.mark.slow
@pytest.mark.parametrize("where", ["repo root", "elsewhere"])
def test_streamlit_run_binds_localhost_only(where, tmp_path):
    """`streamlit run dashboard/app.py` as the README documents it (no flags but the port), from the repo root
    (reads .streamlit/config.toml there) and from another folder (reads the one next to app.py)."""
    from serving import free_port, listening_hosts, start, stop, wait_http

    if listening_hosts(1) is None:
        pytest.skip("no /proc/net/tcp here to see which address a server listens on")
    port = free_port()
    cwd, app = (ROOT, "dashboard/app.py") if where == "repo root" else (tmp_path, str(ROOT / "dashboard" / "app.py"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("STREAMLIT_")}
    env.update(INSPECTOR_DASHBOARD_MODEL="builtin", HF_HUB_OFFLINE="1")
    proc = start([sys.executable, "-m", "streamlit", "run", app, "--server.port", str(port),
                  "--server.headless", "true"], cwd, env, tmp_path / "server.log")
    try:
        wait_http(f"http://127.0.0.1:{port}/_stcore/health", proc)
        assert listening_hosts(port) == {"127.0.0.1"}
    finally:
        stop(proc)


# ----------------------------------------------------------------------------- which paths a shared page opens
def _refusal_text(message: str, path: object) -> str:
    return message.replace(repr(str(path)), "PATH")


def test_check_path_allows_only_what_the_launch_named(tmp_path):
    from dashboard.access import PathNotAllowed, check_path
    from dashboard.launch import LaunchOptions

    run = tmp_path / "run"
    (run / "captures").mkdir(parents=True)
    (run / "captures" / "a.safetensors").write_bytes(b"x")
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "key.txt").write_text("x")
    (run / "escape").symlink_to(outside / "key.txt")
    opts = LaunchOptions(model="builtin", run=str(run), remote=True)
    assert check_path(run, opts) == run
    assert check_path(run / "captures" / "a.safetensors", opts) == run / "captures" / "a.safetensors"
    messages = set()
    for path in (outside, outside / "key.txt", outside / "missing", run / "escape", run / ".." / "secret",
                 run / "captures" / "missing.safetensors", "/etc/passwd", "/no/such/file"):
        with pytest.raises(PathNotAllowed) as exc:
            check_path(path, opts)
        messages.add(_refusal_text(str(exc.value), path))
    assert len(messages) == 1, messages  # missing and forbidden read the same
    # Served locally, nothing is refused here (the callers say what is missing).
    local = LaunchOptions(model="builtin", run=str(run))
    assert check_path(outside / "key.txt", local) == outside / "key.txt"


def test_shared_page_opens_only_the_paths_it_was_started_with(fresh, monkeypatch, tmp_path):
    from inspector._fallback import builtin_model

    state = fresh
    im = builtin_model()
    allowed = tmp_path / "allowed"
    outside = tmp_path / "outside"
    allowed.mkdir()
    outside.mkdir()
    given = im.generate("User: hi\nAgent:", max_new_tokens=3).save(allowed / "given.safetensors")
    other = im.generate("User: a secret\nAgent:", max_new_tokens=3).save(outside / "other.safetensors")
    monkeypatch.setenv("INSPECTOR_DASHBOARD_REMOTE", "1")
    monkeypatch.setenv("INSPECTOR_DASHBOARD_CAPTURE", str(given))
    monkeypatch.delenv("INSPECTOR_GPT2_OFFLINE_DIR", raising=False)
    at = new_app().run()
    ok(at)
    shown = at.session_state[state.CAPTURE]
    assert shown.prompt_text == "User: hi\nAgent:"  # the launch capture is allowed

    at.session_state[state.VIEW] = "Corpus"
    at.run()
    messages = set()
    for path in (other, outside / "missing.safetensors", allowed / "missing.safetensors", "/etc/hostname"):
        at.text_input(key="capture_path").set_value(str(path))
        at.button(key="open_capture").click().run()
        ok(at)
        (error,) = [e for e in at.error if "Could not open capture" in str(e.value)]
        messages.add(_refusal_text(str(error.value), path))
        assert at.session_state[state.CAPTURE] is shown
    assert len(messages) == 1 and "not available here" in messages.pop()

    run_messages = set()
    for path in (outside, outside / "nope", tmp_path):
        at.text_input(key="run_dir").set_value(str(path))
        at.button(key="open_run").click().run()
        ok(at)
        (error,) = [e for e in at.error if "Could not open run" in str(e.value)]
        run_messages.add(_refusal_text(str(error.value), path))
    assert len(run_messages) == 1 and "not available here" in run_messages.pop()

    at.session_state[state.VIEW] = "Prompt"
    at.run()
    # the page opened on free text (no DailyDialog here); the turn picker's folder box is the one to try
    at.radio(key="prompt_source").set_value("DailyDialog turn").run()
    at.text_input(key="dd_dir").set_value(str(outside)).run()
    ok(at)
    assert "DailyDialog could not be loaded" in texts(at.warning) and "not available here" in texts(at.warning)

    at.sidebar.text_input(key="model_name").set_value(str(outside)).run()
    ok(at)
    assert "Model:" in texts(at.sidebar.error) and "not available here" in texts(at.sidebar.error)
    assert "Loaded: builtin" in texts(at.sidebar.caption)  # still the launch model
    at.sidebar.text_input(key="config_dir").set_value(str(outside)).run()
    ok(at)
    assert "Config folder:" in texts(at.sidebar.error)
    assert state.generate_calls() == 0


def test_served_locally_the_page_still_says_what_is_missing(fresh, tmp_path):
    at = new_app().run()
    at.session_state[fresh.VIEW] = "Corpus"
    at.run()
    at.text_input(key="capture_path").set_value(str(tmp_path / "missing.safetensors"))
    at.button(key="open_capture").click().run()
    ok(at)
    assert "does not exist" in texts(at.error) and "not available here" not in texts(at.error)


# ----------------------------------------------------------------------------- stop strings
def test_stop_string_box_enforces_the_package_bounds(fresh):
    from inspector._capture.settings import MAX_STOP_STRING_CHARS, MAX_STOP_STRING_PRODUCT, MAX_STOP_STRINGS

    at = new_app().run()
    ok(at)
    # The box itself holds at most the longest allowed list (Streamlit cuts longer input on the server too).
    box_chars = at.sidebar.text_input(key="stop_strings").proto.max_chars
    assert box_chars >= MAX_STOP_STRINGS * MAX_STOP_STRING_CHARS
    cases = {
        "x" * (MAX_STOP_STRING_CHARS + 1): f"stop string 1 has {MAX_STOP_STRING_CHARS + 1} characters",
        "ok," + "y" * 10_000: f"at most {MAX_STOP_STRING_CHARS} are allowed",  # cut to the box's size first
        ",".join(["a"] * (MAX_STOP_STRINGS + 1)): f"at most {MAX_STOP_STRINGS} stop strings",
        # each bound alone holds, but their product (the matcher's memory) does not: the package says so
        ",".join(["a" * MAX_STOP_STRING_CHARS] * MAX_STOP_STRINGS): f"must be at most {MAX_STOP_STRING_PRODUCT}",
    }
    for value, said in cases.items():
        at.sidebar.text_input(key="stop_strings").set_value(value).run()
        ok(at)
        assert said in texts(at.sidebar.error), (said, texts(at.sidebar.error))
        assert at.button(key="generate").disabled
    longest = MAX_STOP_STRING_PRODUCT // MAX_STOP_STRINGS
    for fine in (["a" * MAX_STOP_STRING_CHARS] * (MAX_STOP_STRING_PRODUCT // MAX_STOP_STRING_CHARS),
                 ["b" * longest] * MAX_STOP_STRINGS):
        at.sidebar.text_input(key="stop_strings").set_value(",".join(fine))
        at.run()
        ok(at)
        assert not at.sidebar.error and not at.button(key="generate").disabled  # the bounds themselves are fine
    assert fresh.generate_calls() == 0
    from dashboard.decoding import STOP_BOX_CHARS

    assert box_chars == STOP_BOX_CHARS


def test_shared_page_refuses_a_run_capture_linked_outside(fresh, monkeypatch, tmp_path, tiny_model, data_dir):
    """A run's summary names ``captures/X``; where X is a link to a file outside the run, a page served
    remotely refuses it like any other path it was not given (served locally, it opens)."""
    from dashboard.access import PathNotAllowed
    from inspector._capture.settings import GenerationSettings
    from inspector.runs import RunConfig, run_corpus

    state = fresh
    config = RunConfig(settings=GenerationSettings(max_new_tokens=3), data=str(data_dir), limit=1, batch_size=1)
    run = run_corpus(config, tmp_path / "run", tiny_model, progress=False)
    dial, turn = (int(v) for v in run.summary.iloc[0][["dial_id", "turn"]])
    inside = run.capture_path(dial, turn)
    outside = tmp_path / "outside.safetensors"
    tiny_model.generate("User: a secret\nAgent:", max_new_tokens=2).save(outside)
    inside.unlink()
    inside.symlink_to(outside)
    monkeypatch.setenv("INSPECTOR_DASHBOARD_RUN", str(run.path))
    monkeypatch.setenv("INSPECTOR_DASHBOARD_REMOTE", "1")
    with pytest.raises(PathNotAllowed):
        state.run_capture(str(run.path), dial, turn)
    monkeypatch.delenv("INSPECTOR_DASHBOARD_REMOTE")
    assert state.run_capture(str(run.path), dial, turn).prompt_text == "User: a secret\nAgent:"
