"""Kobayashi et al. (2020)'s norm-based attention ``||alpha_ij f(x_j)||`` (``"contribution-norm"``) and the
renormalised variant, against a computation from a tiny GPT-2's weights."""

from __future__ import annotations

import pytest
import torch

from inspector._aggregate import AGGREGATE_MODES, NORM_MODES, aggregate_by_mode

PROMPT = "Hello, how are you"


def _norms_from_weights(im, cap) -> torch.Tensor:
    """``||f_h(x_j)||`` ``[layer, head, key]`` by hand: ``x`` the layer's normed input (ln_1 of the residual
    stream the capture kept), ``f_h(x) = (x W_V^h + b_V^h) W_O^h`` from ``c_attn`` and ``c_proj``
    (Conv1D: y = x W + b)."""
    model = im.model.transformer
    d = model.config.n_embd
    heads = model.config.n_head
    dh = d // heads
    out = []
    with torch.no_grad():
        for layer, block in enumerate(model.h):
            x = block.ln_1(cap.hidden_states[layer].float())  # [seq, d]
            w_v = block.attn.c_attn.weight[:, 2 * d:]  # [d, d], columns of head h are h*dh:(h+1)*dh
            b_v = block.attn.c_attn.bias[2 * d:]
            w_o = block.attn.c_proj.weight  # [d, d], rows of head h are h*dh:(h+1)*dh
            per_head = []
            for h in range(heads):
                cols = slice(h * dh, (h + 1) * dh)
                v = x @ w_v[:, cols] + b_v[cols]  # [seq, dh]
                per_head.append((v @ w_o[cols, :]).norm(dim=-1))  # [seq]
            out.append(torch.stack(per_head))
    return torch.stack(out)


@pytest.fixture(scope="module")
def cap(byte_tiny):
    return byte_tiny.generate(PROMPT, max_new_tokens=4, keep_value_norms=True, keep_hidden_states=True,
                              hidden_dtype="float32", attention_dtype=torch.float32)


def test_modes_are_listed_and_need_value_norms(cap):
    assert {"contribution-norm", "norm-weighted-renormalised", "norm-weighted"} <= set(AGGREGATE_MODES)
    assert set(NORM_MODES) <= set(AGGREGATE_MODES)
    for mode in NORM_MODES:
        with pytest.raises(ValueError, match="keep_value_norms=True"):
            aggregate_by_mode(cap.attentions, mode)


def test_contribution_norm_is_the_papers_quantity_from_the_weights(byte_tiny, cap):
    norms = _norms_from_weights(byte_tiny, cap)
    torch.testing.assert_close(cap.value_norms.float(), norms, atol=1e-4, rtol=1e-4)
    att = cap.attentions.float()
    contrib = att * norms[:, :, None, :]  # ||alpha_ij f(x_j)|| = alpha_ij ||f(x_j)|| (alpha >= 0)
    got = aggregate_by_mode(cap.attentions, "contribution-norm", value_norms=cap.value_norms)
    torch.testing.assert_close(got, contrib.mean(dim=(0, 1)), atol=1e-4, rtol=1e-4)
    one = aggregate_by_mode(cap.attentions, "contribution-norm", layer=1, head=0, value_norms=cap.value_norms)
    torch.testing.assert_close(one, contrib[1, 0], atol=1e-4, rtol=1e-4)
    # Not renormalised: rows are the sizes of what each query gathered, not distributions.
    assert not torch.allclose(got.sum(-1), torch.ones(cap.seq_len), atol=1e-2)


def test_renormalised_variant_and_its_older_name(byte_tiny, cap):
    norms = _norms_from_weights(byte_tiny, cap)
    w = cap.attentions.float() * norms[:, :, None, :]
    expected = (w / w.sum(-1, keepdim=True)).mean(dim=(0, 1))
    for mode in ("norm-weighted-renormalised", "norm-weighted"):
        got = aggregate_by_mode(cap.attentions, mode, value_norms=cap.value_norms)
        torch.testing.assert_close(got, expected, atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(got.sum(-1), torch.ones(cap.seq_len), atol=1e-5, rtol=0)
    # The two differ: renormalising removes each head's overall size.
    paper = aggregate_by_mode(cap.attentions, "contribution-norm", value_norms=cap.value_norms)
    assert float((paper - expected).abs().max()) > 1e-3


def test_contribution_norm_heatmap_and_cli_choice(cap):
    from inspector.cli.plot import AGG_CHOICES
    from inspector.plots.attention_data import heatmap_data

    assert AGG_CHOICES == AGGREGATE_MODES
    data = heatmap_data(cap, agg="contribution-norm")
    expected = (cap.attentions.float() * cap.value_norms.float()[:, :, None, :]).mean(dim=(0, 1))
    torch.testing.assert_close(torch.as_tensor(data.matrix, dtype=torch.float32), expected, atol=1e-5, rtol=1e-5)
    assert "contribution-norm" in data.title


@pytest.mark.slow
def test_trained_models_attention_sink_contributes_less_than_it_is_attended(smollm2):
    """Kobayashi et al.'s finding on a trained model: the token heads park attention on (here the first,
    attended about 0.6 on average) carries small value vectors, so its share of the norm-based attention
    is well below its share of the attention."""
    cap = smollm2.generate("The capital of France is Paris. The capital of Germany is", max_new_tokens=6,
                           keep_value_norms=True, attention_dtype=torch.float32)
    rows = slice(1, None)  # the first row can only look at itself
    raw = aggregate_by_mode(cap.attentions, "mean")[rows]
    paper = aggregate_by_mode(cap.attentions, "contribution-norm", value_norms=cap.value_norms)[rows]
    raw_share = float(raw[:, 0].mean())
    paper_share = float((paper / paper.sum(-1, keepdim=True))[:, 0].mean())
    assert raw_share > 0.4 and paper_share < raw_share - 0.1
    assert float(cap.value_norms[:, :, 0].mean()) < 0.5 * float(cap.value_norms[:, :, 1:].mean())
