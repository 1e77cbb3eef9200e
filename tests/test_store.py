"""Saving and loading captures: exact round trip, damaged and foreign files, interrupted saves."""

from __future__ import annotations

import json
import os
import pickle

import pytest
import torch

import inspector
from inspector._store import CaptureFileError

PROMPT = "User: hey how are you? \nAgent:"


@pytest.fixture(scope="module")
def capture(byte_tiny):
    return byte_tiny.generate(PROMPT, max_new_tokens=5, keep_logits=True, sources={"kind": "text", "note": "ünïcode ✓"})


def test_round_trip_is_exact(capture, tmp_path):
    path = capture.save(tmp_path / "c.safetensors")
    loaded = inspector.load_capture(path)
    for name, tensor in capture.tensors().items():
        other = loaded.tensors()[name]
        assert other.dtype == tensor.dtype and torch.equal(other, tensor), name
    assert torch.equal(loaded.token_ids, capture.token_ids)
    assert loaded.tokens == capture.tokens and loaded.labels == capture.labels
    assert loaded.prompt_text == capture.prompt_text and loaded.generated_text == capture.generated_text
    assert loaded.stop_reason == capture.stop_reason and loaded.prompt_len == capture.prompt_len
    assert loaded.meta == capture.meta
    assert loaded.meta.random_weights is True and loaded.meta.source["note"] == "ünïcode ✓"
    assert set(loaded.meta.versions) >= {"torch", "transformers", "python"}
    for key in ("max_new_tokens", "do_sample", "temperature", "top_k", "top_p", "num_beams", "seed", "stop_strings"):
        assert key in loaded.meta.generation


def test_metadata_is_plain_json_header(capture, tmp_path):
    path = capture.save(tmp_path / "c.safetensors")
    raw = path.read_bytes()
    header_len = int.from_bytes(raw[:8], "little")
    header = json.loads(raw[8 : 8 + header_len])
    assert header["__metadata__"]["format"] == "inspector.capture"
    doc = json.loads(header["__metadata__"]["capture"])
    assert doc["meta"]["model"] == capture.meta.model == "builtin"


def test_truncated_file_names_the_file(capture, tmp_path):
    path = capture.save(tmp_path / "c.safetensors")
    data = path.read_bytes()
    for cut in (4, 100, len(data) // 2, len(data) - 1):
        bad = tmp_path / f"cut{cut}.safetensors"
        bad.write_bytes(data[:cut])
        with pytest.raises(CaptureFileError, match=str(bad.name)):
            inspector.load_capture(bad)


def test_corrupted_header_and_foreign_files(capture, tmp_path):
    path = capture.save(tmp_path / "c.safetensors")
    data = bytearray(path.read_bytes())
    data[10:20] = b"\xff" * 10
    bad = tmp_path / "corrupt.safetensors"
    bad.write_bytes(bytes(data))
    with pytest.raises(CaptureFileError, match="corrupt.safetensors"):
        inspector.load_capture(bad)

    from safetensors.torch import save_file

    foreign = tmp_path / "foreign.safetensors"
    save_file({"w": torch.zeros(3)}, str(foreign))
    with pytest.raises(CaptureFileError, match="not an inspector capture"):
        inspector.load_capture(foreign)

    text = tmp_path / "notes.safetensors"
    text.write_text("hello")
    with pytest.raises(CaptureFileError, match="notes.safetensors"):
        inspector.load_capture(text)

    with pytest.raises(CaptureFileError, match="no such capture file"):
        inspector.load_capture(tmp_path / "missing.safetensors")


def test_pickle_is_never_executed(tmp_path):
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    evil = tmp_path / "evil.safetensors"
    evil.write_bytes(pickle.dumps(Evil()))
    with pytest.raises(CaptureFileError):
        inspector.load_capture(evil)
    assert not marker.exists()


def test_interrupted_save_leaves_nothing_loadable(capture, tmp_path, monkeypatch):
    import inspector._fileformat as fileformat

    target = tmp_path / "c.safetensors"

    def dies_midway(fh, header, tensors, entries):
        fh.write(header[:64])  # a partial write, then the process "dies"
        raise KeyboardInterrupt

    monkeypatch.setattr(fileformat, "_write_to", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        capture.save(target)
    assert not target.exists()
    assert list(tmp_path.iterdir()) == []  # the temporary file was removed too


def test_interrupted_overwrite_keeps_previous_file(capture, tmp_path, monkeypatch):
    import inspector._fileformat as fileformat

    target = capture.save(tmp_path / "c.safetensors")
    before = target.read_bytes()

    def fails(fh, header, tensors, entries):
        raise OSError("disk full")

    monkeypatch.setattr(fileformat, "_write_to", fails)
    with pytest.raises(OSError, match="disk full"):
        capture.save(target)
    assert target.read_bytes() == before


def test_unwritable_folder_is_a_clear_error(capture, tmp_path):
    with pytest.raises(OSError, match="does not exist"):
        capture.save(tmp_path / "missing-folder" / "c.safetensors")


def test_capture_without_attention_round_trips(byte_tiny, tmp_path):
    cap = byte_tiny.generate(PROMPT, max_new_tokens=3, keep_attention=False)
    assert cap.attentions is None
    loaded = inspector.load_capture(cap.save(tmp_path / "n.safetensors"))
    assert loaded.attentions is None
    with pytest.raises(inspector.CaptureError, match="kept no attention"):
        loaded.stacked_mean()


def test_scores_shared_between_raw_and_processed_are_saved(capture, tmp_path):
    """A capture built by hand with ``processed=raw`` (one object) saves; safetensors refuses shared memory."""
    import dataclasses

    same = dataclasses.replace(capture, processed=capture.raw)
    loaded = inspector.load_capture(same.save(tmp_path / "shared.safetensors"))
    assert torch.equal(loaded.processed.entropy, capture.raw.entropy)
    assert torch.equal(loaded.processed.topk_ids, capture.raw.topk_ids)
