"""A new user's first hour: one set of defaults, one set of words and numbers that read,
notes about random weights wherever results are printed, notebooks, and where output goes."""

from __future__ import annotations

import argparse
import inspect
import io
import json
import logging
import math
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import ROOT
from dashboard_helpers import new_app, ok, set_server_address
from plot_helpers import summary_frame
from run_helpers import DIALOGUES, write_byte_model_folder, write_dailydialog

import inspector
from inspector._capture.settings import GenerationSettings
from inspector._formatting import MISSING, format_percent, format_prob, format_value
from inspector._records.capture import Candidate
from inspector._report import RANDOM_WEIGHTS_BANNER
from inspector.cli.main import build_parser, main as cli_main
from inspector.data.prompts import DEFAULT_CONTEXT_TURNS, build_prompt
from inspector.data.schema import NO_LABEL
from inspector.runs import RunConfig, load_run, run_corpus
from inspector.runs.stats import used_random_weights


def _subparser(name: str) -> argparse.ArgumentParser:
    parser = build_parser()
    action = next(a for a in parser._actions if a.dest == "command")
    assert isinstance(action, argparse._SubParsersAction)
    return action.choices[name]


def _default(name: str, dest: str):
    return next(a.default for a in _subparser(name)._actions if a.dest == dest)


@pytest.fixture
def page(monkeypatch, tmp_path):
    """The dashboard on the built-in model with the handmade DailyDialog split; caches cleared."""
    from dashboard import state

    before = set_server_address("127.0.0.1")
    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", "builtin")
    for var in ("INSPECTOR_DASHBOARD_RUN", "INSPECTOR_DASHBOARD_CAPTURE", "INSPECTOR_DASHBOARD_RANDOM_WEIGHTS",
                "INSPECTOR_DASHBOARD_REMOTE"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("INSPECTOR_DAILYDIALOG_DIR", str(write_dailydialog(tmp_path / "dd")))
    state.clear_caches()
    yield state
    state.clear_caches()
    set_server_address(before)


@pytest.fixture(scope="module")
def random_run(tmp_path_factory):
    """A finished 10-turn run with the byte-level tiny GPT-2 (random weights) on the handmade split."""
    root = tmp_path_factory.mktemp("first_hour")
    im = inspector.load_model(write_byte_model_folder(root / "model"), device="cpu", random_weights=True)
    cfg = RunConfig(data=str(write_dailydialog(root / "dd")), limit=10, batch_size=5,
                    settings=GenerationSettings(max_new_tokens=4))
    return run_corpus(cfg, root / "run", im, progress=False, log=lambda _m: None).path


# ----------------------------------------------------------------------------- one set of defaults
def test_context_turns_default_is_the_same_in_package_cli_runs_and_dashboard(page):
    assert inspect.signature(build_prompt).parameters["context_turns"].default == DEFAULT_CONTEXT_TURNS
    assert RunConfig().context_turns == DEFAULT_CONTEXT_TURNS
    assert _default("run", "context_turns") == DEFAULT_CONTEXT_TURNS
    at = new_app().run()
    ok(at)
    assert at.slider(key="dd_context").value == DEFAULT_CONTEXT_TURNS  # was 4 while the rest said 3
    # The prompt the page shows is the package's default prompt for that turn.
    dial_id, turn = at.selectbox(key="dd_turn").value
    from inspector._fallback import builtin_tokenizer

    want = build_prompt(DIALOGUES[dial_id][0], turn, builtin_tokenizer()).text
    assert want in [c.value for c in at.code]


# ----------------------------------------------------------------------------- random weights said
def test_stats_says_random_weights_and_prints_significant_digits(random_run, capsys):
    assert cli_main(["stats", str(random_run), "--by", "act"]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0] == RANDOM_WEIGHTS_BANNER
    table = load_run(random_run).stats("act")
    for act, row in table.iterrows():
        line = next(ln for ln in out.splitlines() if ln.startswith(str(act)))
        assert format_value(row["chosen_prob_mean"]) in line.split()  # ~0.004: not cut to 0.0039 or 0.000


def test_used_random_weights_reads_run_json():
    assert used_random_weights({"model": {"random_weights": True}})
    assert not used_random_weights({"model": {"random_weights": False}, "random_weights": True})
    assert used_random_weights({"random_weights": True}) and not used_random_weights({})


def test_server_logs_one_line_when_the_page_falls_back_to_random_weights(no_demo_model, page, monkeypatch, tmp_path,
                                                                        caplog):
    monkeypatch.setenv("INSPECTOR_DASHBOARD_MODEL", str(tmp_path / "no-such-model"))
    monkeypatch.setenv("INSPECTOR_DASHBOARD_CONFIG_DIR", str(tmp_path / "no-config-either"))
    monkeypatch.setattr("inspector._fallback.default_config_dirs", lambda extra=None: [Path(extra)] if extra else [])
    with caplog.at_level(logging.WARNING, logger="inspector.dashboard"):
        at = new_app().run()
        ok(at)
        at.run()  # a rerun uses the cached model: no second line
        ok(at)
    lines = [r.getMessage() for r in caplog.records if r.name == "inspector.dashboard"]
    assert len(lines) == 1 and "RANDOM WEIGHTS" in lines[0] and "no-such-model" in lines[0]
    assert "\n" not in lines[0]


def test_no_log_line_when_the_requested_model_loads(page, caplog):
    with caplog.at_level(logging.WARNING, logger="inspector.dashboard"):
        ok(new_app().run())
    assert not [r for r in caplog.records if r.name == "inspector.dashboard"]


# ----------------------------------------------------------------------------- one label for "no response"
def test_no_response_label_is_the_same_in_cli_and_dashboard(page, random_run, capsys):
    summary = load_run(random_run).summary
    assert summary["response_act"].isna().any()  # the run holds a last turn
    assert cli_main(["stats", str(random_run), "--by", "response_act"]) == 0
    assert any(ln.startswith(NO_LABEL) for ln in capsys.readouterr().out.splitlines())
    at = new_app().run()
    at.session_state["view"] = "Corpus"
    at.run()
    at.text_input(key="run_dir").set_value(str(random_run))
    at.button(key="open_run").click().run()
    ok(at)
    table = next(d for d in at.dataframe if d.key == "corpus_table").value
    last = summary["response_act"].isna().to_numpy()
    for col in ("response_act", "response_emotion"):
        assert (table.loc[last, col] == NO_LABEL).all(), col
    assert not table[["response_act", "response_emotion"]].isna().any().any()
    at.segmented_control(key="corpus_by").set_value("response_act").run()
    ok(at)
    stats = next(d for d in at.dataframe if d.key != "corpus_table").value
    assert NO_LABEL in list(stats.index)
    # The turn picker, with last turns allowed, names a missing response the same way.
    at.session_state["view"] = "Prompt"
    at.run()
    at.checkbox(key="f_has_response").uncheck().run()
    ok(at)
    assert any(f"→ {NO_LABEL}/{NO_LABEL}" in o for o in at.selectbox(key="dd_turn").options)


# ----------------------------------------------------------------------------- reprs
def test_candidate_repr_shows_probability_and_logprob():
    c = Candidate(262, " the", math.log(0.0421))
    text = repr(c)
    assert "' the'" in text and "prob=4.2%" in text and "logprob=-3.168" in text and "262" in text


def test_step_repr_is_short_and_lists_candidates_with_probabilities(byte_tiny):
    step = byte_tiny.generate("hello", max_new_tokens=2, top_k_logits=10).step(0)
    assert len(step.top) == 10
    text = repr(step)
    assert len(text) < 300 and "top=[" in text and f"prob={format_prob(math.exp(step.logprob))}" in text
    for c in step.top[:5]:
        assert f"{c.token!r} {format_prob(math.exp(c.logprob))}" in text
    if len(step.top) > 5:
        assert f"+{len(step.top) - 5} more" in text


# ----------------------------------------------------------------------------- numbers that read
@pytest.mark.parametrize(("value", "text"), [
    (10.67, "10.7"), (0.5, "0.500"), (2.1e-05, "2.10e-05"), (123456.0, "1.23e+05"), (0.0, "0"),
    (9.996, "10.0"), (-0.25, "-0.250"), (1.0, "1.00"), (float("nan"), MISSING), (float("inf"), "inf"),
])
def test_format_value(value, text):
    assert format_value(value) == text


def test_format_prob_and_percent_keep_tiny_values_visible():
    vocab = 50257
    assert format_prob(1 / vocab) == "0.002%" and format_percent(1 / vocab) == "0.00199%"
    assert format_prob(0.5) == "50%" and format_prob(0.0421) == "4.2%" and format_prob(0) == "0%"
    assert format_prob(1e-9) == "<0.0001%" and format_prob(float("nan")) == MISSING
    with pytest.raises(ValueError, match="digits"):
        format_value(1.0, digits=0)


def test_dashboard_metric_of_a_random_weights_capture_is_not_zero_percent(page, tiny, monkeypatch, tmp_path):
    from inspector._metrics import score_metrics

    cap = tiny.generate("User: hi\nAgent:", max_new_tokens=4)
    mean = score_metrics(cap)["chosen_prob_mean"]
    assert mean < 5e-4  # a 50257-token vocabulary, nearly uniform: "0.0%" with one decimal
    monkeypatch.setenv("INSPECTOR_DASHBOARD_CAPTURE", str(cap.save(tmp_path / "r.safetensors")))
    at = new_app().run()
    ok(at)
    shown = {m.label: m.value for m in at.metric}
    assert shown["Mean chosen probability"] == format_prob(mean) != "0.0%"
    assert shown["Mean entropy (nats)"] == format_value(score_metrics(cap)["entropy_mean"])


def test_candidate_table_keeps_tiny_probabilities(tiny):
    from inspector._report import step_rows

    cap = tiny.generate("User: hi\nAgent:", max_new_tokens=3)
    table = step_rows(cap, 3)
    for i, row in table.iterrows():
        step = cap.step(int(i))
        assert 0 < row["prob"] == pytest.approx(math.exp(step.logprob), rel=1e-3)  # was round(p, 4) == 0.0
        for j, c in enumerate(step.top[:3], 1):
            pct = float(row[f"#{j}"].rsplit(" ", 1)[1].rstrip("%"))
            assert pct == pytest.approx(100 * math.exp(c.logprob), rel=5e-3)  # was "0.0%"


@pytest.mark.parametrize("spread", [1e-2, 1e-4])
def test_corpus_figure_axes_carry_no_offset_text(spread):
    from inspector.plots import static

    df = summary_frame(60)
    rng = np.random.default_rng(1)
    df["entropy_mean"] = 10.67 + rng.uniform(0, spread, len(df))  # random weights: entropy ~ log(vocab)
    df["chosen_prob_mean"] = 1.99e-5 + rng.uniform(0, 1e-7, len(df))
    fig = static.corpus_distributions(df, by="act")
    fig.savefig(io.BytesIO(), format="png")  # offset texts are set while drawing
    for ax in fig.axes:
        if ax.get_visible():
            assert ax.yaxis.get_offset_text().get_text() == "", ax.get_title()
            labels = [t.get_text() for t in ax.get_yticklabels() if t.get_text()]
            assert len(set(labels)) == len(labels), (ax.get_title(), labels)
    ax = next(a for a in fig.axes if a.get_title() == "mean entropy (nats)")
    ticks = [float(t.get_text().replace("−", "-")) for t in ax.get_yticklabels() if t.get_text()]
    np.testing.assert_allclose(ticks, ax.get_yticks()[: len(ticks)], rtol=1e-9)  # the values, not offsets


# ----------------------------------------------------------------------------- notebooks
def test_capture_repr_html_and_figures_show_in_a_notebook(byte_tiny):
    from IPython.core.interactiveshell import InteractiveShell

    from inspector._notebook_html import register
    from inspector.plots import static
    from inspector.plots.static._figure import InspectorFigure

    cap = byte_tiny.generate("hello there", max_new_tokens=4)
    shell = InteractiveShell.instance()
    register(shell)  # what ``import inspector`` does inside IPython
    assert shell.display_formatter is not None
    html = shell.display_formatter.format(cap)[0]["text/html"]
    assert "inspector-capture" in html and "Random weights" in html
    assert f"{cap.prompt_len} prompt + {cap.num_steps} generated tokens" in html
    assert f"stopped by {cap.stop_reason}" in html
    for i, lp in enumerate(cap.raw.chosen_logprob.tolist()):
        assert f"step {i}: p = {format_prob(math.exp(lp))}" in html
    figure = static.attention_heatmap(cap)
    assert isinstance(figure, InspectorFigure)  # the builders are annotated as returning a plain Figure
    png = figure._repr_png_()
    assert png.startswith(b"\x89PNG\r\n\x1a\n")


@pytest.mark.slow
def test_importing_inspector_inside_ipython_registers_the_capture_display():
    code = ("from IPython.core.interactiveshell import InteractiveShell\n"
            "shell = InteractiveShell.instance()\n"
            "import inspector\n"
            "printers = shell.display_formatter.formatters['text/html'].deferred_printers\n"
            "print(printers[('inspector._records.capture', 'Capture')].__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "capture_display"


# ----------------------------------------------------------------------------- where the work goes
def test_default_outputs_go_to_one_ignored_folder():
    from inspector.cli.capture import OUTPUT_DIR

    out = _default("capture", "out")
    assert Path(out).parts[0] == OUTPUT_DIR
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    for path in (out, f"{OUTPUT_DIR}/heat.png", f"{OUTPUT_DIR}/runs/val200/run.json"):
        r = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", path], check=False)
        assert r.returncode == 0, f"{path} is not covered by .gitignore"
    r = subprocess.run(["git", "-C", str(ROOT), "check-ignore", "-q", "inspector/runs/config.py"], check=False)
    assert r.returncode == 1


def test_examples_cite_only_files_that_exist():
    cited = set()
    for f in sorted((ROOT / "examples").iterdir()):
        text = f.read_text(encoding="utf-8")
        if f.suffix == ".ipynb":
            text = "\n".join("".join(c["source"]) for c in json.loads(text)["cells"])
        cited |= set(re.findall(r"examples/[\w./-]+\.(?:py|ipynb)", text))
    assert cited and [c for c in sorted(cited) if not (ROOT / c).is_file()] == []


@pytest.mark.slow
def test_runs_stats_stays_the_function_after_its_submodule_is_imported():
    code = ("import inspector.runs.load, inspector.runs.stats, sys; from inspector.runs import stats; "
            "import inspector.runs as r; assert callable(stats) and r.stats is stats, stats; "
            "assert 'torch' not in sys.modules")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=False)
    assert r.returncode == 0, r.stderr
