"""DailyDialog loading: original layout, tables, the Hub (faked at the datasets call), validation, filtering."""

from __future__ import annotations

import json
import sys
import types
from pathlib import Path

import pandas as pd
import pytest

from inspector.data import dailydialog as dd
from inspector.data.dailydialog import (
    ACT_NAMES,
    EMOTION_NAMES,
    DailyDialogError,
    filter_turns,
    load_dailydialog,
    parse_filters,
)

DIALOGS = [
    ["Hi , how are you ?", "Fine , thanks .", "Great !"],
    ["Close the door .", "OK ."],
]
ACTS = [[2, 1, 1], [3, 4]]
EMOS = [[0, 4, 4], [1, 0]]


def write_original(root: Path, split: str = "validation", text: str | None = None, acts: str | None = None,
                   emos: str | None = None) -> Path:
    folder = root / split
    folder.mkdir(parents=True, exist_ok=True)
    if text is None:
        text = "".join(" __eou__ ".join(d) + " __eou__\n" for d in DIALOGS)
    if acts is None:
        acts = "".join(" ".join(map(str, a)) + " \n" for a in ACTS)
    if emos is None:
        emos = "".join(" ".join(map(str, e)) + " \n" for e in EMOS)
    (folder / f"dialogues_{split}.txt").write_text(text, encoding="utf-8")
    (folder / f"dialogues_act_{split}.txt").write_text(acts, encoding="utf-8")
    (folder / f"dialogues_emotion_{split}.txt").write_text(emos, encoding="utf-8")
    return folder


def as_lists(data):
    return [(list(d.turns), list(d.acts), list(d.emotions)) for d in data]


EXPECTED = [(DIALOGS[i], ACTS[i], EMOS[i]) for i in range(2)]


# --------------------------------------------------------------------------- the shared split
def test_shared_validation_split_is_consistent(dd_dir):
    data = load_dailydialog("validation", dd_dir)
    assert data.split == "validation" and data.source.startswith("folder:")
    assert len(data) == 1000 and data.num_turns == 8069
    for d in data:
        assert len(d.turns) == len(d.acts) == len(d.emotions) > 0
        assert all(t == " ".join(t.split()) and "__eou__" not in t for t in d.turns)
    table = data.turns()
    assert len(table) == 8069
    assert list(table.columns[:10]) == ["split", "dial_id", "turn", "speaker", "utterance", "act", "emotion",
                                        "response", "response_act", "response_emotion"]
    assert set(table["act"]) <= set(ACT_NAMES.values())
    assert set(table["emotion"]) <= set(EMOTION_NAMES.values())
    # every response is the next turn of the same dialogue; the last turn has none
    for d in list(data)[:50]:
        rows = table[table["dial_id"] == d.dial_id].sort_values("turn")
        assert rows["response"].tolist()[:-1] == list(d.turns[1:])
        assert rows["response_act"].tolist()[:-1] == d.act_names[1:]
        assert rows["response_emotion"].tolist()[:-1] == d.emotion_names[1:]
        assert pd.isna(rows["response"].iloc[-1]) and pd.isna(rows["response_act"].iloc[-1])
        assert rows["speaker"].tolist() == ["A" if t % 2 == 0 else "B" for t in range(len(d))]


def test_environment_variable_is_used(dd_dir, monkeypatch):
    monkeypatch.setenv("INSPECTOR_DAILYDIALOG_DIR", str(dd_dir))
    assert load_dailydialog("validation").num_turns == 8069


# --------------------------------------------------------------------------- layouts and quirks
def test_original_layout_and_nested_release_folder(tmp_path):
    write_original(tmp_path / "plain")
    write_original(tmp_path / "zipped" / "ijcnlp_dailydialog")
    assert as_lists(load_dailydialog("validation", tmp_path / "plain")) == EXPECTED
    assert as_lists(load_dailydialog("validation", tmp_path / "zipped")) == EXPECTED


def test_whitespace_blank_lines_and_missing_trailing_eou(tmp_path):
    text = ("\n  Hi ,   how are you ?\t__eou__ Fine , thanks . __eou__Great ! __eou__   \r\n\n"
            "Close the door . __eou__ OK .\n\n")
    write_original(tmp_path, text=text, acts="2 1 1\n\n3 4", emos=" 0 4 4 \n1 0\n")
    assert as_lists(load_dailydialog("validation", tmp_path)) == EXPECTED


@pytest.mark.parametrize("which", ["act", "emotion"])
def test_label_count_mismatch_names_split_file_and_line(tmp_path, which):
    acts = "2 1 1\n3 4 1\n" if which == "act" else None
    emos = "0 4 4\n1\n" if which == "emotion" else None
    write_original(tmp_path, split="test", acts=acts, emos=emos)
    with pytest.raises(DailyDialogError) as err:
        load_dailydialog("test", tmp_path)
    msg = str(err.value)
    assert "test" in msg and f"dialogues_{which}_test.txt line 2" in msg and "dialogues_test.txt line 2" in msg


def test_unknown_label_and_misaligned_files(tmp_path):
    write_original(tmp_path / "a", acts="2 1 9\n3 4\n")
    with pytest.raises(DailyDialogError, match=r"dialogues_act_validation.txt line 1.*unknown act label 9"):
        load_dailydialog("validation", tmp_path / "a")
    write_original(tmp_path / "b", emos="0 4 4\n")
    with pytest.raises(DailyDialogError, match="must align"):
        load_dailydialog("validation", tmp_path / "b")


def test_empty_turn_is_an_error(tmp_path):
    write_original(tmp_path, text="Hi . __eou__ __eou__ Bye . __eou__\nClose the door . __eou__ OK . __eou__\n")
    with pytest.raises(DailyDialogError, match=r"line 1: turn 1 is empty"):
        load_dailydialog("validation", tmp_path)


def test_non_utf8_file_gives_a_clear_error(tmp_path):
    folder = write_original(tmp_path)
    (folder / "dialogues_validation.txt").write_bytes("Hi . __eou__\nCaf\u00e9 . __eou__\n".encode("latin-1"))
    with pytest.raises(DailyDialogError, match=r"dialogues_validation.txt: not UTF-8 text .*line 2"):
        load_dailydialog("validation", tmp_path)


def test_missing_source_and_missing_split(tmp_path):
    with pytest.raises(DailyDialogError, match="does not exist"):
        load_dailydialog("validation", tmp_path / "nope")
    write_original(tmp_path)
    with pytest.raises(DailyDialogError, match="no DailyDialog 'train' split"):
        load_dailydialog("train", tmp_path)


# --------------------------------------------------------------------------- tables
def _records():
    return [{"dialog": d, "act": a, "emotion": e} for d, a, e in zip(DIALOGS, ACTS, EMOS, strict=True)]


def test_parquet_csv_and_jsonl_tables(tmp_path):
    pd.DataFrame(_records()).to_parquet(tmp_path / "validation.parquet")
    assert as_lists(load_dailydialog("validation", tmp_path / "validation.parquet")) == EXPECTED
    assert as_lists(load_dailydialog("validation", tmp_path)) == EXPECTED  # found in the folder

    csv = pd.DataFrame([{k: json.dumps(v) for k, v in r.items()} for r in _records()])
    csv.to_csv(tmp_path / "t.csv", index=False)
    assert as_lists(load_dailydialog("validation", tmp_path / "t.csv")) == EXPECTED

    # names instead of numbers, and the hub's layout of padded utterances
    rows = [{"dialog": [f" {t} " for t in d], "act": [ACT_NAMES[x] for x in a],
             "emotion": [EMOTION_NAMES[x] for x in e]} for d, a, e in zip(DIALOGS, ACTS, EMOS, strict=True)]
    (tmp_path / "t.jsonl").write_text("\n".join(json.dumps(r) for r in rows) + "\n\n", encoding="utf-8")
    assert as_lists(load_dailydialog("validation", tmp_path / "t.jsonl")) == EXPECTED


def test_sharded_parquet_folder_like_the_hub_export(tmp_path):
    shard = tmp_path / "default" / "validation"
    shard.mkdir(parents=True)
    pd.DataFrame(_records()[:1]).to_parquet(shard / "0000.parquet")
    pd.DataFrame(_records()[1:]).to_parquet(shard / "0001.parquet")
    data = load_dailydialog("validation", tmp_path)
    assert as_lists(data) == EXPECTED and [d.dial_id for d in data] == [0, 1]


def test_table_errors_name_file_and_line(tmp_path):
    rows = _records()
    rows[1] = {**rows[1], "emotion": [1]}
    (tmp_path / "bad.jsonl").write_text("\n".join(json.dumps(r) for r in rows), encoding="utf-8")
    with pytest.raises(DailyDialogError, match=r"bad.jsonl line 2 has 2 turns but .* 1 emotion labels"):
        load_dailydialog("validation", tmp_path / "bad.jsonl")
    pd.DataFrame([{"text": "x"}]).to_csv(tmp_path / "cols.csv", index=False)
    with pytest.raises(DailyDialogError, match="no dialog, act, emotion column"):
        load_dailydialog("validation", tmp_path / "cols.csv")


# --------------------------------------------------------------------------- hub (faked at the datasets call)
def _fake_datasets(monkeypatch, behaviour, reachable=True):
    calls = []
    monkeypatch.setattr("inspector._hub.hub_reachable", lambda timeout=3.0: reachable)

    def load_dataset(*args, **kwargs):
        calls.append((args, kwargs))
        return behaviour(*args, **kwargs)

    monkeypatch.setitem(sys.modules, "datasets", types.SimpleNamespace(load_dataset=load_dataset))
    return calls


def test_hub_reads_the_parquet_conversion(monkeypatch):
    # The Hub copy: ClassLabel ids (act 0 is an unused placeholder), utterances padded with spaces.
    rows = [{"dialog": [f" {t} " for t in d] + [""], "act": a, "emotion": e}
            for d, a, e in zip(DIALOGS, ACTS, EMOS, strict=True)]
    calls = _fake_datasets(monkeypatch, lambda *a, **k: rows)
    monkeypatch.delenv("INSPECTOR_DAILYDIALOG_DIR", raising=False)
    monkeypatch.setattr("inspector._locations.find_dailydialog_dir", lambda: None)  # no ../shared copy either
    data = load_dailydialog("validation")
    assert as_lists(data) == EXPECTED
    assert data.source == f"hub:{dd.HUB_REPO}@refs/convert/parquet"
    (args, kwargs), = calls
    assert args == (dd.HUB_REPO,) and kwargs == {"revision": "refs/convert/parquet", "split": "validation"}


def test_hub_offline_gives_a_clear_error(monkeypatch):
    def offline(*a, **k):
        raise ConnectionError("Couldn't reach 'li2017dailydialog/daily_dialog' on the Hub (LocalEntryNotFoundError)")

    _fake_datasets(monkeypatch, offline)
    with pytest.raises(DailyDialogError) as err:
        load_dailydialog("validation", "hub")
    msg, cli = str(err.value), err.value.cli_message
    assert "Hugging Face Hub" in msg and "Couldn't reach" in msg and "INSPECTOR_DAILYDIALOG_DIR" in msg
    assert "source=" in msg and "--data" not in msg  # the Python API names its argument; the CLI its flag
    assert "--data" in cli and "INSPECTOR_DAILYDIALOG_DIR" in cli and ".." not in msg.replace("../", "")
    with pytest.raises(DailyDialogError, match="unknown DailyDialog split"):
        load_dailydialog("dev", "hub")


# --------------------------------------------------------------------------- filtering
@pytest.fixture()
def table(tmp_path):
    write_original(tmp_path)
    return load_dailydialog("validation", tmp_path).turns()


def test_turn_table_shape(table):
    assert table[["dial_id", "turn"]].values.tolist() == [[0, 0], [0, 1], [0, 2], [1, 0], [1, 1]]
    assert table["response"].tolist()[:2] == ["Fine , thanks .", "Great !"]
    assert table["act"].tolist() == ["question", "inform", "inform", "directive", "commissive"]
    assert table["response_emotion"].tolist()[:2] == ["happiness", "happiness"]
    assert pd.isna(table["response_emotion"].iloc[2])
    assert table["response_act_id"].tolist()[:2] == [1, 1]


def test_filters(table):
    keys = lambda df: list(zip(df["dial_id"], df["turn"], strict=True))  # noqa: E731
    assert keys(filter_turns(table, act="question")) == [(0, 0)]
    assert keys(filter_turns(table, act=["inform", 4])) == [(0, 1), (0, 2), (1, 1)]
    assert keys(filter_turns(table, response_emotion="happiness")) == [(0, 0), (0, 1)]
    assert keys(filter_turns(table, emotion="anger,happiness")) == [(0, 1), (0, 2), (1, 0)]
    assert keys(filter_turns(table, dial_id="1")) == [(1, 0), (1, 1)]
    assert keys(filter_turns(table, text="DOOR")) == [(1, 0)]
    assert keys(filter_turns(table, has_response=False)) == [(0, 2), (1, 1)]
    assert keys(filter_turns(table, response_act="commissive", split="validation")) == [(1, 0)]
    assert filter_turns(table, split="train").empty
    with pytest.raises(DailyDialogError, match="unknown act 'chat'"):
        filter_turns(table, act="chat")


def test_parse_filters():
    assert parse_filters(["act=question", "emotion=anger,sadness", "dial_id=1,4-6", "has_response=no", "text=a=b"]) == {
        "act": "question", "emotion": "anger,sadness", "dial_id": [1, 4, 5, 6], "has_response": False, "text": "a=b"}
    for bad, msg in [("act", "KEY=VALUE"), ("colour=red", "unknown filter key"), ("emotion=joy", "unknown emotion"),
                     ("dial_id=x", "not a number")]:
        with pytest.raises(DailyDialogError, match=msg):
            parse_filters([bad])
    with pytest.raises(DailyDialogError, match="given twice"):
        parse_filters(["act=question", "act=inform"])


def test_names_importable_from_dailydialog_before_it_was_split():
    old = ["ACT_NAMES", "EMOTION_NAMES", "LABEL_COLUMNS", "TURN_COLUMNS", "SPLITS", "HUB_REPO", "HUB_REVISION",
           "ENV_VAR", "EOU", "TABLE_SUFFIXES", "FILTER_KEYS", "DailyDialogError", "Dialogue", "DailyDialog",
           "split_utterances", "find_original_files", "read_original", "dialogues_from_records", "read_table",
           "find_table_files", "load_from_hub", "load_dailydialog", "turn_table", "filter_turns", "parse_filters",
           "parse_int_set"]
    assert [n for n in old if not hasattr(dd, n)] == []
    assert dd.FILTER_KEYS == ("act", "emotion", "response_act", "response_emotion", "dial_id", "turn", "text",
                              "response_text", "has_response", "split")


def test_unreachable_hub_fails_at_once_without_the_download_client(monkeypatch):
    calls = _fake_datasets(monkeypatch, lambda *a, **k: pytest.fail("the download client was called"),
                           reachable=False)
    with pytest.raises(DailyDialogError) as err:
        load_dailydialog("validation", "hub")
    assert not calls
    assert "could not be reached" in str(err.value) and "--data /path/to/dailydialog" in err.value.cli_message
    assert len(err.value.cli_message.splitlines()) == 1


def test_no_source_finds_a_shared_copy_beside_the_current_folder(monkeypatch, tmp_path, dd_dir):
    """Without INSPECTOR_DAILYDIALOG_DIR, ../shared/data/dailydialog (as scripts/env.sh would set) is used."""
    (tmp_path / "shared" / "data").mkdir(parents=True)
    (tmp_path / "shared" / "data" / "dailydialog").symlink_to(dd_dir.resolve())
    (tmp_path / "project").mkdir()
    monkeypatch.chdir(tmp_path / "project")
    monkeypatch.delenv("INSPECTOR_DAILYDIALOG_DIR", raising=False)
    _fake_datasets(monkeypatch, lambda *a, **k: pytest.fail("went to the Hub"), reachable=False)
    data = load_dailydialog("validation")
    assert data.source.startswith(f"folder:{tmp_path / 'shared' / 'data' / 'dailydialog'}") and len(data.dialogues) > 0
