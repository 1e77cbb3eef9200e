"""Fuzzing the two doors of untrusted input: the capture loader and prompt validation.

The loader must answer any bytes with a capture or a ``CaptureFileError`` naming the file, never
another exception; prompt validation must answer any object with a prompt list or a ``ValueError``.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import inspector._fileformat as fileformat
from inspector._capture.encode import check_prompts
from inspector._records.capture import Capture
from inspector._store import CaptureFileError, capture_bytes, load_capture

FAST = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**40), 2**40) | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=10,
)


@pytest.fixture(scope="module")
def good(byte_tiny) -> bytes:
    cap = byte_tiny.generate("Hi there", max_new_tokens=3, keep_logits=True)
    return capture_bytes(cap)


@pytest.fixture(scope="module")
def scratch():
    with tempfile.TemporaryDirectory() as folder:
        yield Path(folder) / "fuzz.safetensors"


def load_or_capture_error(path: Path, data: bytes) -> None:
    path.write_bytes(data)
    try:
        assert isinstance(load_capture(path), Capture)
    except CaptureFileError as exc:
        assert str(path) in str(exc)


def split(data: bytes) -> tuple[dict, bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def join(header: dict, body: bytes) -> bytes:
    raw = json.dumps(header).encode()
    raw += b" " * (-len(raw) % 8)
    return len(raw).to_bytes(8, "little") + raw + body


@FAST
@given(data=st.binary(max_size=3000))
def test_random_bytes(scratch, data):
    load_or_capture_error(scratch, data)


@FAST
@given(cut=st.integers(min_value=0))
def test_truncations(scratch, good, cut):
    load_or_capture_error(scratch, good[: cut % len(good)])


@FAST
@given(flips=st.lists(st.tuples(st.integers(min_value=0), st.integers(1, 255)), min_size=1, max_size=6))
def test_flipped_bytes(scratch, good, flips):
    data = bytearray(good)
    for pos, mask in flips:
        data[pos % len(data)] ^= mask
    load_or_capture_error(scratch, bytes(data))


@FAST
@given(path=st.lists(st.text(max_size=12) | st.integers(0, 40), min_size=1, max_size=3), value=json_values,
       fix_checksums=st.booleans())
def test_mutated_documents(scratch, good, path, value, fix_checksums):
    """A value somewhere in the capture document replaced, with the checksums recomputed or not."""
    header, body = split(good)
    meta = header["__metadata__"]
    doc = json.loads(meta["capture"])
    node = doc
    for key in path[:-1]:
        child = node.get(str(key)) if isinstance(node, dict) else (node[key] if isinstance(key, int)
                                                                   and key < len(node) else None)
        if not isinstance(child, (dict, list)):
            break
        node = child
    last = path[-1]
    if isinstance(node, dict):
        node[str(last)] = value
    elif isinstance(last, int) and last < len(node):
        node[last] = value
    else:
        doc = value
    text = json.dumps(doc)
    meta["capture"] = text
    if fix_checksums:
        sums = json.loads(meta["checksums"])
        sums["capture"] = fileformat.crc32_of(text.encode("utf-8", "surrogatepass"))
        meta["checksums"] = json.dumps(sums)
    load_or_capture_error(scratch, join(header, body))


@FAST
@given(key=st.sampled_from(["format", "schema_version", "checksums", "capture"]) | st.text(max_size=6),
       value=st.text(max_size=30) | json_values.map(json.dumps))
def test_mutated_header_metadata(scratch, good, key, value):
    header, body = split(good)
    header["__metadata__"][key] = value
    load_or_capture_error(scratch, join(header, body))


@FAST
@given(field=st.sampled_from(["dtype", "shape", "data_offsets"]), value=json_values, which=st.integers(0, 20))
def test_mutated_tensor_entries(scratch, good, field, value, which):
    header, body = split(good)
    names = sorted(k for k in header if k != "__metadata__")
    header[names[which % len(names)]][field] = value
    load_or_capture_error(scratch, join(header, body))


prompt_like = st.recursive(
    st.none() | st.integers() | st.floats() | st.binary(max_size=8) | st.text(max_size=8)
    | st.text(st.characters(categories=["Cs", "Lu", "Zs"]), max_size=6),
    lambda inner: st.lists(inner, max_size=4) | st.tuples(inner, inner) | st.dictionaries(st.text(max_size=4), inner,
                                                                                          max_size=3),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(prompts=prompt_like)
def test_prompt_validation(prompts):
    try:
        single, prompt_list = check_prompts(prompts)
    except ValueError as exc:
        assert "prompt" in str(exc)
        return
    assert single == isinstance(prompts, str)
    assert prompt_list and all(isinstance(p, str) and p.strip() for p in prompt_list)
    for p in prompt_list:
        p.encode("utf-8")  # what reaches the tokenizer is valid text
