"""Damaged capture files, full disks, killed writers and file modes: errors that name the file, nothing left behind."""

from __future__ import annotations

import errno
import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import torch

import inspector
from inspector import _atomic, _fileformat as fileformat
from inspector._store import CaptureFileError

PROMPT = "User: hey how are you? \nAgent:"
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def capture(byte_tiny):
    return byte_tiny.generate(PROMPT, max_new_tokens=6, keep_logits=True)


def data_start(raw: bytes) -> int:
    return 8 + int.from_bytes(raw[:8], "little")


def write_v1(path: Path, tensors: dict, doc: dict) -> Path:
    """A file as inspector wrote it before checksums existed (schema 1)."""
    from safetensors.torch import save_file

    tensors = {k: v.contiguous() for k, v in tensors.items()}
    save_file(tensors, str(path), metadata={"format": "inspector.capture", "schema_version": "1",
                                            "capture": json.dumps(doc, ensure_ascii=False)})
    return path


# ------------------------------------------------------------------------------------------ checksums
def test_saved_files_are_schema_2_with_checksums(capture, tmp_path):
    raw = capture.save(tmp_path / "c.safetensors").read_bytes()
    meta = json.loads(raw[8:data_start(raw)])["__metadata__"]
    assert meta["schema_version"] == "2"
    sums = json.loads(meta["checksums"])
    assert sums["algorithm"] == "crc32" and set(sums["tensors"]) == {"token_ids", *capture.tensors()}


def test_flipped_tensor_bytes_are_detected(capture, tmp_path):
    path = capture.save(tmp_path / "c.safetensors")
    raw = path.read_bytes()
    rng = random.Random(0)
    start = data_start(raw)
    for trial in range(40):
        data = bytearray(raw)
        pos = rng.randrange(start, len(raw))
        data[pos] ^= 1 << rng.randrange(8)
        bad = tmp_path / f"flip{trial}.safetensors"
        bad.write_bytes(bytes(data))
        with pytest.raises(CaptureFileError, match=rf"flip{trial}\.safetensors: checksum mismatch in tensor"):
            inspector.load_capture(bad)


def test_a_changed_character_in_the_document_is_detected(capture, tmp_path):
    raw = capture.save(tmp_path / "c.safetensors").read_bytes()
    header = raw[8:data_start(raw)]
    assert header.count(b"hey how") >= 1
    bad = tmp_path / "text.safetensors"
    bad.write_bytes(raw[:8] + header.replace(b"hey how", b"hex how") + raw[data_start(raw):])  # still valid JSON
    with pytest.raises(CaptureFileError, match=r"text\.safetensors: checksum mismatch in the capture document"):
        inspector.load_capture(bad)


def test_schema_1_files_without_checksums_still_load(capture, tmp_path):
    tensors, doc = capture.to_parts()
    loaded = inspector.load_capture(write_v1(tmp_path / "old.safetensors", tensors, doc))
    assert torch.equal(loaded.token_ids, capture.token_ids) and loaded.meta == capture.meta
    for name, t in capture.tensors().items():
        assert torch.equal(loaded.tensors()[name], t), name


# -------------------------------------------------------------------------------------- record checks
def _doc_mutations():
    return {
        "meta is a list": lambda d: d.update(meta=[1, 2]),
        "meta is a string": lambda d: d.update(meta="x"),
        "labels is a list": lambda d: d.update(labels=["a"]),
        "float prompt_len": lambda d: d.update(prompt_len=float(d["prompt_len"])),
        "bool prompt_len": lambda d: d.update(prompt_len=True),
        "string random_weights": lambda d: d["meta"].update(random_weights="yes"),
        "tokens not strings": lambda d: d.update(tokens=list(range(len(d["tokens"])))),
        "unknown stop reason": lambda d: d.update(stop_reason="done"),
        "no prompt_text": lambda d: d.pop("prompt_text"),
        "a token string changed": lambda d: d["tokens"].__setitem__(0, "\u2603"),
    }


def _tensor_mutations():
    def set_(name, fn):
        return lambda t: t.update({name: fn(t[name].clone())})

    return {
        "token id outside the vocabulary": set_("token_ids", lambda x: x.index_fill(0, torch.tensor([0]), 10**6)),
        "negative token id": set_("token_ids", lambda x: x.index_fill(0, torch.tensor([1]), -3)),
        "top-k id outside the vocabulary": set_("raw.topk_ids", lambda x: x.fill_(99999)),
        "NaN attention": set_("attentions", lambda x: x.index_fill(2, torch.tensor([3]), float("nan"))),
        "inf attention": set_("attentions", lambda x: x.index_fill(2, torch.tensor([3]), float("inf"))),
        "NaN entropy": set_("processed.entropy", lambda x: x.fill_(float("nan"))),
        "float token ids": set_("token_ids", lambda x: x.float()),
        "rank 0": set_("raw.chosen_rank", lambda x: x.fill_(0)),
        "missing tensor": lambda t: t.pop("raw.entropy"),
    }


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("mutation", sorted(_doc_mutations()))
def test_bad_documents_name_the_file(capture, tmp_path, mutation, version):
    tensors, doc = capture.to_parts()
    doc = json.loads(json.dumps(doc))
    _doc_mutations()[mutation](doc)
    path = tmp_path / "bad-doc.safetensors"
    (fileformat.write(path, tensors, doc) if version == 2 else write_v1(path, tensors, doc))
    with pytest.raises(CaptureFileError, match=r"bad-doc\.safetensors: not a valid inspector capture"):
        inspector.load_capture(path)


@pytest.mark.parametrize("version", [1, 2])
@pytest.mark.parametrize("mutation", sorted(_tensor_mutations()))
def test_bad_tensors_name_the_file(capture, tmp_path, mutation, version):
    tensors, doc = capture.to_parts()
    tensors = dict(tensors)
    _tensor_mutations()[mutation](tensors)
    path = tmp_path / "bad-tensor.safetensors"
    (fileformat.write(path, tensors, doc) if version == 2 else write_v1(path, tensors, doc))
    with pytest.raises(CaptureFileError, match=r"bad-tensor\.safetensors: not a valid inspector capture"):
        inspector.load_capture(path)


def test_a_document_that_is_not_an_object_names_the_file(capture, tmp_path):
    tensors, _ = capture.to_parts()
    path = fileformat.write(tmp_path / "list.safetensors", tensors, [1, 2, 3])  # type: ignore[arg-type]
    with pytest.raises(CaptureFileError, match=r"list\.safetensors: .*not a JSON object"):
        inspector.load_capture(path)


# ------------------------------------------------------------------------------------------ file modes
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_written_files_respect_the_umask(capture, tmp_path, umask):
    old = os.umask(umask)
    try:
        paths = [
            capture.save(tmp_path / "c.safetensors"),
            _atomic.write_text_atomic(tmp_path / "t.json", "{}"),
            _atomic.write_bytes_atomic(tmp_path / "b.bin", b"x"),
        ]
    finally:
        os.umask(old)
    for path in paths:
        assert path.stat().st_mode & 0o777 == 0o666 & ~umask, path.name


# ---------------------------------------------------------------------------------- stale temporaries
def _dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_save_removes_temporaries_of_dead_writers_only(capture, tmp_path):
    target = tmp_path / "c.safetensors"
    tag = _atomic._writer_tag()
    old = time.time() - 2 * _atomic.STALE_AFTER_S
    files = {
        "dead": tmp_path / f".c.safetensors.{tag}-{_dead_pid()}-abc123de.tmp",
        "alive": tmp_path / f".c.safetensors.{tag}-{os.getpid()}-abc123de.tmp",
        "other host, old": tmp_path / ".c.safetensors.0badf00d-12-abc123de.tmp",
        "other host, recent": tmp_path / ".c.safetensors.0badf00d-13-abc123de.tmp",
        "old name, old": tmp_path / ".c.safetensors.k3j_9x0a.tmp",
        "old name, recent": tmp_path / ".c.safetensors.zz12ab34.tmp",
        "not a temporary": tmp_path / ".c.safetensors.x.tmp",
        "old name of another target, old": tmp_path / ".c.safetensors.bak.k3j_9x0a.tmp",
        "dead writer of another target": tmp_path / f".c.safetensors.bak.{tag}-{_dead_pid()}-abc123de.tmp",
    }
    for name, path in files.items():
        path.write_bytes(b"partial")
        if name.endswith(", old"):
            os.utime(path, (old, old))
    capture.save(target)
    gone = {name for name, path in files.items() if not path.exists()}
    assert gone == {"dead", "other host, old", "old name, old", "dead writer of another target"}
    assert inspector.load_capture(target).prompt_len == capture.prompt_len


def test_a_folder_is_listed_once_per_process_not_once_per_write(tmp_path, monkeypatch):
    """Run folders hold thousands of captures: listing one on every write would make runs quadratic."""
    calls: list[Any] = []
    real = os.scandir

    def listing(path: Any) -> Any:
        calls.append(path)
        return real(path)

    monkeypatch.setattr(_atomic.os, "scandir", listing)
    for i in range(5):
        _atomic.write_text_atomic(tmp_path / f"{i}.json", "{}")
    assert len(calls) == 1
    monkeypatch.setattr(_atomic, "RESCAN_AFTER_S", 0.0)
    _atomic.write_text_atomic(tmp_path / "again.json", "{}")
    assert len(calls) == 2


@pytest.mark.slow
def test_a_killed_writer_leaves_a_temporary_that_the_next_save_removes(capture, tmp_path):
    target = tmp_path / "c.safetensors"
    code = (
        "import sys, time\n"
        "from inspector._atomic import atomic_path\n"
        "with atomic_path(sys.argv[1]) as tmp:\n"
        "    tmp.write_bytes(b'x' * 100000)\n"
        "    print('writing', flush=True)\n"
        "    time.sleep(120)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", code, str(target)], cwd=ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline().strip() == "writing"
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:  # pragma: no cover
            proc.kill()
    left = [p.name for p in tmp_path.iterdir()]
    assert len(left) == 1 and left[0].endswith(".tmp") and not target.exists()
    capture.save(target)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.safetensors"]


# -------------------------------------------------------------------------------------------- disk full
@pytest.fixture
def small_tmpfs(tmp_path):
    """A real 256 KiB filesystem (tmpfs); skipped where mounting is not allowed."""
    mount = tmp_path / "small"
    mount.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(mount)], capture_output=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({res.stderr.decode(errors='replace').strip()}); "
                    "the injected-error tests below cover the same path")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


def test_disk_full_for_real_names_the_file_and_leaves_nothing(byte_tiny, small_tmpfs):
    small = byte_tiny.generate(PROMPT, max_new_tokens=2, keep_attention=False)
    before = small.save(small_tmpfs / "c.safetensors").read_bytes()
    big = byte_tiny.generate(PROMPT * 10, max_new_tokens=40, keep_logits=True, attention_dtype=torch.float32)
    assert big.nbytes > 1_000_000
    with pytest.raises(_atomic.DiskFullError, match=r"cannot write .*c\.safetensors: the disk is full") as err:
        big.save(small_tmpfs / "c.safetensors")
    assert isinstance(err.value, OSError) and err.value.errno == errno.ENOSPC
    assert sorted(p.name for p in small_tmpfs.iterdir()) == ["c.safetensors"]
    assert (small_tmpfs / "c.safetensors").read_bytes() == before


def test_inspector_capture_on_a_full_disk_is_one_line(byte_tiny, small_tmpfs, monkeypatch, capsys):
    from inspector.cli import capture as cli_capture
    from inspector.cli.main import main

    monkeypatch.setattr(cli_capture, "load_model_from_args", lambda args: byte_tiny)
    out = small_tmpfs / "c.safetensors"
    code = main(["capture", "--prompt", "Hello " * 60, "--max-new-tokens", "40", "--keep-logits",
                 "--attention-dtype", "float32", "--out", str(out)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert err[-1].startswith("inspector capture: error: cannot write") and "the disk is full" in err[-1]
    assert str(out) in err[-1]
    assert list(small_tmpfs.iterdir()) == []


@pytest.mark.parametrize(
    "error",
    [
        "safetensors",  # exactly what safetensors raised on a full tmpfs
        "oserror",  # a plain write: OSError(ENOSPC)
        "pyarrow",  # pyarrow's wording, errno in the text
    ],
)
def test_disk_full_injected_at_the_writer(capture, tmp_path, monkeypatch, error):
    from safetensors import SafetensorError

    raised = {
        "safetensors": SafetensorError("Error while serializing: I/O error: No space left on device (os error 28)"),
        "oserror": OSError(errno.ENOSPC, "No space left on device"),
        "pyarrow": OSError("Error writing bytes to file. Detail: [errno 28] No space left on device"),
    }[error]

    def full(fh, header, tensors, entries):
        fh.write(b"\0" * 100)  # a partial write first
        raise raised

    monkeypatch.setattr(fileformat, "_write_to", full)
    target = tmp_path / "c.safetensors"
    with pytest.raises(_atomic.DiskFullError, match=r"c\.safetensors: the disk is full") as err:
        capture.save(target)
    assert err.value.filename == str(target) and err.value.__cause__ is raised
    assert list(tmp_path.iterdir()) == []


def test_other_write_errors_are_not_called_a_full_disk(tmp_path):
    with pytest.raises(PermissionError), _atomic.atomic_path(tmp_path / "x") as tmp:
        tmp.write_text("x")
        raise PermissionError(errno.EACCES, "denied")
    assert list(tmp_path.iterdir()) == []
