"""Attention rollout on a hand-computed example and its invariants."""

from __future__ import annotations

import pytest
import torch

from inspector.analysis.rollout import attention_rollout

A0 = [[1, 0, 0], [0.5, 0.5, 0], [0.2, 0.3, 0.5]]
A1 = [[1, 0, 0], [0.4, 0.6, 0], [0.1, 0.1, 0.8]]
# Two heads of layer 0 whose mean is A0.
A0_HEADS = [[[1, 0, 0], [1, 0, 0], [0, 0.6, 0.4]], [[1, 0, 0], [0, 1, 0], [0.4, 0, 0.6]]]


def _att() -> torch.Tensor:
    return torch.tensor([A0_HEADS, [A1, A1]], dtype=torch.float32)  # [2 layers, 2 heads, 3, 3]


def test_hand_computed_two_layers_three_tokens():
    # A'0 = .5 A0 + .5 I = [[1,0,0],[.25,.75,0],[.1,.15,.75]]; A'1 = [[1,0,0],[.2,.8,0],[.05,.05,.9]]
    # R = A'1 @ A'0, row 2 = .05*[1,0,0] + .05*[.25,.75,0] + .9*[.1,.15,.75]
    expected = torch.tensor([[1.0, 0.0, 0.0], [0.4, 0.6, 0.0], [0.1525, 0.1725, 0.675]])
    torch.testing.assert_close(attention_rollout(_att()), expected)


def test_layer_order_head_choice_and_residual_weight():
    att = _att()
    a0, a1 = torch.tensor(A0), torch.tensor(A1)
    # Without the identity the rollout is the plain product, later layer on the left.
    torch.testing.assert_close(attention_rollout(att, residual_weight=0.0), a1 @ a0)
    torch.testing.assert_close(attention_rollout(att, layers=[1, 0], residual_weight=0.0), a1 @ a0)
    torch.testing.assert_close(attention_rollout(att, residual_weight=1.0), torch.eye(3))
    head0 = torch.tensor(A0_HEADS[0])
    torch.testing.assert_close(attention_rollout(att, layers=[0], heads=[0]), 0.5 * head0 + 0.5 * torch.eye(3))


def test_norm_weighted_input():
    att = _att()[:1, :1]  # one layer, head 0: rows [1,0,0], [1,0,0], [0,.6,.4]
    norms = torch.tensor([[[1.0, 1.0, 3.0]]])
    # Row 2 weighted: [0, .6, 1.2] -> renormalised [0, 1/3, 2/3]; then .5 A + .5 I.
    got = attention_rollout(att, norms=norms)
    torch.testing.assert_close(got[2], torch.tensor([0.0, 1 / 6, 1 / 3 + 0.5]))


def test_invariants_on_random_causal_attention():
    torch.manual_seed(0)
    seq = 9
    scores = torch.randn(4, 3, seq, seq).masked_fill(torch.ones(seq, seq).triu(1).bool(), float("-inf"))
    att = scores.softmax(-1)
    for kwargs in ({}, {"residual_weight": 0.2}, {"layers": [1, 3], "heads": [2]},
                   {"norms": torch.rand(4, 3, seq) + 0.1}):
        r = attention_rollout(att, **kwargs)
        torch.testing.assert_close(r.sum(-1), torch.ones(seq))
        assert torch.all(r.triu(1) == 0) and torch.all(r >= 0)


def test_bad_options_are_clear_errors():
    att = _att()
    with pytest.raises(ValueError, match="layers must be"):
        attention_rollout(att, layers=[2])
    with pytest.raises(ValueError, match="heads must be"):
        attention_rollout(att, heads=[0, 0])
    with pytest.raises(ValueError, match="residual_weight"):
        attention_rollout(att, residual_weight=1.5)
    with pytest.raises(ValueError, match="seq, seq"):
        attention_rollout(att[0])


def test_a_selective_capture_says_what_to_capture(byte_tiny):
    """As head statistics do: a capture without every layer's full rows names what to capture instead."""
    from inspector._records.capture import CaptureError

    rows = byte_tiny.generate("Hello there", max_new_tokens=3, attention_rows="generated")
    with pytest.raises(CaptureError, match="capture again with attention_rows='all'"):
        attention_rollout(rows)
    with pytest.raises(ValueError, match="att is None: the capture kept no attention of every layer and head"):
        attention_rollout(rows.attentions)
    some = byte_tiny.generate("Hello there", max_new_tokens=3, layers=[1])
    with pytest.raises(CaptureError, match="kept attention for layers 1; all heads; every row only"):
        attention_rollout(some)
    full = byte_tiny.generate("Hello there", max_new_tokens=3)
    torch.testing.assert_close(attention_rollout(full), attention_rollout(full.attentions))
