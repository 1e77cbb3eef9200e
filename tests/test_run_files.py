"""Run files that are damaged, a complete run started again, and writes that fail: every case is one
clear error naming the file (``RunError``, or ``OSError`` printed in one line by the CLI), never a
traceback, and a complete run is only read."""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from run_helpers import write_byte_model_folder

import inspector
from inspector._capture.settings import GenerationSettings
from inspector.cli.main import main as cli_main
from inspector.runs import RUN_FORMAT, RUN_SCHEMA_VERSION, RunConfig, RunError, load_run, run_corpus


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_byte_model_folder(tmp_path_factory.mktemp("byte-gpt2"))


@pytest.fixture(scope="module")
def model(model_dir):
    im = inspector.load_model(model_dir, device="cpu", random_weights=True)
    assert im.num_layers == 2 and len(im.tokenizer) == 257
    return im


def config(data_dir: Path) -> RunConfig:
    return RunConfig(data=str(data_dir), limit=6, batch_size=2, settings=GenerationSettings(max_new_tokens=4))


@pytest.fixture(scope="module")
def complete(tmp_path_factory, model, data_dir) -> Path:
    """A complete run folder (6 turns, 3 batches, captures kept); tests work on copies of it."""
    out = tmp_path_factory.mktemp("complete") / "run"
    run_corpus(config(data_dir), out, model, progress=False)
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def cli_args(model_dir: Path, data_dir: Path, out: Path) -> list[str]:
    return ["run", "--model", str(model_dir), "--random-weights", "--device", "cpu", "--data", str(data_dir),
            "--limit", "6", "--batch-size", "2", "--max-new-tokens", "4", "--no-progress", "--out", str(out)]


def one_error_line(err: str, command: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith(f"inspector {command}: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


# --------------------------------------------------------------------------- writes refused at the system level
_FORBIDDEN: list[str] = []
_WRITE_FLAGS = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC
_WRITE_EVENTS = {"os.rename", "os.remove", "os.rmdir", "os.mkdir", "os.chmod", "os.chown", "os.truncate",
                 "os.link", "os.symlink", "os.utime", "shutil.rmtree", "shutil.move", "shutil.copyfile"}


def _inside(arg: object) -> bool:
    if not isinstance(arg, (str, bytes, os.PathLike)):
        return False
    path = os.fsdecode(os.fspath(arg))
    return any(path == root or path.startswith(root + os.sep) for root in _FORBIDDEN)


def _audit(event: str, args: tuple) -> None:
    if not _FORBIDDEN:
        return
    if event == "open" and _inside(args[0]) and isinstance(args[2], int) and args[2] & _WRITE_FLAGS:
        raise PermissionError(errno.EACCES, f"test: no write may happen here (open for writing {args[0]})")
    if event in _WRITE_EVENTS and any(_inside(a) for a in args):
        raise PermissionError(errno.EACCES, f"test: no write may happen here ({event} {args})")


_HOOK: list[bool] = []


@contextmanager
def no_writes_in(folder: Path) -> Iterator[None]:
    """Make every write into ``folder`` raise, as a read-only folder would for a user who is not root
    (tests run as root here, where chmod does not stop writes). Audit hooks cannot be removed, so one
    hook is installed per process and only acts inside this block."""
    if not _HOOK:
        sys.addaudithook(_audit)
        _HOOK.append(True)
    _FORBIDDEN.append(str(folder.resolve()))
    try:
        yield
    finally:
        _FORBIDDEN.pop()


def snapshot(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {str(p.relative_to(folder)): (p.stat().st_mtime_ns, p.read_bytes())
            for p in sorted(folder.rglob("*")) if p.is_file()}


def test_the_write_guard_catches_writes(tmp_path):
    (tmp_path / "f").write_text("x")
    for write in (lambda: (tmp_path / "f").write_text("y"), lambda: (tmp_path / "d").mkdir(),
                  lambda: os.replace(tmp_path / "f", tmp_path / "g"), lambda: open(tmp_path / "f", "a+")):  # noqa: SIM115 - never opens
        with no_writes_in(tmp_path), pytest.raises(PermissionError, match="no write may happen"):
            write()
    assert (tmp_path / "f").read_text() == "x"
    with no_writes_in(tmp_path):
        assert (tmp_path / "f").read_text() == "x"  # reading is fine


# --------------------------------------------------------------------------- a complete run is only read
def test_rerunning_a_complete_run_writes_nothing(complete, model, data_dir, tmp_path):
    out = copy_of(complete, tmp_path)
    before = snapshot(out)
    first = load_run(out).summary
    messages: list[str] = []
    with no_writes_in(out):
        run = run_corpus(config(data_dir), out, model, progress=False, log=messages.append)
    assert snapshot(out) == before
    assert run.complete and messages == [f"{out} is already complete (6 turns); nothing to generate or write"]
    pd.testing.assert_frame_equal(run.summary, first)  # timings included: nothing was redone


def test_cli_rerun_of_a_complete_run_writes_nothing(model_dir, data_dir, tmp_path, capsys):
    out = tmp_path / "run"
    assert cli_main(cli_args(model_dir, data_dir, out)) == 0
    assert "wrote" in capsys.readouterr().out
    before = snapshot(out)
    with no_writes_in(out):
        rc = cli_main(cli_args(model_dir, data_dir, out))
    captured = capsys.readouterr()
    assert rc == 0, captured.err
    assert snapshot(out) == before
    assert "already complete" in captured.err and "wrote" not in captured.out


def test_a_complete_run_whose_summary_went_missing_is_rebuilt_from_its_parts(complete, model, data_dir, tmp_path):
    out = copy_of(complete, tmp_path)
    reference = load_run(out).summary
    (out / "summary.parquet").unlink()
    run = run_corpus(config(data_dir), out, model, progress=False, log=lambda m: None)
    pd.testing.assert_frame_equal(run.summary, reference)


# --------------------------------------------------------------------------- a damaged summary.parquet
def _duplicate_rows(df: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([df, df], ignore_index=True)


def test_a_summary_with_every_row_twice_is_refused_by_stats_plot_and_load(complete, tmp_path, capsys):
    out = copy_of(complete, tmp_path)
    summary = out / "summary.parquet"
    _duplicate_rows(pd.read_parquet(summary)).to_parquet(summary)
    with pytest.raises(RunError, match=r"summary\.parquet.*6 duplicated row"):
        _ = load_run(out).summary
    for command in (["stats", str(out)], ["plot", str(out), "--out", str(tmp_path / "c.png")]):
        assert cli_main(command) == 2
        line = one_error_line(capsys.readouterr().err, command[0])
        assert str(summary) in line and "duplicated" in line
    assert not (tmp_path / "c.png").exists()


@pytest.mark.parametrize("damage, message", [
    (lambda df: df.assign(entropy_mean=df["entropy_mean"].astype(str)), r"entropy_mean \(.*\) do not have"),
    (lambda df: df.assign(turn=df["turn"].astype(float).where(df.index > 0)), r"turn \(float64\)"),
    (lambda df: df.drop(columns=["turn"]), "no turn column"),
    (lambda df: df.iloc[:-1], r"holds 5 turns but .*run\.json records 6"),
], ids=["text-in-a-number-column", "missing-turn-numbers", "no-turn-column", "a-row-missing"])
def test_a_summary_that_is_not_the_runs_is_refused_naming_the_file(complete, tmp_path, damage, message):
    out = copy_of(complete, tmp_path)
    summary = out / "summary.parquet"
    damage(pd.read_parquet(summary)).to_parquet(summary)
    with pytest.raises(RunError, match=message) as err:
        _ = load_run(out).summary
    assert str(summary) in str(err.value)


def test_an_unreadable_summary_or_part_names_the_file(complete, model, data_dir, tmp_path):
    out = copy_of(complete, tmp_path)
    (out / "summary.parquet").write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(RunError, match=r"summary\.parquet: unreadable run summary"):
        _ = load_run(out).summary

    def stop(batch: int) -> None:
        if batch == 1:
            raise KeyboardInterrupt

    partial = tmp_path / "partial"
    with pytest.raises(KeyboardInterrupt):
        run_corpus(config(data_dir), partial, model, progress=False, on_batch=stop, log=lambda m: None)
    part = partial / "parts" / "batch-000001.parquet"
    rows = pd.read_parquet(part)
    _duplicate_rows(rows).to_parquet(part)
    with pytest.raises(RunError, match=r"batch-000001\.parquet: 2 duplicated row"):
        _ = load_run(partial).summary
    part.write_bytes(b"garbage")
    with pytest.raises(RunError, match=r"batch-000001\.parquet: unreadable summary part"):
        _ = load_run(partial).summary
    with pytest.raises(RunError, match=r"batch-000001\.parquet: unreadable summary part.*delete it"):
        run_corpus(config(data_dir), partial, model, progress=False, log=lambda m: None)


# --------------------------------------------------------------------------- a damaged run.json
@pytest.mark.parametrize("doc, message", [
    ([1, 2], "a JSON list, not an object"),
    ("complete", "a JSON str, not an object"),
    ({"format": RUN_FORMAT, "schema_version": "one"}, "schema_version 'one' is not an integer"),
    ({"format": RUN_FORMAT, "schema_version": RUN_SCHEMA_VERSION, "identity": []}, "'identity' must be a JSON object"),
    ({"format": RUN_FORMAT, "schema_version": RUN_SCHEMA_VERSION, "counts": [6]}, "'counts' must be a JSON object"),
    ({"format": RUN_FORMAT, "schema_version": RUN_SCHEMA_VERSION, "model": "gpt2"}, "'model' must be a JSON object"),
], ids=["list", "string", "version", "identity", "counts", "model"])
def test_a_run_json_that_is_not_a_run_object_names_the_file(complete, model, data_dir, tmp_path, capsys, doc,
                                                             message):
    out = copy_of(complete, tmp_path)
    run_json = out / "run.json"
    run_json.write_text(json.dumps(doc), encoding="utf-8")
    with pytest.raises(RunError, match=message) as err:
        load_run(out)
    assert str(run_json) in str(err.value)
    with pytest.raises(RunError, match=message):
        run_corpus(config(data_dir), out, model, progress=False)
    for command in (["stats", str(out)], ["plot", str(out), "--out", str(tmp_path / "c.png")]):
        assert cli_main(command) == 2
        assert str(run_json) in one_error_line(capsys.readouterr().err, command[0])


# --------------------------------------------------------------------------- writes that fail
def _fail_nth_fsync(monkeypatch, n: int) -> None:
    calls = []
    real = os.fsync

    def fsync(fd: int) -> None:
        calls.append(fd)
        if len(calls) == n:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        real(fd)

    monkeypatch.setattr(os, "fsync", fsync)


def _fail_parquet(monkeypatch) -> None:
    def to_parquet(self, *args, **kwargs):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(pd.DataFrame, "to_parquet", to_parquet)


@pytest.mark.parametrize("fail, named", [
    (lambda mp: _fail_nth_fsync(mp, 1), r"run\.json"),  # run.json is written first
    (lambda mp: _fail_nth_fsync(mp, 2), r"captures/\d{5}-\d{3}\.safetensors"),  # then batch 0's captures
    (_fail_parquet, r"parts/batch-000000\.parquet"),
], ids=["run.json", "capture", "summary-part"])
def test_a_failed_write_is_one_line_naming_the_file(model_dir, data_dir, tmp_path, monkeypatch, capsys, fail, named):
    out = tmp_path / "run"
    fail(monkeypatch)
    assert cli_main(cli_args(model_dir, data_dir, out)) == 2
    line = one_error_line(capsys.readouterr().err, "run")
    assert re.search(re.escape(f"{out}{os.sep}") + named, line) and "No space left on device" in line, line
    assert not [p for p in out.rglob("*") if p.name.endswith(".tmp")]


def test_a_failed_stats_csv_write_names_the_file(complete, tmp_path, monkeypatch, capsys):
    csv = tmp_path / "by_emotion.csv"
    _fail_nth_fsync(monkeypatch, 1)
    assert cli_main(["stats", str(complete), "--csv", str(csv)]) == 2
    line = one_error_line(capsys.readouterr().err, "stats")
    assert str(csv) in line and "No space left on device" in line, line
    assert list(tmp_path.iterdir()) == []


def test_a_run_started_before_a_new_setting_existed_still_resumes(tmp_path):
    """A generation setting added later (left at its default) does not make an old run a different command."""
    from inspector._capture.settings import GenerationSettings
    from inspector.runs.folder import _diff

    new: dict[str, Any] = {"generation": GenerationSettings().to_dict(), "split": "validation"}
    old = {"generation": {k: v for k, v in new["generation"].items() if k != "keep_value_norms"},
           "split": "validation"}
    assert _diff(old, new) == []
    changed = {"generation": {**new["generation"], "keep_value_norms": True}, "split": "validation"}
    assert _diff(old, changed) == ["generation.keep_value_norms: '<unset>' -> True"]
