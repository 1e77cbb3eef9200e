"""The beam comparison figure (two returned sequences of one search), static and interactive, against hand numbers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from plot_helpers import _decode

from inspector._records.capture import Capture, CaptureMeta, TokenScores
from inspector.plots import make_figure

# Three "beams" of one search: prompt [0, 1]; beam 0 generates 2 3 0, beam 1 generates 2 1 1, beam 2 generates 3 ...
IDS = [[0, 1, 2, 3, 0], [0, 1, 2, 1, 1], [0, 1, 3, 3, 3]]
LOGITS = [
    [[0.0, 1.0, 2.0, 0.5], [1.0, 0.0, 0.0, 3.0], [2.0, 0.0, 0.0, 0.0]],
    [[0.0, 1.0, 1.5, 0.0], [0.0, 2.0, 0.0, 1.0], [0.0, 3.0, 0.0, 0.0]],
    [[0.0, 0.0, 1.0, 2.0], [0.0, 0.0, 0.0, 1.0], [0.0, 0.0, 0.0, 1.0]],
]


def _beam(i: int) -> Capture:
    ids = torch.tensor(IDS[i])
    logits = torch.tensor(LOGITS[i])
    logp = torch.log_softmax(logits, -1)
    chosen = ids[2:]
    top_lp, top_ids = logp.topk(2, -1)
    scores = TokenScores(entropy=-(logp.exp() * logp).sum(-1), chosen_logprob=logp.gather(1, chosen[:, None])[:, 0],
                         chosen_rank=(logp > logp.gather(1, chosen[:, None])).sum(-1) + 1, topk_ids=top_ids,
                         topk_logprobs=top_lp)
    # Layer 0 attends uniformly over the causal past; layer 1 attends to the previous token (to itself at 0),
    # each beam with its own mix, so the difference over the shared tokens is known.
    uniform = torch.tril(torch.ones(5, 5)) / torch.arange(1, 6)[:, None]
    prev = torch.diag(torch.ones(4), -1)
    prev[0, 0] = 1.0
    mix = 0.25 * i
    att = torch.stack([uniform, (1 - mix) * prev + mix * uniform])[:, None].expand(2, 2, 5, 5).clone()
    meta = CaptureMeta(model="hand", generation={"num_beams": 3, "num_return_sequences": 3}, sequence_index=i)
    return Capture(token_ids=ids, tokens=[f"t{int(t)}" for t in ids], prompt_len=2, prompt_text="", generated_text="",
                   stop_reason="length", raw=scores, processed=scores, attentions=att, logits=logits, meta=meta)


def _kl(p_logits, q_logits) -> float:
    zp, zq = (sum(math.exp(v) for v in row) for row in (p_logits, q_logits))
    return sum(math.exp(a) / zp * ((a - math.log(zp)) - (b - math.log(zq))) for a, b in zip(p_logits, q_logits,
                                                                                             strict=True))


@pytest.fixture(scope="module")
def beams():
    return [_beam(i) for i in range(3)]


def test_interactive_beams_figure_by_hand(beams):
    # Beams 0 and 1 share [0, 1, 2]: steps 0 and 1 have the same context; they part at step 1 (3 vs 1).
    fig = make_figure("compare", beams, interactive=True, pair=(0, 1))
    d = fig.to_dict()
    kl, agree, heat = d["data"]
    assert np.asarray(_decode(kl["x"])).tolist() == [0, 1]
    hand = [_kl(LOGITS[0][s], LOGITS[1][s]) for s in (0, 1)]
    np.testing.assert_allclose(np.asarray(_decode(kl["y"]), dtype=np.float64), hand, atol=1e-6)
    # argmax: step 0 -> 2 and 2 agree; step 1 -> 3 and 1 differ.
    assert np.asarray(_decode(agree["y"])).astype(int).tolist() == [1, 0]
    assert d["layout"]["meta"]["first_divergence"] == 1 and d["layout"]["meta"]["names"] == ["beam 0", "beam 1"]
    assert kl["name"] == "KL(beam 0||beam 1)" and "beam 0 vs beam 1" in d["layout"]["title"]["text"]
    # Attention difference over the 3 shared tokens, mean over 2 layers x 2 heads: only layer 1 differs,
    # by (mix_0 - mix_1) * (uniform - prev) = -0.25 * (uniform - prev), halved by the mean over layers.
    z = np.asarray(_decode(heat["z"]), dtype=np.float64)
    uniform = np.tril(np.ones((3, 3))) / np.arange(1, 4)[:, None]
    prev = np.array([[1.0, 0, 0], [1, 0, 0], [0, 1, 0]])
    lower = np.tril(np.ones((3, 3), dtype=bool))
    np.testing.assert_allclose(z[lower], (-0.125 * (uniform - prev))[lower], atol=1e-6)


def test_static_beams_figure_and_the_pair_order(beams):
    fig = make_figure("compare", beams, pair=(2, 0))
    # Beams 2 and 0 share only the prompt: one aligned step, where they already part (3 vs 2).
    line = fig.axes[0].get_lines()[0]
    assert line.get_xdata().tolist() == [0]
    assert line.get_ydata()[0] == pytest.approx(_kl(LOGITS[2][0], LOGITS[0][0]), abs=1e-6)
    assert "KL(beam 2||beam 0)" in line.get_label()
    assert fig.get_suptitle().startswith("beam 2 vs beam 0 over 1 aligned steps")
    heat = fig.axes[1].get_images()[0].get_array()
    assert heat.shape == (2, 2)


def test_beams_figure_errors(beams):
    with pytest.raises(ValueError, match="two different beams"):
        make_figure("compare", beams, pair=(1, 1))
    with pytest.raises(ValueError, match="beam"):
        make_figure("compare", beams, pair=(0, 5))
    with pytest.raises(ValueError, match="pair must be two beam indices"):
        make_figure("compare", beams, pair=(0,))
    other_prompt = _beam(0)
    other_prompt.token_ids[0] = 3
    with pytest.raises(ValueError, match="another prompt"):
        make_figure("compare", [beams[0], other_prompt], pair=(0, 1))
    with pytest.raises(ValueError, match="option"):
        make_figure("compare", beams, pair=(0, 1), other=beams[1])


def test_real_tiny_beam_search(byte_tiny):
    """Beams of a real search share their context up to where they part: same distributions there (KL ~ 0)."""
    beams = byte_tiny.generate(["Hi there"], max_new_tokens=5, num_beams=3, num_return_sequences=3, keep_logits=True,
                               attention_dtype=torch.float32)
    fig = make_figure("compare", beams, interactive=True, pair=(0, 1))
    d = fig.to_dict()
    a, b = beams[0], beams[1]
    n = min(a.seq_len, b.seq_len)
    shared = next((i for i in range(n) if a.token_ids[i] != b.token_ids[i]), n)
    steps = list(range(0, min(shared, a.seq_len - 1, b.seq_len - 1) - a.prompt_len + 1))
    assert np.asarray(_decode(d["data"][0]["x"])).tolist() == steps
    np.testing.assert_allclose(np.asarray(_decode(d["data"][0]["y"]), dtype=np.float64), np.zeros(len(steps)),
                               atol=1e-4)
    part = shared - a.prompt_len
    assert d["layout"]["meta"]["first_divergence"] == (part if part < len(steps) else None)
