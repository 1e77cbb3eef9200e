"""Saving and loading captures: a :class:`Capture` to and from its file, checked on the way in.

The bytes are :mod:`inspector._fileformat`'s (tensors in safetensors, the JSON document and
checksums in its header). Loading verifies the checksums, then the document's types and the
record's consistency (token ids against their labels, finite attention), and reports any
problem as a :class:`CaptureFileError` naming the file. Loading parses JSON and raw tensor
bytes only: no pickle, no code runs.
"""

from __future__ import annotations

import math
import os
from dataclasses import fields
from pathlib import Path
from typing import Any

import torch

from inspector._fileformat import (
    FORMAT,
    SCHEMA_VERSION,
    FormatError,
    TensorEntry,
    encode as _encode,
    read as _read,
    write as _write,
)
from inspector._records.capture import STOP_REASONS, Capture, CaptureError, CaptureMeta, TokenScores
from inspector._records.layers import LENS_INTEGER_FIELDS, CaptureLens, layer_fields_from_tensors
from inspector._records.layout import AttentionLayout
from inspector._store_checks import check_meaning

__all__ = [
    "FORMAT",
    "SCHEMA_VERSION",
    "CaptureFileError",
    "capture_bytes",
    "capture_from_parts",
    "capture_to_parts",
    "load_capture",
    "save_capture",
]

# The JSON type each CaptureMeta field must have in a file (``None`` allowed where listed).
_META_TYPES: dict[str, tuple[type, ...]] = {
    "model": (str,),
    "revision": (str, type(None)),
    "random_weights": (bool,),
    "tokenizer": (str,),
    "generation": (dict,),
    "device": (str,),
    "dtype": (str,),
    "attention_dtype": (str,),
    "versions": (dict,),
    "source": (dict,),
    "sequence_index": (int,),
    "sequence_score": (int, float, type(None)),
    "created": (str,),
    "extra": (dict,),
    "model_file": (dict,),
    "interventions": (dict,),
}
_INTEGER_TENSORS = ("token_ids", "raw.chosen_rank", "raw.topk_ids", "processed.chosen_rank", "processed.topk_ids")
#: Integer tensors a file may hold (the stored logit lens).
_OPTIONAL_INTEGER_TENSORS = tuple(f"lens.{name}" for name in LENS_INTEGER_FIELDS)
_REQUIRED_TENSORS = ("token_ids", *(f"{kind}.{f.name}" for kind in ("raw", "processed") for f in fields(TokenScores)))
#: Every other tensor name a capture file may hold (``hidden_states.<entry>`` too, see :func:`_known_name`).
_OPTIONAL_TENSORS = ("attentions", "step_attentions", "logits", "hidden_states", "value_norms",
                     *(f"lens.{f.name}" for f in fields(CaptureLens)))
#: Tensors stored in the dtype a generation setting names (checked before reading, for every file).
_DTYPE_SETTINGS = {"attentions": "attention_dtype", "step_attentions": "attention_dtype",
                   "hidden_states": "hidden_dtype"}
_REMAKE = "re-create the file with inspector capture (or model.generate(...).save(path))"


class CaptureFileError(CaptureError):
    """A file is missing, truncated, corrupted or not an inspector capture."""


def capture_to_parts(capture: Capture) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a capture into storable tensors and a JSON-serialisable document."""
    tensors, doc = capture.to_parts()
    return {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}, doc


def capture_from_parts(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> Capture:
    """Inverse of :func:`capture_to_parts`; ``CaptureError`` (a ``ValueError``) when the parts are not a capture."""
    _check_document(doc)
    _check_tensor_kinds(tensors)
    hidden, norms, lens = layer_fields_from_tensors(tensors)
    capture = Capture(
        token_ids=tensors["token_ids"],
        tokens=list(doc["tokens"]),
        prompt_len=doc["prompt_len"],
        prompt_text=doc["prompt_text"],
        generated_text=doc["generated_text"],
        stop_reason=doc["stop_reason"],
        raw=TokenScores.from_tensors(tensors, "raw"),
        processed=TokenScores.from_tensors(tensors, "processed"),
        attentions=tensors.get("attentions"),
        logits=tensors.get("logits"),
        meta=CaptureMeta.from_dict(doc["meta"]),
        labels={int(k): v for k, v in doc.get("labels", {}).items()},
        hidden_states=hidden,
        value_norms=norms,
        lens=lens,
        step_attentions=tensors.get("step_attentions"),
        attention_layout=_layout(doc.get("attention_layout")),
    )
    _check_values(capture)
    check_meaning(capture)
    return capture


def save_capture(capture: Capture, path: str | os.PathLike[str]) -> Path:
    """Write ``capture`` to ``path`` atomically; returns the path.

    The file appears only once completely written (temporary file + rename), so an
    interrupted save never leaves something that loads as a capture. A full disk raises
    :class:`inspector._atomic.DiskFullError` (an ``OSError``) naming the file.
    """
    tensors, doc = capture.to_parts()
    return _write(path, tensors, doc)


def capture_bytes(capture: Capture) -> bytes:
    """The bytes of the file :func:`save_capture` would write (e.g. for a download button)."""
    tensors, doc = capture.to_parts()
    return _encode(tensors, doc)


def load_capture(path: str | os.PathLike[str]) -> Capture:
    """Read a capture written by :func:`save_capture` (schema 2, or 1 from before checksums).

    Raises:
        CaptureFileError: naming the file, when it is missing, truncated, corrupted (a checksum
            or a check of its contents fails), of a newer schema, or not an inspector capture.
    """
    path = Path(path)
    if not path.is_file():
        raise CaptureFileError(f"{path}: no such capture file")
    try:
        tensors, doc, _ = _read(path, check=_check_entries, known=_known_name)
        return capture_from_parts(tensors, doc)
    except FormatError as exc:
        raise CaptureFileError(f"{path}: {exc}; {_REMAKE}") from exc
    except CaptureError as exc:
        raise CaptureFileError(f"{path}: not a valid inspector capture ({exc}); {_REMAKE}") from exc
    except (OSError, ValueError, KeyError, TypeError, RuntimeError, IndexError, AttributeError, OverflowError) as exc:
        raise CaptureFileError(f"{path}: not a readable inspector capture ({type(exc).__name__}: {exc})") from exc


# ----------------------------------------------------------------------------------- checks
def _layout(data: Any) -> AttentionLayout:
    """The document's attention layout (absent: a full capture, as every file written before selection)."""
    if data is None:
        return AttentionLayout()
    try:
        return AttentionLayout.from_dict(data)
    except (ValueError, TypeError) as exc:
        raise CaptureError(f"'attention_layout' is not valid ({exc})") from None


def _fail(message: str) -> None:
    raise CaptureError(message)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check_document(doc: Any) -> None:
    if not isinstance(doc, dict):
        _fail(f"the capture document is a {type(doc).__name__}, not a JSON object")
    for key in ("tokens", "prompt_len", "prompt_text", "generated_text", "stop_reason", "meta"):
        if key not in doc:
            _fail(f"the capture document has no {key!r}")
    tokens = doc["tokens"]
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        _fail("'tokens' must be a list of strings")
    if not _is_int(doc["prompt_len"]):
        _fail(f"'prompt_len' must be an integer, got {doc['prompt_len']!r}")
    for key in ("prompt_text", "generated_text"):
        if not isinstance(doc[key], str):
            _fail(f"{key!r} must be a string, got {type(doc[key]).__name__}")
    if doc["stop_reason"] not in STOP_REASONS:
        _fail(f"'stop_reason' must be one of {STOP_REASONS}, got {doc['stop_reason']!r}")
    labels = doc.get("labels", {})
    if not isinstance(labels, dict) or not all(
        isinstance(k, str) and k.isdigit() and isinstance(v, str) for k, v in labels.items()
    ):
        _fail("'labels' must map token ids to strings")
    meta = doc["meta"]
    if not isinstance(meta, dict):
        _fail(f"'meta' must be a JSON object, got {type(meta).__name__}")
    for f in fields(CaptureMeta):
        if f.name in meta and not isinstance(meta[f.name], _META_TYPES[f.name]):
            _fail(f"meta {f.name!r} has the wrong type ({type(meta[f.name]).__name__})")
        if f.name == "sequence_index" and isinstance(meta.get(f.name), bool):
            _fail("meta 'sequence_index' must be an integer")


def _known_name(name: str) -> bool:
    head, _, entry = name.partition(".")
    return name in _REQUIRED_TENSORS or name in _OPTIONAL_TENSORS or (head == "hidden_states" and entry.isdigit())


def _check_entries(entries: dict[str, TensorEntry], doc: Any) -> None:
    """Before any tensor is read: each tensor of the kind (and the stored dtype) its name has."""
    integer = {*_INTEGER_TENSORS, *_OPTIONAL_INTEGER_TENSORS}
    for name, e in entries.items():
        if name in integer and not e.is_int:
            _fail(f"tensor {name!r} must hold integers, not {e.torch_dtype}")
        if name not in integer and not e.is_float:
            _fail(f"tensor {name!r} must hold floating-point numbers, not {e.torch_dtype}")
    meta = doc.get("meta") if isinstance(doc, dict) else None
    gen = meta.get("generation") if isinstance(meta, dict) else None
    for name, setting in _DTYPE_SETTINGS.items():
        want = gen.get(setting) if isinstance(gen, dict) else None
        for key in (k for k in entries if k == name or k.startswith(f"{name}.")):
            if isinstance(want, str) and entries[key].torch_dtype != want:
                _fail(f"tensor {key!r} holds {entries[key].torch_dtype}, but it was captured with "
                      f"{setting}={want!r}")


def _check_tensor_kinds(tensors: dict[str, torch.Tensor]) -> None:
    missing = [name for name in _REQUIRED_TENSORS if name not in tensors]
    if missing:
        _fail(f"the file has no tensor {missing[0]!r}")
    for name in (*_INTEGER_TENSORS, *_OPTIONAL_INTEGER_TENSORS):
        t = tensors.get(name)
        if t is not None and (t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool):
            _fail(f"tensor {name!r} must hold integers, not {t.dtype}")
    for name, t in tensors.items():
        if name not in (*_INTEGER_TENSORS, *_OPTIONAL_INTEGER_TENSORS) and not t.dtype.is_floating_point:
            _fail(f"tensor {name!r} must hold floating-point numbers, not {t.dtype}")


def _check_values(cap: Capture) -> None:
    ids = [cap.token_ids, cap.raw.topk_ids, cap.processed.topk_ids]
    if any(bool((t < 0).any()) for t in ids if t.numel()):
        _fail("negative token ids")
    if cap.labels:
        known = torch.tensor(sorted(cap.labels), dtype=torch.long)
        for t in ids:
            if t.numel() and not bool(torch.isin(t.long(), known).all()):
                _fail("token ids without a label (outside the capture's vocabulary)")
        if cap.tokens != [cap.labels[i] for i in cap.token_ids.tolist()]:
            _fail("'tokens' do not match the labels of 'token_ids'")
    if bool((cap.raw.chosen_rank < 1).any()) or bool((cap.processed.chosen_rank < 1).any()):
        _fail("chosen ranks must be >= 1")
    for name, t in cap.tensors().items():
        if name == "lens.target_prob" and cap.lens is not None:
            t = t[cap.lens.target_rank > 0]  # NaN marks "no target" (the last position)
        if not t.dtype.is_floating_point or not t.numel():
            continue
        # one min/max pass (NaN propagates into both) instead of an elementwise mask: 20x faster on attention
        lo, hi = (float(v) for v in torch.aminmax(t))
        if math.isnan(lo) or math.isnan(hi):
            _fail(f"NaN values in {name!r}")
        if name in ("attentions", "step_attentions") and not (lo >= 0.0 and hi <= 1.0 + 1e-3):
            _fail(f"attention weights outside [0, 1] (from {lo} to {hi})")
    if cap.lens is not None and bool((cap.lens.topk_ids < 0).any()):
        _fail("negative token ids in the lens")
    score = cap.meta.sequence_score
    if score is not None and not math.isfinite(score):
        _fail("meta 'sequence_score' is not finite")
