"""The capture file format: named tensors and a JSON document in one safetensors file, with checksums.

A capture file is a ``.safetensors`` file (8-byte little-endian header length, a JSON header, then
the tensors' bytes) whose header metadata (string to string) holds

* ``format``: ``"inspector.capture"``;
* ``schema_version``: ``"2"``, or ``"3"`` for a selective capture (its document has an ``attention_layout``
  and it may hold ``step_attentions``: a reader that predates selection must refuse it rather than take
  it for a full capture); version 1 files, written before checksums existed, are still read;
* ``capture``: the JSON document (token strings, texts, labels, metadata), strict JSON (no NaN);
* ``checksums`` (versions 2 and 3): JSON ``{"algorithm": "crc32", "capture": ..., "tensors": {name: ...},
  "header": ...}``: a CRC-32 of the document's UTF-8 bytes, of every tensor's raw bytes, and of the
  header's tensor table (``schema_version`` and every tensor's name, dtype, shape and offsets); files
  written before ``header`` existed lack it and are read without it.

An older version is read only in the exact form that version wrote: version 1 has exactly
``format``, ``schema_version`` and ``capture`` (no checksums) and no ``attention_layout``;
version 2 has no ``attention_layout``; version 3 has one.

:func:`read` parses the header itself and checks every tensor's declared dtype, shape and offsets
against each other and the file's size, and (through ``check``) the tensors' names, before reading a
byte of tensor data: loading never allocates more than the file holds. This module knows bytes and
dictionaries only, not what a capture means (that is :mod:`inspector._store`). Reading parses JSON and
raw tensor bytes: no pickle, no code runs.
"""

from __future__ import annotations

import io
import json
import math
import os
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

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
#: The largest JSON header read (safetensors' own limit): a longer one is refused before it is read.
MAX_HEADER_BYTES = 100_000_000
#: The most tensors a capture file holds (a capture has a few dozen; hidden states one per layer at most).
MAX_TENSORS = 4096
#: Safetensors dtype name -> (torch dtype name, bytes per element), for the dtypes a capture may hold.
DTYPES: dict[str, tuple[str, int]] = {
    "F64": ("float64", 8), "F32": ("float32", 4), "F16": ("float16", 2), "BF16": ("bfloat16", 2),
    "I64": ("int64", 8), "I32": ("int32", 4), "I16": ("int16", 2), "I8": ("int8", 1), "U8": ("uint8", 1),
    "BOOL": ("bool", 1),
}
_BY_TORCH = {torch_name: name for name, (torch_name, _) in DTYPES.items()}
_METADATA_KEYS = {1: {"format", "schema_version", "capture"}}
_CHECKSUM_KEYS = ({"algorithm", "capture", "tensors", "header"}, {"algorithm", "capture", "tensors"})


class FormatError(ValueError):
    """The bytes are not a well-formed capture file (the message names what is wrong, not the file)."""


@dataclass(frozen=True)
class TensorEntry:
    """One tensor as the header declares it: safetensors dtype name, shape, ``[begin, end)`` byte offsets."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def torch_dtype(self) -> str:
        """The torch dtype name (``"float16"``)."""
        return DTYPES[self.dtype][0]

    @property
    def is_float(self) -> bool:
        return self.dtype.startswith(("F", "BF"))

    @property
    def is_int(self) -> bool:
        return self.dtype.startswith(("I", "U"))


def crc32_of(data: Any) -> str:
    """CRC-32 of a bytes-like object, as 8 hex digits."""
    return f"{zlib.crc32(data) & 0xFFFFFFFF:08x}"


def _raw_bytes(tensor: torch.Tensor) -> Any:
    """A tensor's bytes as stored (C order, its own dtype, little-endian) as a numpy ``uint8`` array."""
    import torch

    flat = tensor.detach().to("cpu").contiguous().reshape(-1)
    return flat.view(torch.uint8).numpy() if flat.numel() else b""


def tensor_checksum(tensor: torch.Tensor) -> str:
    """CRC-32 of a tensor's raw bytes as stored (C order, the tensor's own dtype)."""
    return crc32_of(_raw_bytes(tensor))


def header_digest(schema_version: str, entries: Mapping[str, TensorEntry]) -> str:
    """CRC-32 of the header's tensor table: ``schema_version`` and every tensor's name, dtype, shape, offsets."""
    table = [[name, e.dtype, list(e.shape), [e.begin, e.end]] for name, e in sorted(entries.items())]
    return crc32_of(json.dumps([schema_version, table], separators=(",", ":")).encode("ascii"))


def dumps_strict(value: Any) -> str:
    """``value`` as standard JSON; ``ValueError`` naming the first NaN/infinity or non-JSON value and where."""
    try:
        return json.dumps(value, ensure_ascii=False, allow_nan=False)
    except (ValueError, TypeError):
        problem = json_problem(value)
        raise ValueError(f"cannot store the capture document as JSON: {problem}") from None


def json_problem(value: Any, where: str = "") -> str | None:
    """Why ``value`` is not standard JSON (a NaN or infinity, a non-string key, an object), or ``None``."""
    if value is None or isinstance(value, (str, bool, int)):
        return None
    if isinstance(value, float):
        return None if math.isfinite(value) else f"{where or 'the value'} is {value} (JSON has no NaN or infinity)"
    if isinstance(value, (list, tuple)):
        return next((p for i, v in enumerate(value) if (p := json_problem(v, f"{where}[{i}]"))), None)
    if isinstance(value, dict):
        for k, v in value.items():
            if not isinstance(k, str):
                return f"{where or 'the object'} has a key {k!r} that is not a string"
            if (p := json_problem(v, f"{where}[{k!r}]")) is not None:
                return p
        return None
    return f"{where or 'the value'} is a {type(value).__name__}, not a JSON value (string, number, list, object)"


def source_dicts(sources: Any, n: int, what: str = "prompts") -> list[dict[str, Any]]:
    """``sources`` as ``n`` JSON objects (where each of ``n`` prompts came from, kept in ``meta.source``).

    ``None`` (``{"kind": "text"}``), one dict (the same for each) or a list of ``n`` dicts whose keys are
    strings and whose values are JSON (strings, finite numbers, booleans, None, lists, dicts); anything
    else is a ``ValueError`` saying what to pass, raised before any model work.
    """
    if sources is None or isinstance(sources, dict):
        out = [dict(sources or {"kind": "text"}) for _ in range(n)]
    elif isinstance(sources, (list, tuple)) and all(isinstance(s, dict) for s in sources):
        out = [dict(s) for s in sources]
        if len(out) != n:
            raise ValueError(f"got {len(out)} sources for {n} {what}")
    else:
        raise ValueError(f"sources must be a dict (the same for every one of the {what}) or a list of one dict per "
                         f"item, got {type(sources).__name__}")
    for i, src in enumerate(out[:1] if sources is None or isinstance(sources, dict) else out):
        problem = json_problem(src, f"sources[{i}]")
        if problem is not None:
            raise ValueError(f"sources must hold JSON values only, to be stored with the capture: {problem}")
    return out


# ----------------------------------------------------------------------------------------------- writing
def _layout(tensors: dict[str, torch.Tensor]) -> dict[str, TensorEntry]:
    """Offsets in the data section: widest dtypes first (every tensor aligned to its element size), then by name."""
    entries: dict[str, TensorEntry] = {}
    at = 0
    for name in sorted(tensors, key=lambda n: (-tensors[n].element_size(), n)):
        t = tensors[name]
        dtype = _BY_TORCH.get(str(t.dtype).removeprefix("torch."))
        if dtype is None:
            raise ValueError(f"tensor {name!r} has dtype {t.dtype}, which a capture file cannot hold "
                             f"(one of {', '.join(_BY_TORCH)})")
        size = t.numel() * t.element_size()
        entries[name] = TensorEntry(dtype, tuple(int(s) for s in t.shape), at, at + size)
        at += size
    return entries


def _header(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> tuple[bytes, dict[str, TensorEntry]]:
    text = dumps_strict(doc)
    version = str(SELECTIVE_SCHEMA_VERSION if "attention_layout" in doc else SCHEMA_VERSION)
    entries = _layout(tensors)
    checksums = {
        "algorithm": CHECKSUM_ALGORITHM,
        "capture": crc32_of(text.encode("utf-8", "surrogatepass")),
        "tensors": {name: tensor_checksum(t) for name, t in tensors.items()},
        "header": header_digest(version, entries),
    }
    header: dict[str, Any] = {"__metadata__": {"format": FORMAT, "schema_version": version, "capture": text,
                                               "checksums": json.dumps(checksums)}}
    header.update({name: {"dtype": e.dtype, "shape": list(e.shape), "data_offsets": [e.begin, e.end]}
                   for name, e in entries.items()})
    raw = json.dumps(header, ensure_ascii=False).encode("utf-8", "surrogatepass")
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned, as safetensors pads it
    return len(raw).to_bytes(8, "little") + raw, entries


def _storable(tensors: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """CPU and contiguous."""
    return {name: t.detach().to("cpu").contiguous() for name, t in tensors.items()}


def _write_to(fh: IO[bytes], header: bytes, tensors: dict[str, torch.Tensor], entries: dict[str, TensorEntry]) -> None:
    """Write the header, then each tensor's bytes in offset order (no copy of the whole file in memory)."""
    fh.write(header)
    for name in sorted(entries, key=lambda n: entries[n].begin):
        fh.write(memoryview(_raw_bytes(tensors[name])))


def write(path: str | os.PathLike[str], tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> Path:
    """Write a capture file atomically (see :func:`inspector._atomic.atomic_path`); returns the path.

    Raises:
        ValueError: the document is not standard JSON (a NaN, an object), or a tensor's dtype cannot be stored;
            nothing is written then.
    """
    path = Path(path)
    tensors = _storable(tensors)
    header, entries = _header(tensors, doc)
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        _write_to(fh, header, tensors, entries)
    return path


def encode(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> bytes:
    """The bytes :func:`write` would write."""
    tensors = _storable(tensors)
    header, entries = _header(tensors, doc)
    buf = io.BytesIO()
    _write_to(buf, header, tensors, entries)
    return buf.getvalue()


# ----------------------------------------------------------------------------------------------- reading
def read(
    path: str | os.PathLike[str],
    verify: bool = True,
    check: Callable[[dict[str, TensorEntry], Any], None] | None = None,
    known: Callable[[str], bool] | None = None,
) -> tuple[dict[str, torch.Tensor], Any, int]:
    """``(tensors, document, schema_version)`` of a capture file, checksums verified (versions 2 and 3).

    The header is parsed and checked first (its size, the metadata's form for its version, every
    tensor's dtype, shape and offsets against each other and the file's size, every name with
    ``known``, the document's and the tensor table's checksums); then ``check(entries, document)`` may
    refuse what the caller does not expect (wrong dtypes) by raising; only then are the tensors read,
    each checked against its checksum. The document is whatever JSON the file holds.

    Raises:
        FormatError: not a capture file, an unsupported version, damaged bytes or a checksum mismatch.
        OSError: the file cannot be read.
    """
    import torch

    with open(path, "rb") as fh:
        size = os.fstat(fh.fileno()).st_size
        entries, metadata, data_start = _parse_header(fh, size)
        unknown = sorted(name for name in entries if known is not None and not known(name))
        if unknown:
            raise FormatError(f"the file holds {len(unknown)} tensor(s) that are no part of a capture, e.g. "
                              f"{unknown[0][:80]!r}")
        version, text, sums = _check_metadata(metadata, entries, verify)
        try:
            doc = json.loads(text)
        except ValueError as exc:
            raise FormatError(f"the capture document is not valid JSON ({exc})") from exc
        _check_form(version, doc)
        if check is not None:
            check(entries, doc)
        tensors: dict[str, torch.Tensor] = {}
        for name in sorted(entries, key=lambda n: entries[n].begin):
            e = entries[name]
            raw = torch.empty(e.end - e.begin, dtype=torch.uint8)  # no zero-fill: every byte is read into it
            buf: Any = raw.numpy()
            fh.seek(data_start + e.begin)
            if raw.numel() and fh.readinto(buf) != raw.numel():
                raise FormatError(f"the file ends inside tensor {name!r}: it is truncated")
            if sums is not None and sums["tensors"].get(name) != crc32_of(buf):
                raise FormatError(f"checksum mismatch in tensor {name!r}: the file is damaged")
            tensors[name] = raw.view(getattr(torch, e.torch_dtype)).reshape(e.shape)
    return tensors, doc, version


def _parse_header(fh: IO[bytes], size: int) -> tuple[dict[str, TensorEntry], dict[str, Any], int]:
    """The tensor table and metadata of the header, checked against each other and the file's ``size``."""
    start = fh.read(8)
    if len(start) < 8:
        raise FormatError(f"damaged or not a safetensors file (only {size} bytes)")
    n = int.from_bytes(start, "little")
    if n > MAX_HEADER_BYTES or 8 + n > size:
        raise FormatError(f"damaged or not a safetensors file (its header claims {n} bytes; the file has {size}, "
                          f"and a header holds at most {MAX_HEADER_BYTES})")
    try:
        header = json.loads(fh.read(n).decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise FormatError(f"damaged or not a safetensors file (the header is not JSON: {exc})") from None
    if not isinstance(header, dict):
        raise FormatError("damaged or not a safetensors file (the header is not a JSON object)")
    metadata = header.pop("__metadata__", None)
    if not isinstance(metadata, dict) or metadata.get("format") != FORMAT:
        raise FormatError("not an inspector capture (a safetensors file without inspector metadata)")
    if not all(isinstance(v, str) for v in metadata.values()):
        raise FormatError("damaged header: its metadata values must be strings")
    if len(header) > MAX_TENSORS:
        raise FormatError(f"the header lists {len(header)} tensors; a capture holds at most {MAX_TENSORS}")
    entries = {name: _entry(name, spec) for name, spec in header.items()}
    at = 0
    for name in sorted(entries, key=lambda k: (entries[k].begin, entries[k].end)):
        e = entries[name]
        if e.begin != at:
            raise FormatError(f"damaged header: tensor {name!r} starts at byte {e.begin} of the data, expected {at} "
                              "(tensors must follow each other without gaps or overlaps)")
        at = e.end
    if 8 + n + at != size:
        raise FormatError(f"the header describes {8 + n + at} bytes, the file has {size}: it is truncated or has "
                          "bytes that belong to no tensor")
    return entries, metadata, 8 + n


def _entry(name: str, spec: Any) -> TensorEntry:
    """One tensor's header entry, its byte size checked against its dtype and shape."""
    if not isinstance(spec, dict) or set(spec) != {"dtype", "shape", "data_offsets"}:
        raise FormatError(f"damaged header: tensor {name!r} must have exactly dtype, shape and data_offsets")
    dtype, shape, offsets = spec["dtype"], spec["shape"], spec["data_offsets"]
    if dtype not in DTYPES:
        raise FormatError(f"tensor {name!r} has dtype {dtype!r}, which no capture holds ({', '.join(DTYPES)})")

    def whole(v: Any) -> bool:
        return isinstance(v, int) and not isinstance(v, bool) and v >= 0

    if not isinstance(shape, list) or not all(whole(s) for s in shape):
        raise FormatError(f"damaged header: tensor {name!r} has shape {shape!r}")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(whole(o) for o in offsets)):
        raise FormatError(f"damaged header: tensor {name!r} has data_offsets {offsets!r}")
    nbytes = math.prod(shape) * DTYPES[dtype][1]
    if offsets[1] - offsets[0] != nbytes:
        raise FormatError(f"damaged header: tensor {name!r} ({dtype} {shape}) needs {nbytes} bytes, its offsets "
                          f"span {offsets[1] - offsets[0]}")
    return TensorEntry(dtype, tuple(shape), offsets[0], offsets[1])


def _check_metadata(metadata: dict[str, str], entries: dict[str, TensorEntry],
                    verify: bool) -> tuple[int, str, dict[str, Any] | None]:
    """The version, the document's text and the checksums (``None`` for version 1, or without ``verify``)."""
    version = _version(metadata.get("schema_version"))
    text = metadata.get("capture")
    if not isinstance(text, str):
        raise FormatError("the header has no capture document")
    keys = _METADATA_KEYS.get(version, {"format", "schema_version", "capture", "checksums"})
    if set(metadata) != keys:
        raise FormatError(f"a version {version} capture file has exactly the metadata {sorted(keys)}; this one has "
                          f"{sorted(metadata)}: the header is damaged")
    if version == 1 or not verify:
        return version, text, None
    try:
        sums = json.loads(metadata["checksums"])
    except ValueError:
        sums = None
    if not isinstance(sums, dict) or set(sums) not in _CHECKSUM_KEYS or not isinstance(sums["tensors"], dict):
        raise FormatError("the header's checksums are missing or damaged")
    if sums["algorithm"] != CHECKSUM_ALGORITHM:
        raise FormatError(f"unknown checksum algorithm {sums['algorithm']!r}")
    if sums["capture"] != crc32_of(text.encode("utf-8", "surrogatepass")):
        raise FormatError("checksum mismatch in the capture document: the file is damaged")
    if "header" in sums and sums["header"] != header_digest(metadata["schema_version"], entries):
        raise FormatError("checksum mismatch in the header's tensor table (a tensor's dtype, shape or offsets, "
                          "or the schema version, changed): the file is damaged")
    if set(sums["tensors"]) != set(entries):
        raise FormatError(f"the file holds tensors {sorted(entries)} but its checksums list "
                          f"{sorted(map(str, sums['tensors']))}")
    return version, text, sums


def _check_form(version: int, doc: Any) -> None:
    """An older version only in the form it wrote: ``attention_layout`` exactly in version 3 documents."""
    has_layout = isinstance(doc, dict) and "attention_layout" in doc
    if has_layout != (version == SELECTIVE_SCHEMA_VERSION):
        raise FormatError(
            f"a version {version} capture document {'cannot have' if has_layout else 'must have'} an "
            "'attention_layout': the header's schema_version does not match its contents")


def _version(value: Any) -> int:
    try:
        version = int(str(value))
    except ValueError:
        raise FormatError(f"schema_version {value!r} is not a number") from None
    if version not in READABLE_VERSIONS or str(value) != str(version):
        raise FormatError(
            f"capture schema version {value!r} is not supported (this inspector reads versions "
            f"{', '.join(map(str, READABLE_VERSIONS))}); upgrade inspector"
        )
    return version
