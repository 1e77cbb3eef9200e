"""Corpus runs: the run folder, attention modes, refusal of a different command, resume after a real kill."""

from __future__ import annotations

import json
import math
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

import inspector
from inspector._capture.settings import GenerationSettings
from inspector._metrics import SHARE_COLUMNS, turn_metrics
from inspector.cli.main import main as cli_main
from inspector.data import build_prompt, load_dailydialog
from inspector.runs import RunConfig, RunError, RunMismatchError, load_run, run_corpus

CONTRACT = [
    "dial_id", "turn", "split", "act", "emotion", "response_act", "response_emotion", "prompt_text",
    "generated_text", "response", "prompt_tokens", "generated_tokens", "stop_reason", "entropy_mean",
    "entropy_max", "chosen_prob_mean", "attn_prompt_share", "attn_generated_share", "attn_first_share",
    "attn_entropy_mean", "attn_last_user_turn", "attn_earlier_turns", "attn_speaker_user", "attn_speaker_agent",
    "seconds", "capture_file",
]
ROOT = Path(__file__).resolve().parents[1]


def config(data_dir, **kw) -> RunConfig:
    settings = GenerationSettings(max_new_tokens=kw.pop("max_new_tokens", 8))
    base: dict[str, Any] = dict(data=str(data_dir), limit=10, batch_size=4)
    base.update(kw)
    return RunConfig(settings=settings, **base)


def same_summary(a: pd.DataFrame, b: pd.DataFrame) -> None:
    """Equal in every column but the timing."""
    pd.testing.assert_frame_equal(a.drop(columns="seconds"), b.drop(columns="seconds"), check_exact=True)


# --------------------------------------------------------------------------- the run folder
def test_run_folder_summary_and_captures(tmp_path, tiny_model, data_dir):
    out = tmp_path / "run"
    run = run_corpus(config(data_dir), out, tiny_model, progress=False)
    df = run.summary
    assert set(CONTRACT) <= set(df.columns) and len(df) == 10
    assert [c for c in df.columns if c.startswith("attn_entropy_L")] == ["attn_entropy_L0", "attn_entropy_L1"]
    data = load_dailydialog("validation", data_dir)
    table = data.turns().head(10)
    assert df[["dial_id", "turn"]].values.tolist() == table[["dial_id", "turn"]].values.tolist()
    for col in ("act", "emotion", "response_act", "response_emotion", "response"):
        assert df[col].tolist() == [None if pd.isna(v) else v for v in table[col]], col
    assert df["dial_id"].dtype == "int64" and df["generated_tokens"].dtype == "int64"
    assert (df["generated_tokens"] <= 8).all() and (df["generated_tokens"] >= 1).all()
    assert set(df["stop_reason"]) <= {"eos", "length", "stop_string"}
    for col in SHARE_COLUMNS:
        assert df[col].between(0, 1).all(), col
    assert ((df["attn_prompt_share"] + df["attn_generated_share"]) - 1).abs().max() < 1e-3
    # earlier turns exist from the second turn on; the first turn of a dialogue has none
    assert (df.loc[df["turn"] == 0, "attn_earlier_turns"] == 0).all()
    assert (df.loc[df["turn"] > 0, "attn_earlier_turns"] > 0).all()

    doc = json.loads((out / "run.json").read_text())
    assert run.settings == doc and doc["status"] == "complete"
    assert doc["counts"] == {"turns": 10, "batches": 3, "turns_done": 10, "batches_done": 3}
    assert doc["model"]["random_weights"] is True and doc["generation"]["max_new_tokens"] == 8
    assert {"torch", "transformers", "python"} <= set(doc["versions"])
    assert not list(out.rglob("*.tmp"))

    for row in df.itertuples():
        p = build_prompt(data[row.dial_id], row.turn, tiny_model.tokenizer, context_turns=3)
        assert row.prompt_text == p.text and row.prompt_tokens == len(p)
    row = df.iloc[7]
    cap = run.load_capture(row.dial_id, row.turn)
    direct = inspector.load_capture(out / row.capture_file)  # a plain capture file
    assert direct.generated_text == cap.generated_text == row.generated_text
    assert cap.meta.source["dial_id"] == row.dial_id and cap.meta.source["segments"]
    assert cap.meta.extra["attention"] == "summary"
    assert cap.attentions is not None
    assert tuple(cap.attentions.shape) == (2, 1, cap.seq_len, cap.seq_len)
    # the stored head-mean gives back the summary's shares (shares are linear in the weights)
    m = turn_metrics(cap)
    for col in SHARE_COLUMNS:
        assert m[col] == pytest.approx(row[col], abs=2e-3), col
    assert m["entropy_mean"] == pytest.approx(row["entropy_mean"], rel=1e-6)
    with pytest.raises(RunError, match="not in the run"):
        run.load_capture(999, 0)


def test_attention_none_and_no_captures(tmp_path, tiny_model, data_dir, capsys):
    run = run_corpus(config(data_dir, limit=3, batch_size=2, attention="none"), tmp_path / "none", tiny_model)
    bar = capsys.readouterr().err  # the progress bar: turns done, rate, and the time left
    assert re.search(r"3\.0/3 turns \[[0-9:]+<[0-9:?]+, +[0-9.?]+(turn/s|s/turn), [0-9.]+ tok/s\]", bar), bar
    df = run.summary
    assert df[["attn_prompt_share", "attn_entropy_mean", "attn_entropy_L1"]].isna().all().all()
    assert df["entropy_mean"].notna().all()
    assert run.load_capture(0, 1).attentions is None

    run = run_corpus(config(data_dir, limit=3, keep_captures=False), tmp_path / "bare", tiny_model, progress=False)
    assert run.summary["capture_file"].isna().all() and not (tmp_path / "bare" / "captures").exists()
    with pytest.raises(RunError, match="kept no captures"):
        run.load_capture(0, 1)


@pytest.mark.slow
def test_summary_attention_fits_2mb_for_a_64_plus_40_token_gpt2_turn(tmp_path, gpt2_random, dd_dir):
    data = load_dailydialog("validation", dd_dir)
    dial, turn = next((d.dial_id, t) for d in data for t in range(len(d))
                      if 62 <= len(build_prompt(d, t, gpt2_random.tokenizer, max_tokens=64)) <= 64)
    cfg = config(dd_dir, limit=None, filters={"dial_id": [dial], "turn": [turn]}, max_prompt_tokens=64,
                 max_new_tokens=40, batch_size=1)
    run = run_corpus(cfg, tmp_path / "run", gpt2_random, progress=False)
    row = run.summary.iloc[0]
    assert 62 <= row.prompt_tokens <= 64 and row.generated_tokens == 40
    seq = row.prompt_tokens + 40
    full_attention_bytes = 12 * 12 * seq * seq * 2  # what --attention full keeps: over the limit
    assert (tmp_path / "run" / row.capture_file).stat().st_size <= 2_000_000 < full_attention_bytes
    cap = run.load_capture(dial, turn)
    assert cap.attentions is not None
    assert tuple(cap.attentions.shape) == (12, 1, seq, seq)
    assert cap.attentions.float().sum(-1).sub(1).abs().max() < 1e-2  # rows of a mean of softmaxes sum to 1


# --------------------------------------------------------------------------- refusing and resuming
def test_different_command_is_refused_and_same_command_is_a_no_op(tmp_path, tiny_model, data_dir):
    out = tmp_path / "run"
    first = run_corpus(config(data_dir, limit=4), out, tiny_model, progress=False).summary
    with pytest.raises(RunMismatchError, match=r"max_new_tokens: 8 -> 9"):
        run_corpus(config(data_dir, limit=4, max_new_tokens=9), out, tiny_model, progress=False)
    with pytest.raises(RunMismatchError, match=r"limit: 4 -> 5"):
        run_corpus(config(data_dir, limit=5), out, tiny_model, progress=False)
    again = run_corpus(config(data_dir, limit=4), out, tiny_model, progress=False).summary
    pd.testing.assert_frame_equal(first, again)  # nothing was redone: even the timings are the same
    # a folder killed before its run.json appeared holds only the lock file: it is started afresh
    (tmp_path / "early").mkdir()
    (tmp_path / "early" / ".lock").touch()
    assert len(run_corpus(config(data_dir, limit=2), tmp_path / "early", tiny_model, progress=False).summary) == 2
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(RunError, match="not an inspector run folder"):
        run_corpus(config(data_dir, limit=4), tmp_path / "other", tiny_model, progress=False)


def test_resume_after_an_interrupt_in_process(tmp_path, tiny_model, data_dir):
    cfg = config(data_dir, limit=9, batch_size=2)
    reference = run_corpus(cfg, tmp_path / "ref", tiny_model, progress=False).summary

    def stop_after_two(batch: int) -> None:
        if batch == 1:
            raise KeyboardInterrupt

    messages: list[str] = []
    with pytest.raises(KeyboardInterrupt):
        run_corpus(cfg, tmp_path / "run", tiny_model, progress=False, on_batch=stop_after_two, log=messages.append)
    assert "rerun the same command to resume" in messages[-1]
    partial = load_run(tmp_path / "run")
    assert not partial.complete and len(partial.summary) == 4 and not (tmp_path / "run" / "summary.parquet").exists()
    resumed = run_corpus(cfg, tmp_path / "run", tiny_model, progress=False, log=messages.append)
    assert any(m.startswith("resuming") for m in messages)
    same_summary(resumed.summary, reference)
    # the first batches were not redone
    assert resumed.summary["seconds"].tolist() != reference["seconds"].tolist()


CLI_ARGS = ["--limit", "16", "--batch-size", "2", "--max-new-tokens", "6", "--no-progress", "--device", "cpu"]


@pytest.fixture(scope="module")
def reference_summary(tmp_path_factory, tiny_model, data_dir):
    """The uninterrupted run that the CLI arguments above describe."""
    out = tmp_path_factory.mktemp("reference") / "run"
    cfg = RunConfig(data=str(data_dir), limit=16, batch_size=2, settings=GenerationSettings(max_new_tokens=6))
    return run_corpus(cfg, out, tiny_model, progress=False).summary


def _cli(out: Path, tiny_dir: Path, data_dir: Path) -> list[str]:
    return [sys.executable, "-m", "inspector.cli.main", "run", "--model", str(tiny_dir), "--random-weights",
            "--data", str(data_dir), *CLI_ARGS, "--out", str(out)]


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT], ids=["SIGKILL", "SIGINT"])
def test_killed_cli_run_resumes_to_the_same_summary(tmp_path, tiny_dir, data_dir, reference_summary, sig):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    log = open(tmp_path / "stderr.txt", "w+")  # noqa: SIM115
    # a shell without job control starts background jobs with SIGINT ignored, and children inherit
    # that; restore the default so the child's Python turns SIGINT into KeyboardInterrupt, as in a terminal
    proc = subprocess.Popen(_cli(out, tiny_dir, data_dir), stdout=subprocess.DEVNULL, stderr=log, env=env, cwd=tmp_path,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    deadline = time.monotonic() + 240
    while len(list((out / "parts").glob("batch-*.parquet"))) < 2 and proc.poll() is None:
        assert time.monotonic() < deadline, "the run never got going"
        time.sleep(0.02)
    proc.send_signal(sig)
    code = proc.wait(timeout=120)
    log.seek(0)
    err = log.read()
    assert not (out / "summary.parquet").exists(), f"the run finished before it was killed; make it longer\n{err}"
    if sig == signal.SIGKILL:
        assert code == -signal.SIGKILL
    else:
        assert code == 130 and "interrupted" in err, err
    done = len(list((out / "parts").glob("batch-*.parquet")))
    assert 2 <= done < 8

    again = subprocess.run(_cli(out, tiny_dir, data_dir), capture_output=True, text=True, env=env, cwd=tmp_path,
                           timeout=400)
    assert again.returncode == 0, again.stderr
    assert "resuming" in again.stderr
    run = load_run(out)
    assert run.complete and len(run.summary) == 16 and not run.summary.duplicated(["dial_id", "turn"]).any()
    same_summary(run.summary, reference_summary)
    assert len(list((out / "parts").glob("batch-*.parquet"))) == 8
    assert len(list((out / "captures").glob("*.safetensors"))) == 16
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_cli_refuses_a_different_command_before_loading_the_model(tmp_path, tiny_model, data_dir, capsys):
    out = tmp_path / "run"
    run_corpus(config(data_dir, limit=2), out, tiny_model, progress=False)
    rc = cli_main(["run", "--model", "/nonexistent/model", "--data", str(data_dir), "--limit", "2", "--out", str(out)])
    err = capsys.readouterr().err
    assert rc == 2 and "different command" in err and "model:" in err and "max_new_tokens: 8 -> 40" in err
    rc = cli_main(["run", "--data", str(data_dir), "--filter", "mood=happy", "--out", str(tmp_path / "x")])
    assert rc == 2 and "unknown filter key 'mood'" in capsys.readouterr().err


# --------------------------------------------------------------------------- stats
def test_stats_table_and_csv(tmp_path, tiny_model, data_dir, capsys):
    out = tmp_path / "run"
    df = run_corpus(config(data_dir, limit=12), out, tiny_model, progress=False).summary
    csv = tmp_path / "by_act.csv"
    assert cli_main(["stats", str(out), "--by", "act", "--csv", str(csv)]) == 0
    printed = capsys.readouterr().out
    table = pd.read_csv(csv, index_col="act")
    assert table["count"].sum() == len(df)
    for act, group in df.groupby("act"):
        assert act in printed
        assert table.loc[act, "count"] == len(group)
        assert table.loc[act, "entropy_mean"] == pytest.approx(group["entropy_mean"].mean())
        assert table.loc[act, "attn_speaker_user"] == pytest.approx(group["attn_speaker_user"].mean())
    by_response = load_run(out).stats("response_emotion")
    assert by_response.loc["(none)", "count"] == df["response"].isna().sum() > 0
    assert list(by_response.index)[-1] == "(none)"
    with pytest.raises(ValueError, match="cannot group by"):
        load_run(out).stats("speaker")
    assert cli_main(["stats", str(tmp_path / "missing")]) == 2
    assert "not an inspector run folder" in capsys.readouterr().err


def test_stats_skip_nan_attention(tmp_path, tiny_model, data_dir):
    run = run_corpus(config(data_dir, limit=3, attention="none"), tmp_path / "none", tiny_model, progress=False)
    table = run.stats("emotion")
    assert table["count"].sum() == 3 and "attn_prompt_share" not in table.columns  # empty for this run
    assert not any(math.isnan(v) for v in table["entropy_mean"])


# --------------------------------------------------------------------------- the package's names
def test_names_importable_from_inspector_runs_before_it_became_a_package():
    import inspector.runs as runs

    old = ["ATTENTION_MODES", "SHARE_COLUMNS", "STATS_BY", "STATS_COLUMNS", "Run", "RunConfig", "RunError",
           "RunMismatchError", "RunPlan", "WorkItem", "attention_columns", "capture_relpath", "check_resumable",
           "command_identity", "load_run", "plan_run", "run_corpus", "stats", "RUN_FORMAT", "RUN_SCHEMA_VERSION"]
    assert [n for n in old if not hasattr(runs, n)] == []
    assert set(runs.__all__) >= set(old) - {"RUN_FORMAT", "RUN_SCHEMA_VERSION"}
    assert runs.STATS_BY == ("emotion", "act", "response_emotion", "response_act")
