"""benchmarks/pool_pairs.py: back-to-back ratios pooled over runs, by hand-made results."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def load_pool():
    spec = importlib.util.spec_from_file_location("pool_pairs", ROOT / "benchmarks" / "pool_pairs.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(path: Path, batch: int, plain: list[float], capture: list[float]) -> Path:
    path.write_text(json.dumps({"results": [
        {"batch": batch, "all_s": {"plain": plain, "inspector": capture}},
        {"batch": batch + 7, "all_s": {"plain": [1.0], "inspector": [9.0]}},  # another batch: left out
    ]}))
    return path


def test_pairs_pooled_over_runs_and_interval(tmp_path, capsys):
    pool = load_pool()
    a = write(tmp_path / "a.json", 1, [2.0, 4.0], [2.2, 4.0])
    b = write(tmp_path / "b.json", 1, [1.0, 3.0, 2.0], [0.9, 3.3, 2.0])
    ratios = pool.pooled_ratios([a, b], 1)
    assert [round(r, 6) for r in ratios["inspector"]] == [1.1, 1.0, 0.9, 1.1, 1.0]
    low, high = pool.bootstrap_median(ratios["inspector"], 500)
    assert 0.9 <= low <= 1.0 <= high <= 1.1
    assert pool.main([str(a), str(b), "--resamples", "200"]) == 0
    assert "inspector    1.000x" in capsys.readouterr().out
