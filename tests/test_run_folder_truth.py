"""A run folder's own files decide whether the run is complete, not what its run.json says.

A complete run (6 turns, 3 batches of 2, captures and head statistics kept) is copied, damaged by
deleting files, and run again with the same command: the missing batches are redone and the
summary is written again, equal to the undamaged run's (up to the ``seconds`` timing column);
:func:`load_run` and :func:`run_status` name what is missing meanwhile.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd
import pytest
from run_helpers import write_byte_model_folder

import inspector
from inspector._capture.settings import GenerationSettings
from inspector.cli.main import main as cli_main
from inspector.runs import RunConfig, RunError, load_run, run_corpus, run_status


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory):
    return write_byte_model_folder(tmp_path_factory.mktemp("byte-gpt2"))


@pytest.fixture(scope="module")
def model(model_dir):
    return inspector.load_model(model_dir, device="cpu", random_weights=True)


def config(data_dir: Path) -> RunConfig:
    return RunConfig(data=str(data_dir), limit=6, batch_size=2, settings=GenerationSettings(max_new_tokens=4))


def cli_args(model_dir: Path, data_dir: Path, out: Path) -> list[str]:
    return ["run", "--model", str(model_dir), "--random-weights", "--device", "cpu", "--data", str(data_dir),
            "--limit", "6", "--batch-size", "2", "--max-new-tokens", "4", "--no-progress", "--out", str(out)]


@pytest.fixture(scope="module")
def complete(tmp_path_factory, model_dir, data_dir) -> Path:
    """A complete run folder written by the command line; tests work on copies of it."""
    out = tmp_path_factory.mktemp("complete") / "run"
    assert cli_main(cli_args(model_dir, data_dir, out)) == 0
    return out


def copy_of(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / "run"))


def rows(df: pd.DataFrame) -> pd.DataFrame:
    return df.drop(columns=["seconds"]).reset_index(drop=True)


PART1 = "parts/batch-000001.parquet"


def test_the_complete_run_holds_what_the_tests_delete(complete):
    files = {str(p.relative_to(complete)) for p in complete.rglob("*") if p.is_file()}
    assert {"summary.parquet", PART1, "parts/headstats-000001.safetensors"} <= files
    assert len([f for f in files if f.startswith("captures/")]) == 6


def test_cli_rerun_redoes_a_deleted_part_and_summary(complete, model_dir, data_dir, tmp_path, capsys):
    out = copy_of(complete, tmp_path)
    reference = pd.read_parquet(out / "summary.parquet")
    (out / PART1).unlink()
    (out / "summary.parquet").unlink()
    capsys.readouterr()
    assert cli_main(cli_args(model_dir, data_dir, out)) == 0
    captured = capsys.readouterr()
    assert "already complete" not in captured.err
    assert "wrote" in captured.out
    assert (out / PART1).is_file() and (out / "summary.parquet").is_file()
    pd.testing.assert_frame_equal(rows(pd.read_parquet(out / "summary.parquet")), rows(reference))
    run = load_run(out)
    assert run.complete and run.missing == ()


def test_load_run_and_run_status_name_the_missing_files(complete, tmp_path, capsys):
    out = copy_of(complete, tmp_path)
    (out / PART1).unlink()
    (out / "summary.parquet").unlink()
    run = load_run(out)
    assert set(run.missing) == {"summary.parquet", PART1}
    assert not run.complete  # run.json says complete; the folder does not hold it
    assert len(run.summary) == 4  # the rows of the two parts left
    status = run_status(out)
    assert status.state == "stopped" and status.state != "finished"
    assert set(status.missing) == {"summary.parquet", PART1}
    assert "summary.parquet" in status.describe() and PART1 in status.describe()
    assert cli_main(["stats", str(out)]) == 0
    err = capsys.readouterr().err
    assert f"lacks summary.parquet, {PART1}" in err and "(4 turns shown)" in err


def test_a_deleted_part_alone_is_redone(complete, model, data_dir, tmp_path):
    out = copy_of(complete, tmp_path)
    reference = load_run(out).summary
    (out / PART1).unlink()
    assert load_run(out).missing == (PART1,)
    redone: list[int] = []
    run = run_corpus(config(data_dir), out, model, progress=False, log=lambda m: None, on_batch=redone.append)
    assert redone == [1]
    assert (out / PART1).is_file()
    pd.testing.assert_frame_equal(rows(run.summary), rows(reference))


def test_a_deleted_capture_or_head_statistics_file_redoes_its_batch(complete, model, data_dir, tmp_path):
    out = copy_of(complete, tmp_path)
    reference = load_run(out).summary
    rel = reference["capture_file"].iloc[0]
    batch = int(reference["batch"].iloc[0])
    tokens = inspector.load_capture(out / rel).token_ids.tolist()
    (out / rel).unlink()
    assert load_run(out).missing == (rel,)
    redone: list[int] = []
    run = run_corpus(config(data_dir), out, model, progress=False, log=lambda m: None, on_batch=redone.append)
    assert redone == [batch]
    assert inspector.load_capture(out / rel).token_ids.tolist() == tokens
    pd.testing.assert_frame_equal(rows(run.summary), rows(reference))

    other = (batch + 1) % 3
    stats = out / "parts" / f"headstats-{other:06d}.safetensors"
    stats.unlink()
    assert load_run(out).missing == (str(stats.relative_to(out)),)
    redone.clear()
    run_corpus(config(data_dir), out, model, progress=False, log=lambda m: None, on_batch=redone.append)
    assert redone == [other] and stats.is_file()
    assert run_status(out).state == "finished" and run_status(out).missing == ()


@pytest.mark.parametrize("name", ["../secret.safetensors", "captures/../../secret.safetensors", "ABSOLUTE"])
def test_a_summary_naming_a_capture_outside_the_run_is_refused(complete, tmp_path, name):
    out = copy_of(complete, tmp_path)
    summary = pd.read_parquet(out / "summary.parquet")
    dial_id, turn, rel = summary.loc[0, ["dial_id", "turn", "capture_file"]]
    secret = tmp_path / "secret.safetensors"
    shutil.copy(out / rel, secret)  # a real capture file, outside the run folder
    name = str(secret) if name == "ABSOLUTE" else name
    assert (out / name).resolve() == secret.resolve()
    summary.loc[0, "capture_file"] = name
    summary.to_parquet(out / "summary.parquet")
    run = load_run(out)
    with pytest.raises(RunError, match="outside the run folder"):
        run.load_capture(int(dial_id), int(turn))
    assert run.load_capture(*summary.loc[1, ["dial_id", "turn"]].astype(int)).token_ids.numel() > 0
