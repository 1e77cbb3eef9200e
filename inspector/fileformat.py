"""The capture file format: named tensors and a JSON document in one safetensors file, with checksums.

A capture file is a ``.safetensors`` file whose header metadata (string to string) holds

* ``format``: ``"inspector.capture"``;
* ``schema_version``: ``"2"``, or ``"3"`` for a selective capture (its document has an ``attention_layout``
  and it may hold ``step_attentions``: a reader that predates selection must refuse it rather than take
  it for a full capture); version 1 files, written before checksums existed, are still read;
* ``capture``: the JSON document (token strings, texts, labels, metadata);
* ``checksums`` (version 2): JSON ``{"algorithm": "crc32", "capture": ..., "tensors": {name: ...}}``,
  a CRC-32 of the document's UTF-8 bytes and of every tensor's raw bytes, checked on read.

This module knows bytes and dictionaries only, not what a capture means (that is
:mod:`inspector.store`), so both the records and the store can use it. Reading parses
JSON and raw tensor bytes: no pickle, no code runs.
"""

from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from inspector._atomic import atomic_path

if TYPE_CHECKING:  # pragma: no cover
    import torch

FORMAT = "inspector.capture"
SCHEMA_VERSION = 2
#: The version of files whose document says what a selective capture holds (``attention_layout``).
SELECTIVE_SCHEMA_VERSION = 3
#: Versions this code reads: 1 has no checksums.
READABLE_VERSIONS = (1, 2, 3)
CHECKSUM_ALGORITHM = "crc32"


class FormatError(ValueError):
    """The bytes are not a well-formed capture file (the message names what is wrong, not the file)."""


def crc32_of(data: Any) -> str:
    """CRC-32 of a bytes-like object, as 8 hex digits."""
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def tensor_checksum(tensor: torch.Tensor) -> str:
    """CRC-32 of a tensor's raw bytes as stored (C order, the tensor's own dtype)."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return crc32_of(flat.view(torch.uint8).numpy() if flat.numel() else b"")


def _metadata(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> dict[str, str]:
    text = json.dumps(doc, ensure_ascii=False)
    checksums = {
        "algorithm": CHECKSUM_ALGORITHM,
        "capture": crc32_of(text.encode("utf-8", "surrogatepass")),
        "tensors": {name: tensor_checksum(t) for name, t in tensors.items()},
    }
    return {
        "format": FORMAT,
        "schema_version": str(SELECTIVE_SCHEMA_VERSION if "attention_layout" in doc else SCHEMA_VERSION),
        "capture": text,
        "checksums": json.dumps(checksums),
    }


def _storable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU, contiguous, and no two sharing memory (safetensors refuses shared tensors, e.g. ``processed=raw``)."""
    out: dict[str, torch.Tensor] = {}
    seen: set[int] = set()
    for name, tensor in tensors.items():
        t = tensor.detach().to("cpu").contiguous()
        ptr = t.untyped_storage().data_ptr()
        if t.numel() and ptr in seen:
            t = t.clone()
        seen.add(t.untyped_storage().data_ptr())
        out[name] = t
    return out


def write(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> Path:
    """Write a capture file atomically (see :func:`inspector._atomic.atomic_path`); returns the path."""
    from safetensors.torch import save_file

    path = Path(path)
    tensors = _storable(tensors)
    metadata = _metadata(tensors, doc)
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def encode(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> bytes:
    """The bytes :func:`write` would write."""
    from safetensors.torch import save

    tensors = _storable(tensors)
    return save(tensors, metadata=_metadata(tensors, doc))


def read(path: str | os.PathLike[str], verify: bool = True) -> tuple[dict[str, torch.Tensor], Any, int]:
    """``(tensors, document, schema_version)`` of a capture file, checksums verified (version 2).

    The document is whatever JSON the file holds (checking its contents is the caller's job).

    Raises:
        FormatError: not a capture file, an unsupported version, damaged bytes or a checksum mismatch.
        OSError: the file cannot be read.
    """
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise FormatError("not an inspector capture (a safetensors file without inspector metadata)")
            version = _version(metadata.get("schema_version"))
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no iterator
    except SafetensorError as exc:
        raise FormatError(f"damaged or not a safetensors file ({exc})") from exc
    text = metadata.get("capture")
    if not isinstance(text, str):
        raise FormatError("the header has no capture document")
    if version >= 2 and verify:
        _verify(metadata.get("checksums"), text, tensors)
    try:
        doc = json.loads(text)
    except ValueError as exc:
        raise FormatError(f"the capture document is not valid JSON ({exc})") from exc
    return tensors, doc, version


def _version(value: Any) -> int:
    try:
        version = int(str(value))
    except ValueError:
        raise FormatError(f"schema_version {value!r} is not a number") from None
    if version not in READABLE_VERSIONS:
        raise FormatError(
            f"capture schema version {version} is not supported (this inspector reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade inspector"
        )
    return version


def _verify(raw: Any, text: str, tensors: dict[str, torch.Tensor]) -> None:
    try:
        sums = json.loads(raw) if isinstance(raw, str) else None
    except ValueError:
        sums = None
    if not isinstance(sums, dict) or not isinstance(sums.get("tensors"), dict):
        raise FormatError("the header's checksums are missing or damaged")
    if sums.get("algorithm") != CHECKSUM_ALGORITHM:
        raise FormatError(f"unknown checksum algorithm {sums.get('algorithm')!r}")
    if sums.get("capture") != crc32_of(text.encode("utf-8", "surrogatepass")):
        raise FormatError("checksum mismatch in the capture document: the file is damaged")
    expected: dict[str, Any] = sums["tensors"]
    if set(expected) != set(tensors):
        raise FormatError(
            f"the file holds tensors {sorted(tensors)} but its checksums list {sorted(map(str, expected))}"
        )
    for name, tensor in tensors.items():
        if expected[name] != tensor_checksum(tensor):
            raise FormatError(f"checksum mismatch in tensor {name!r}: the file is damaged")
