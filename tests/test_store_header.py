"""The capture file's header: its tensor table under checksum, old versions only in their own form, and
nothing read (or allocated) before the header is known to describe a capture that fits in the file."""

from __future__ import annotations

import json
import tracemalloc
from pathlib import Path

import pytest
import torch

import inspector
import inspector._fileformat as fileformat
from inspector._store import CaptureFileError

PROMPT = "User: hey how are you? \nAgent:"


@pytest.fixture(scope="module")
def capture(byte_tiny):
    return byte_tiny.generate(PROMPT, max_new_tokens=6, keep_hidden_states=True)


@pytest.fixture(scope="module")
def selective(byte_tiny):
    return byte_tiny.generate(PROMPT, max_new_tokens=6, layers=[1], attention_rows="generated")


def split(raw: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(raw[:8], "little")
    return json.loads(raw[8 : 8 + n]), raw[8 + n :]


def join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + body


def rewrite(path: Path, edit) -> Path:
    header, body = split(path.read_bytes())
    edit(header)
    path.write_bytes(join(header, body))
    return path


# -------------------------------------------------------------------------- the header's tensor table
def test_written_files_read_back_with_safetensors_itself(capture, tmp_path):
    """The file is a plain safetensors file: safetensors' own reader sees the same tensors and metadata."""
    from safetensors import safe_open

    path = capture.save(tmp_path / "c.safetensors")
    with safe_open(str(path), framework="pt") as fh:
        assert set(fh.keys()) == {"token_ids", *capture.tensors()}
        assert fh.metadata()["format"] == "inspector.capture"
        for name, t in capture.tensors().items():
            got = fh.get_tensor(name)
            assert got.dtype == t.dtype and torch.equal(got, t), name


@pytest.mark.parametrize("name", ["attentions", "hidden_states", "step_attentions"])
def test_a_dtype_changed_in_the_header_is_detected(capture, selective, tmp_path, name):
    """F16 -> BF16 keeps every byte count, so only a checksum over the header entry can see it."""
    cap = selective if name == "step_attentions" else capture
    path = cap.save(tmp_path / "c.safetensors")
    header, _ = split(path.read_bytes())
    assert header[name]["dtype"] == "F16"
    rewrite(path, lambda h: h[name].update(dtype="BF16"))
    with pytest.raises(CaptureFileError, match=r"c\.safetensors: checksum mismatch in the header's tensor table"):
        inspector.load_capture(path)


def test_a_shape_changed_in_the_header_is_detected(capture, tmp_path):
    path = capture.save(tmp_path / "c.safetensors")
    layers, heads, q, k = capture.attentions.shape
    rewrite(path, lambda h: h["attentions"].update(shape=[1, layers * heads, q, k]))
    with pytest.raises(CaptureFileError, match=r"checksum mismatch in the header's tensor table"):
        inspector.load_capture(path)


def test_swapped_offsets_are_detected(capture, tmp_path):
    path = capture.save(tmp_path / "c.safetensors")

    def swap(h):
        a, b = h["raw.entropy"]["data_offsets"], h["processed.entropy"]["data_offsets"]
        h["raw.entropy"]["data_offsets"], h["processed.entropy"]["data_offsets"] = b, a

    rewrite(path, swap)
    with pytest.raises(CaptureFileError, match=r"checksum mismatch in the header's tensor table"):
        inspector.load_capture(path)


def test_files_from_before_the_header_checksum_still_check_stored_dtypes(capture, tmp_path):
    """A file whose checksums have no ``header`` entry (written before it existed) loads, but a dtype that
    differs from the one its settings stored it in is refused before any tensor is read."""
    path = capture.save(tmp_path / "old.safetensors")

    def drop(h):
        sums = json.loads(h["__metadata__"]["checksums"])
        del sums["header"]
        h["__metadata__"]["checksums"] = json.dumps(sums)

    rewrite(path, drop)
    loaded = inspector.load_capture(path).attentions
    assert loaded is not None and capture.attentions is not None
    assert torch.equal(loaded, capture.attentions)
    rewrite(path, lambda h: h["attentions"].update(dtype="BF16"))
    with pytest.raises(CaptureFileError, match=r"'attentions' holds bfloat16, but it was captured with "
                                               r"attention_dtype='float16'"):
        inspector.load_capture(path)


# ------------------------------------------------------------------------------- versions in their form
def test_a_checksummed_file_relabelled_version_1_is_refused(capture, selective, tmp_path):
    for cap in (capture, selective):
        path = rewrite(cap.save(tmp_path / "c.safetensors"), lambda h: h["__metadata__"].update(schema_version="1"))
        with pytest.raises(CaptureFileError, match=r"a version 1 capture file has exactly the metadata "
                                                   r"\['capture', 'format', 'schema_version'\]"):
            inspector.load_capture(path)


@pytest.mark.parametrize(("which", "version"), [("selective", "2"), ("full", "3")])
def test_a_version_that_does_not_match_the_document_is_refused(capture, selective, tmp_path, which, version):
    cap = selective if which == "selective" else capture

    def relabel(h):  # the checksums recomputed as a writer of that version would have
        meta = h["__metadata__"]
        meta["schema_version"] = version
        sums = json.loads(meta["checksums"])
        del sums["header"]
        meta["checksums"] = json.dumps(sums)

    path = rewrite(cap.save(tmp_path / "c.safetensors"), relabel)
    with pytest.raises(CaptureFileError, match=rf"a version {version} capture document (cannot|must) have an "
                                               "'attention_layout'"):
        inspector.load_capture(path)


def test_a_version_1_file_with_a_layout_is_refused(selective, tmp_path):
    from safetensors.torch import save_file

    tensors, doc = selective.to_parts()
    path = tmp_path / "v1.safetensors"
    save_file({k: v.contiguous() for k, v in tensors.items()}, str(path),
              metadata={"format": "inspector.capture", "schema_version": "1", "capture": json.dumps(doc)})
    with pytest.raises(CaptureFileError, match=r"a version 1 capture document cannot have an 'attention_layout'"):
        inspector.load_capture(path)


# ------------------------------------------------------------------------------ nothing read beyond need
GIB = 1 << 30


def _peak_mib(fn) -> float:
    tracemalloc.start()
    try:
        fn()
    finally:
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
    return peak / 2**20


def _load_fails(path: Path, match: str) -> None:
    with pytest.raises(CaptureFileError, match=match):
        inspector.load_capture(path)


def test_an_extra_huge_tensor_is_refused_before_it_is_read(capture, tmp_path):
    """A 3 GiB tensor no capture holds, in a sparse file (no disk used): refused by name, nothing allocated."""
    path = capture.save(tmp_path / "big.safetensors")
    header, body = split(path.read_bytes())
    header["junk"] = {"dtype": "U8", "shape": [3 * GIB], "data_offsets": [len(body), len(body) + 3 * GIB]}
    path.write_bytes(join(header, body))
    with open(path, "r+b") as fh:
        fh.truncate(path.stat().st_size + 3 * GIB)
    peak = _peak_mib(lambda: _load_fails(path, r"big\.safetensors: .*1 tensor\(s\) that are no part of a capture, "
                                                r"e\.g\. 'junk'.*re-create the file"))
    assert peak < 64, f"{peak:.0f} MiB allocated"


def test_a_tensor_declared_beyond_the_file_is_refused_before_it_is_read(capture, tmp_path):
    path = capture.save(tmp_path / "short.safetensors")
    header, body = split(path.read_bytes())
    begin = header["attentions"]["data_offsets"][0]
    header["attentions"].update(shape=[1, 1, GIB // 2], data_offsets=[begin, begin + GIB])
    path.write_bytes(join(header, body))
    peak = _peak_mib(lambda: _load_fails(path, r"short\.safetensors: .*(gaps or overlaps|the file has)"))
    assert peak < 64, f"{peak:.0f} MiB allocated"


def test_a_header_length_beyond_the_limit_is_refused_unread(tmp_path):
    path = tmp_path / "long.safetensors"
    path.write_bytes((1 << 40).to_bytes(8, "little") + b"{}")
    with open(path, "r+b") as fh:
        fh.truncate(2 * GIB)  # sparse: the claimed header is not even there
    peak = _peak_mib(lambda: _load_fails(path, r"long\.safetensors: damaged or not a safetensors file \(its header "
                                                r"claims 1099511627776 bytes"))
    assert peak < 64, f"{peak:.0f} MiB allocated"


def test_many_junk_tensors_are_refused_without_reading_them(capture, tmp_path):
    path = capture.save(tmp_path / "many.safetensors")
    header, body = split(path.read_bytes())
    at = len(body)
    for i in range(100_000):
        header[f"j{i}"] = {"dtype": "U8", "shape": [1], "data_offsets": [at + i, at + i + 1]}
    path.write_bytes(join(header, body + bytes(100_000)))
    _load_fails(path, r"many\.safetensors: the header lists 100\d\d\d tensors; a capture holds at most 4096")
    for i in range(10, 100_000):
        del header[f"j{i}"]
    path.write_bytes(join(header, body + bytes(10)))
    _load_fails(path, r"many\.safetensors: .*10 tensor\(s\) that are no part of a capture")


@pytest.mark.parametrize("edit", ["gap", "overlap", "trailing bytes", "size"])
def test_offsets_must_tile_the_data_exactly(capture, tmp_path, edit):
    path = capture.save(tmp_path / "c.safetensors")
    header, body = split(path.read_bytes())
    last = max((k for k in header if k != "__metadata__"), key=lambda k: header[k]["data_offsets"][0])
    b, e = header[last]["data_offsets"]
    if edit == "gap":
        header[last]["data_offsets"] = [b + 1, e + 1]
        body += b"\0"
    elif edit == "overlap":
        header[last]["data_offsets"] = [b - 1, e - 1]
        body = body[:-1]
    elif edit == "trailing bytes":
        body += b"\0" * 8
    else:
        header[last]["shape"] = [*header[last]["shape"][:-1], header[last]["shape"][-1] + 1]
    path.write_bytes(join(header, body))
    _load_fails(path, r"c\.safetensors: (damaged header|the header describes)")


def test_a_nan_in_the_document_is_refused_on_save_and_nothing_is_written(capture, tmp_path):
    import dataclasses

    bad = dataclasses.replace(capture, meta=dataclasses.replace(capture.meta, extra={"score": float("nan")}))
    with pytest.raises(ValueError, match=r"cannot store the capture document as JSON: \['meta'\]\['extra'\]"
                                         r"\['score'\] is nan \(JSON has no NaN or infinity\)"):
        bad.save(tmp_path / "nan.safetensors")
    with pytest.raises(ValueError, match=r"\['meta'\]\['source'\]\['x'\] is a object"):
        dataclasses.replace(capture, meta=dataclasses.replace(capture.meta, source={"x": object()})).save(
            tmp_path / "obj.safetensors")
    assert list(tmp_path.iterdir()) == []


def test_the_document_is_strict_json(capture, tmp_path):
    raw = capture.save(tmp_path / "c.safetensors").read_bytes()
    header, _ = split(raw)

    def refuse(token: str) -> None:
        raise ValueError(token)

    json.loads(header["__metadata__"]["capture"], parse_constant=refuse)  # no NaN, Infinity, -Infinity
    assert fileformat.json_problem(json.loads(header["__metadata__"]["capture"])) is None


@pytest.mark.parametrize(("sources", "match"), [
    ("abc", "sources must be a dict .* or a list of one dict per item, got str"),
    ([{"kind": "text"}, "x"], "got list"),
    ({"x": object()}, r"sources must hold JSON values only.*sources\[0\]\['x'\] is a object"),
    ({"score": float("nan")}, r"sources\[0\]\['score'\] is nan"),
    ({1: "a"}, "has a key 1 that is not a string"),
    ([{"a": 1}, {"a": 2}], "got 2 sources for 1 prompts"),
])
def test_bad_sources_are_refused_before_generating(byte_tiny, sources, match):
    with pytest.raises(ValueError, match=match):
        byte_tiny.generate(PROMPT, max_new_tokens=2, sources=sources)


def test_bad_sources_of_a_forced_capture_are_refused(byte_tiny):
    from inspector._capture.forced import score

    with pytest.raises(ValueError, match=r"sources\[0\]\['x'\] is a object"):
        score(byte_tiny, PROMPT, " ok", sources={"x": object()})
