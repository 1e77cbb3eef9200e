"""Saving and loading captures: tensors in safetensors, metadata as JSON in its header.

A capture file is one ``.safetensors`` file. Its header metadata holds
``format = "inspector.capture"``, ``schema_version`` and ``capture`` (a JSON
document with the token strings, texts, labels and :class:`CaptureMeta`).
Loading parses JSON and raw tensor bytes only: no pickle, no code runs.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch

from inspector._atomic import atomic_path
from inspector.records import Capture, CaptureError, CaptureMeta, TokenScores

FORMAT = "inspector.capture"
SCHEMA_VERSION = 1


class CaptureFileError(CaptureError):
    """A file is missing, truncated, corrupted or not an inspector capture."""


def capture_to_parts(capture: Capture) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """Split a capture into storable tensors and a JSON-serialisable document."""
    tensors = {"token_ids": capture.token_ids, **capture.tensors()}
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in tensors.items()}
    doc = {
        "tokens": capture.tokens,
        "prompt_len": capture.prompt_len,
        "prompt_text": capture.prompt_text,
        "generated_text": capture.generated_text,
        "stop_reason": capture.stop_reason,
        "labels": {str(k): v for k, v in capture.labels.items()},
        "meta": capture.meta.to_dict(),
    }
    return tensors, doc


def capture_from_parts(tensors: dict[str, torch.Tensor], doc: dict[str, Any]) -> Capture:
    """Inverse of :func:`capture_to_parts`."""
    return Capture(
        token_ids=tensors["token_ids"],
        tokens=list(doc["tokens"]),
        prompt_len=int(doc["prompt_len"]),
        prompt_text=str(doc["prompt_text"]),
        generated_text=str(doc["generated_text"]),
        stop_reason=str(doc["stop_reason"]),
        raw=TokenScores.from_tensors(tensors, "raw"),
        processed=TokenScores.from_tensors(tensors, "processed"),
        attentions=tensors.get("attentions"),
        logits=tensors.get("logits"),
        meta=CaptureMeta.from_dict(doc["meta"]),
        labels={int(k): v for k, v in doc.get("labels", {}).items()},
    )


def save_capture(capture: Capture, path: str | os.PathLike[str]) -> Path:
    """Write ``capture`` to ``path`` atomically; returns the path.

    The file appears only once completely written (temporary file + rename), so an
    interrupted save never leaves something that loads as a capture.
    """
    from safetensors.torch import save_file

    path = Path(path)
    tensors, doc = capture_to_parts(capture)
    metadata = {
        "format": FORMAT,
        "schema_version": str(SCHEMA_VERSION),
        "capture": json.dumps(doc, ensure_ascii=False),
    }
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata=metadata)
    return path


def capture_bytes(capture: Capture) -> bytes:
    """The bytes of the file :func:`save_capture` would write (e.g. for a download button)."""
    from safetensors.torch import save

    tensors, doc = capture_to_parts(capture)
    metadata = {
        "format": FORMAT,
        "schema_version": str(SCHEMA_VERSION),
        "capture": json.dumps(doc, ensure_ascii=False),
    }
    return save(tensors, metadata=metadata)


def load_capture(path: str | os.PathLike[str]) -> Capture:
    """Read a capture written by :func:`save_capture`.

    Raises:
        CaptureFileError: naming the file, when it is missing, truncated, corrupted,
            of a newer schema, or not an inspector capture.
    """
    from safetensors import SafetensorError, safe_open

    path = Path(path)
    if not path.is_file():
        raise CaptureFileError(f"{path}: no such capture file")
    try:
        with safe_open(str(path), framework="pt") as fh:
            metadata = fh.metadata() or {}
            if metadata.get("format") != FORMAT:
                raise CaptureFileError(
                    f"{path}: not an inspector capture (a safetensors file without inspector metadata)"
                )
            version = int(metadata.get("schema_version", "0"))
            if version > SCHEMA_VERSION or version < 1:
                raise CaptureFileError(
                    f"{path}: capture schema version {version} is not supported "
                    f"(this inspector reads version {SCHEMA_VERSION}); upgrade inspector"
                )
            tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open has no iterator
        doc = json.loads(metadata["capture"])
        return capture_from_parts(tensors, doc)
    except CaptureFileError:
        raise
    except (SafetensorError, OSError, ValueError, KeyError, TypeError, RuntimeError) as exc:
        raise CaptureFileError(f"{path}: not a readable inspector capture ({type(exc).__name__}: {exc})") from exc
