"""The files of one search's sequences: ``X.safetensors`` for one, ``X-0``, ``X-1``, ... for several.

``inspector capture --num-beams N --num-return-sequences N --out X.safetensors`` writes one file per
returned sequence; ``inspector plot --beams I,J`` reads two of them back. Both go through here, so the
naming rule lives in one place.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture

SUFFIX = ".safetensors"


def sequence_path(out: Path, index: int, count: int) -> Path:
    """Where sequence ``index`` of ``count`` is written: ``out`` itself for one, else ``X-index.safetensors``."""
    return out if count == 1 else out.with_name(f"{out.stem}-{index}{out.suffix}")


def sequence_paths(given: Path, pair: tuple[int, int]) -> list[Path]:
    """The files of sequences ``pair`` of the search that wrote ``given`` (``X.safetensors`` or one ``X-i``).

    Raises:
        ValueError: ``given`` is not a capture path, holds a single sequence, or a sequence file is missing
            (the message lists the search's files that are there).
    """
    if len(pair) != 2 or pair[0] == pair[1] or min(pair) < 0:
        raise ValueError(f"two different sequence numbers are compared, e.g. 0,1; got {pair}")
    numbered = re.fullmatch(r"(.+)-\d+", given.stem)
    if given.suffix != SUFFIX:
        raise ValueError(f"sequence files are capture paths ending in {SUFFIX}, got {given}")
    if given.is_file() and numbered is None:
        raise ValueError(f"{given} holds a single sequence; comparing sequences needs the files X-0{SUFFIX}, "
                         f"X-1{SUFFIX}, ... that `inspector capture --num-beams N --num-return-sequences N "
                         f"--out X{SUFFIX}` writes")
    base = numbered.group(1) if given.is_file() and numbered is not None else given.stem
    paths = [given.with_name(f"{base}-{i}{given.suffix}") for i in pair]
    missing = [p for p in paths if not p.is_file()]
    if missing:
        found = sorted(p.name for p in given.parent.glob(f"{base}-*{given.suffix}"))
        raise ValueError(f"no sequence file {missing[0]}; the search's files there: {', '.join(found) or 'none'}")
    return paths


def load_sequences(given: Path, pair: tuple[int, int]) -> list[Capture]:
    """Sequences ``pair`` of one search, loaded and checked to be that search's (same model and settings).

    Raises:
        ValueError: as :func:`sequence_paths`, or files renamed or from different searches.
    """
    from inspector._store import load_capture

    paths = sequence_paths(given, pair)
    captures = [load_capture(p) for p in paths]
    for index, path, cap in zip(pair, paths, captures, strict=True):
        if cap.meta.sequence_index != index:
            raise ValueError(f"{path} holds sequence {cap.meta.sequence_index}, not {index}: renamed files?")
    a, b = captures
    if (a.meta.model, a.meta.generation) != (b.meta.model, b.meta.generation):
        raise ValueError(f"{paths[0].name} and {paths[1].name} come from different models or settings, not from "
                         "one search; compare them as two captures instead")
    return captures
