"""Per-turn head statistics of corpus runs: stored per batch from the full attention, aggregated by label."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from inspector._capture.settings import GenerationSettings
from inspector.runs import RunConfig, RunError, load_run, run_corpus
from inspector.runs.head_stats import head_stats_path, read_run_head_stats


def config(data_dir, **kw) -> RunConfig:
    base = {"limit": 7, "batch_size": 3, **kw}
    return RunConfig(settings=GenerationSettings(max_new_tokens=6), data=str(data_dir), **base)


@pytest.fixture(scope="module")
def full_run(tmp_path_factory, tiny_model, data_dir):
    out = tmp_path_factory.mktemp("run") / "full"
    return run_corpus(config(data_dir, attention="full"), out, tiny_model, progress=False)


def _hand_stats(att: np.ndarray, prompt_len: int) -> dict[str, np.ndarray]:
    """sink, previous, self and prompt share of ``[layer, head, q, k]`` over rows 1.., by explicit loops."""
    seq = att.shape[2]
    rows = range(1, seq)
    out = {name: np.zeros(att.shape[:2]) for name in ("sink", "previous", "self", "prompt_share")}
    for q in rows:
        out["sink"] += att[:, :, q, 0]
        out["previous"] += att[:, :, q, q - 1]
        out["self"] += att[:, :, q, q]
        out["prompt_share"] += att[:, :, q, :prompt_len].sum(-1)
    return {k: v / len(rows) for k, v in out.items()}


def test_each_turn_stores_its_head_stats_from_its_attention(full_run):
    keys, stats = read_run_head_stats(full_run.path)
    summary = full_run.summary
    assert keys == sorted(zip(summary["dial_id"].tolist(), summary["turn"].tolist(), strict=True))
    assert all(head_stats_path(full_run.path, b).is_file() for b in range(3))  # 7 turns in batches of 3
    for (dial, turn), s in zip(keys, stats, strict=True):
        cap = full_run.load_capture(dial, turn)
        att = cap.attentions.double().numpy()
        hand = _hand_stats(att, cap.prompt_len)
        assert (s.num_layers, s.num_heads, s.num_rows) == (2, 2, cap.seq_len - 1)
        for name, expected in hand.items():
            np.testing.assert_allclose(s.statistic(name).numpy(), expected, atol=2e-3)  # float16 attention


def test_summary_mode_stats_come_from_the_full_attention(tmp_path, tiny_model, data_dir, full_run):
    # The summary mode keeps only the mean over heads; per-head statistics must still differ per head.
    reduced = run_corpus(config(data_dir, attention="summary"), tmp_path / "summary", tiny_model, progress=False)
    _, got = read_run_head_stats(reduced.path)
    _, want = read_run_head_stats(full_run.path)
    for g, w in zip(got, want, strict=True):
        for name in ("entropy", "previous", "sink"):
            torch.testing.assert_close(g.statistic(name), w.statistic(name))
    assert not torch.allclose(got[0].previous[:, 0], got[0].previous[:, 1])


def test_run_head_stats_by_act_are_turn_means_with_counts(full_run):
    keys, stats = read_run_head_stats(full_run.path)
    summary = full_run.summary.set_index(["dial_id", "turn"])
    table = full_run.head_stats(by="act")
    assert set(table.columns) >= {"act", "layer", "head", "previous", "turns", "rows"}
    for act, group in table.groupby("act"):
        members = [s for k, s in zip(keys, stats, strict=True) if summary.loc[k, "act"] == act]
        row = group[(group["layer"] == 1) & (group["head"] == 0)].iloc[0]
        assert row["turns"] == len(members)
        assert row["rows"] == sum(s.num_rows for s in members)
        assert row["previous"] == pytest.approx(np.mean([float(s.previous[1, 0]) for s in members]), abs=1e-6)
    whole = full_run.head_stats()
    assert len(whole) == 4 and (whole["turns"] == len(keys)).all()
    both = full_run.head_stats(by=["act", "emotion"])
    assert both.groupby(["layer", "head"])["turns"].sum().eq(len(keys)).all()


def test_head_stats_errors_say_what_to_do(tmp_path, tiny_model, data_dir, full_run):
    with pytest.raises(ValueError, match="choose from"):
        full_run.head_stats(by="speaker")
    none = run_corpus(config(data_dir, attention="none", limit=2), tmp_path / "none", tiny_model, progress=False)
    with pytest.raises(RunError, match="--attention full or summary"):
        none.head_stats()
    assert not list((none.path / "parts").glob("headstats-*"))


def test_reloaded_run_reads_the_same_stats(full_run):
    again = load_run(full_run.path)
    assert again.head_stats(by="emotion").equals(full_run.head_stats(by="emotion"))
