"""One search's sequence files: the naming rule written by ``capture`` and read back by ``plot --beams``."""

from __future__ import annotations

from pathlib import Path

import pytest

from inspector._sequence_files import sequence_path, sequence_paths


def test_one_sequence_keeps_the_name_and_several_are_numbered(tmp_path: Path) -> None:
    out = tmp_path / "x.safetensors"
    assert sequence_path(out, 0, 1) == out
    assert [sequence_path(out, i, 3).name for i in range(3)] == ["x-0.safetensors", "x-1.safetensors",
                                                                 "x-2.safetensors"]


def test_the_pair_is_found_from_the_base_name_or_one_member(tmp_path: Path) -> None:
    for i in range(3):
        (tmp_path / f"x-{i}.safetensors").write_bytes(b"")
    want = [tmp_path / "x-0.safetensors", tmp_path / "x-2.safetensors"]
    assert sequence_paths(tmp_path / "x.safetensors", (0, 2)) == want
    assert sequence_paths(tmp_path / "x-1.safetensors", (0, 2)) == want


def test_missing_files_and_single_files_are_named(tmp_path: Path) -> None:
    (tmp_path / "x-0.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="no sequence file .*x-4.safetensors; the search's files there: x-0"):
        sequence_paths(tmp_path / "x.safetensors", (0, 4))
    (tmp_path / "one.safetensors").write_bytes(b"")
    with pytest.raises(ValueError, match="holds a single sequence"):
        sequence_paths(tmp_path / "one.safetensors", (0, 1))
    with pytest.raises(ValueError, match="ending in .safetensors"):
        sequence_paths(tmp_path / "x.pt", (0, 1))
