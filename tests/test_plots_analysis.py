"""Analysis figures ((lens, rollout, head-stats, compare)), static and interactive, checked through their data
against the analysis functions and hand computations."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from plot_helpers import _decode, synthetic_capture

from inspector.analysis import (
    attention_head_stats,
    attention_rollout,
    capture_lens,
    compare_captures,
    teacher_forced_hidden_states,
)
from inspector.plots import make_figure
from inspector.plots.analysis_data import lens_data


@pytest.fixture(scope="module")
def caps(byte_tiny):
    greedy = byte_tiny.generate("The cat sat on the", max_new_tokens=10, keep_logits=True)
    sampled = byte_tiny.generate("The cat sat on the", max_new_tokens=10, do_sample=True, seed=3, temperature=2.0,
                                 keep_logits=True)
    return greedy, sampled


def arr(value, dtype=np.float64) -> np.ndarray:
    return np.asarray(_decode(value), dtype=dtype)


def _axes_image(fig, i=0):
    return fig.axes[i].get_images()[0].get_array()


def test_lens_grid_cells_are_the_lens_top_token(byte_tiny, caps):
    cap = caps[0]
    lens = capture_lens(cap, byte_tiny, k=3)
    fig = make_figure("lens", cap, interactive=True, model=byte_tiny, k=3)
    trace = fig.to_dict()["data"][0]
    np.testing.assert_allclose(arr(trace["z"], dtype=np.float32), lens.topk_probs[..., 0].numpy(), atol=1e-6)
    assert trace["y"] == ["embeddings", "layer 0", "layer 1 (output)"]
    # The output row decodes the model's own next-token distribution: its top token at the last
    # prompt position is the first generated token's raw top-1.
    col = cap.prompt_len - 1
    assert trace["text"][-1][col] == cap.label(int(cap.raw.topk_ids[0, 0])).replace("<", "&lt;")
    # The same numbers in matplotlib, the output row at the top (origin lower).
    static = make_figure("lens", cap, model=byte_tiny, k=3, layers=[0, 2])
    np.testing.assert_allclose(np.asarray(_axes_image(static)), lens.topk_probs[[0, 2], :, 0].numpy(), atol=1e-6)


def test_lens_last_row_probability_is_the_captured_logits(byte_tiny, caps):
    cap = caps[0]
    fig = make_figure("lens", cap, interactive=True, model=byte_tiny, positions=list(range(cap.prompt_len - 1,
                                                                                         cap.seq_len - 1)))
    z = arr(fig.to_dict()["data"][0]["z"], dtype=np.float32)
    expected = torch.softmax(cap.logits.float(), -1).max(-1).values.numpy()
    np.testing.assert_allclose(z[-1], expected, atol=1e-4)


def test_lens_without_model_or_hidden_states_says_how(caps):
    with pytest.raises(ValueError, match="pass model="):
        make_figure("lens", caps[0])


def test_lens_accepts_a_ready_lens_result(byte_tiny, caps):
    cap = caps[0]
    states = teacher_forced_hidden_states(byte_tiny, cap.token_ids)
    from inspector.analysis import logit_lens, next_token_targets

    lens = logit_lens(states, byte_tiny, targets=next_token_targets(cap.token_ids), k=2)
    fig = make_figure("lens", cap, interactive=True, lens=lens, positions=[1, 2])
    z = arr(fig.to_dict()["data"][0]["z"], dtype=np.float32)
    np.testing.assert_allclose(z, lens.topk_probs[:, [1, 2], 0].numpy(), atol=1e-6)


def test_rollout_figure_matches_attention_rollout_and_a_hand_product():
    cap = synthetic_capture(seq=12, prompt_len=7, n_layer=3, n_head=2)
    assert cap.attentions is not None
    expected = attention_rollout(cap.attentions, layers=[0, 2], heads=[1], residual_weight=0.3).numpy()
    # By hand: per layer 0.7 A + 0.3 I of head 1, renormalised, multiplied first layer first.
    a = [0.7 * cap.attentions[i, 1].double().numpy() + 0.3 * np.eye(12) for i in (0, 2)]
    a = [m / m.sum(-1, keepdims=True) for m in a]
    np.testing.assert_allclose(expected, a[1] @ a[0], atol=1e-5)
    fig = make_figure("rollout", cap, interactive=True, layers=[0, 2], heads=[1], residual_weight=0.3)
    z = arr(fig.to_dict()["data"][0]["z"], dtype=np.float64)
    lower = np.tril(np.ones((12, 12), dtype=bool))
    np.testing.assert_allclose(z[lower], expected[lower], atol=1e-6)
    assert np.isnan(z[~lower]).all()
    static = make_figure("rollout", cap, layers=[0, 2], heads=[1], residual_weight=0.3)
    np.testing.assert_allclose(np.ma.filled(_axes_image(static), np.nan)[lower], expected[lower], atol=1e-6)
    with pytest.raises(ValueError, match="value norms"):
        make_figure("rollout", cap, norm_weighted=True)


def test_head_stats_panels_are_the_statistics():
    cap = synthetic_capture(seq=20, prompt_len=12, n_layer=3, n_head=4)
    assert cap.attentions is not None
    stats = attention_head_stats(cap.attentions, cap.prompt_len, "generated")
    fig = make_figure("head-stats", cap, interactive=True, rows="generated", statistics=["previous", "sink"])
    data = fig.to_dict()["data"]
    assert [t["name"] for t in data] == ["previous", "sink"]
    # Hand computation of the previous-token score of layer 2, head 3 over rows 12..19.
    hand = np.mean([float(cap.attentions[2, 3, q, q - 1]) for q in range(12, 20)])
    assert arr(data[0]["z"])[2, 3] == pytest.approx(hand, abs=1e-4)
    np.testing.assert_allclose(arr(data[1]["z"], dtype=np.float32), stats.sink.numpy(), atol=1e-6)
    static = make_figure("head-stats", stats)
    panels = [ax for ax in static.axes if ax.get_images()]
    assert len(panels) == 8  # every statistic, the induction score (NaN here: no token ids) included
    np.testing.assert_allclose(np.asarray(panels[0].get_images()[0].get_array()), stats.entropy.numpy(), atol=1e-6)


def test_head_stats_from_a_run_table_needs_one_group():
    cap = synthetic_capture(seq=10, prompt_len=6, n_layer=2, n_head=2)
    assert cap.attentions is not None
    s = attention_head_stats(cap.attentions, cap.prompt_len)
    from inspector.analysis import aggregate_head_stats

    table = aggregate_head_stats([s, s], [{"act": "question"}, {"act": "inform"}], by="act")
    with pytest.raises(ValueError, match="select one group"):
        make_figure("head-stats", table)
    fig = make_figure("head-stats", table[table["act"] == "inform"], interactive=True, statistics=["distance"])
    np.testing.assert_allclose(arr(fig.to_dict()["data"][0]["z"], dtype=np.float32), s.distance.numpy(),
                               atol=1e-6)


def test_compare_view_curves_and_first_divergence(caps):
    a, b = caps
    cmp = compare_captures(a, b)
    fig = make_figure("compare", a, interactive=True, other=b)
    d = fig.to_dict()
    kl, agree = d["data"][0], d["data"][1]
    np.testing.assert_allclose(arr(kl["y"], dtype=np.float32), cmp.kl.numpy(), atol=1e-6)
    assert arr(agree["y"]).astype(int).tolist() == cmp.top1_agree.int().tolist()
    # Independent: the first step where the two generated ids differ.
    ga, gb = a.generated_ids.tolist(), b.generated_ids.tolist()
    differ = [i for i, (x, y) in enumerate(zip(ga, gb, strict=False)) if x != y]
    assert d["layout"]["meta"]["first_divergence"] == (differ[0] if differ else None)
    # Exact KL by hand at step 0 (same context: the prompt) of what each run decoded from: greedy from
    # softmax(logits), the sampled run from softmax(logits / 2).
    assert d["layout"]["meta"]["distributions"] == "processed"
    assert "processed distributions" in d["layout"]["title"]["text"]
    pa, pb = torch.log_softmax(a.logits[0].double(), -1), torch.log_softmax(b.logits[0].double() / 2.0, -1)
    assert float(arr(kl["y"])[0]) == pytest.approx(float((pa.exp() * (pa - pb)).sum()), abs=1e-5)
    static = make_figure("compare", a, other=b)
    np.testing.assert_allclose(static.axes[0].get_lines()[0].get_ydata(), cmp.kl.numpy(), atol=1e-6)


def test_compare_attention_difference_over_shared_tokens(caps):
    a, b = caps
    cmp = compare_captures(a, b)
    fig = make_figure("compare", a, interactive=True, other=b, layer=1, head=0)
    heat = fig.to_dict()["data"][2]
    n = cmp.shared_len
    expected = (a.attentions[1, 0, :n, :n].float() - b.attentions[1, 0, :n, :n].float()).numpy()
    z = arr(heat["z"], dtype=np.float64)
    lower = np.tril(np.ones((n, n), dtype=bool))
    np.testing.assert_allclose(z[lower], expected[lower], atol=1e-6)


def test_compare_without_alignment_is_a_clear_error(byte_tiny, caps):
    other = byte_tiny.generate("Zebra", max_new_tokens=1)
    from inspector.analysis import CompareError

    with pytest.raises(CompareError):
        make_figure("compare", caps[0], other=other, align="prefix")
    with pytest.raises(ValueError, match="second capture"):
        make_figure("compare", caps[0], other="B.safetensors")


def test_lens_grid_of_a_capture_that_stored_its_lens(byte_tiny):
    """No model needed; the grid is the stored lens (bug: the stored form has no positions, the figure failed)."""
    cap = byte_tiny.generate("Hello there", max_new_tokens=4, lens_k=3)
    assert cap.lens is not None
    fig = make_figure("lens", cap, interactive=True, positions=[2, 3, 4])
    z = arr(fig.to_dict()["data"][0]["z"], dtype=np.float32)
    np.testing.assert_allclose(z, cap.lens.topk_probs[:, 2:5, 0].numpy(), atol=1e-6)
    static = make_figure("lens", cap)
    np.testing.assert_allclose(np.asarray(_axes_image(static)), cap.lens.topk_probs[..., 0].numpy(), atol=1e-6)
    # The hover's target rank is of the next token the capture holds.
    ranks = lens_data(cap).target_rank
    assert ranks[:, -1].tolist() == [0] * cap.lens.num_entries and np.array_equal(ranks[:, :-1],
                                                                                 cap.lens.target_rank[:, :-1].numpy())
