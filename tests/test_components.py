"""Part names (``L3.H5``, ``L3.attn``, ``L3.mlp``): parsing, expansion and the refusals, by hand."""

from __future__ import annotations

import pytest

from inspector._components import Component, parse_components


def test_names_parse_in_order_without_repeats() -> None:
    parts = parse_components("L5.H3, L7.attn,L4.mlp,L5.H3", num_layers=12, num_heads=12)
    assert parts == (Component("head", 5, 3), Component("attn", 7), Component("mlp", 4))
    assert [p.name for p in parts] == ["L5.H3", "L7.attn", "L4.mlp"]


def test_star_expands_to_every_head_of_the_layer() -> None:
    parts = parse_components(["L1.H*"], num_layers=2, num_heads=3)
    assert [p.name for p in parts] == ["L1.H0", "L1.H1", "L1.H2"]


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("L12.H0", "layers 0-11"),
        ("L0.H12", "heads 0-11"),
        ("L999999.mlp", "layers 0-11"),
        ("L1.h3", "unknown part"),
        ("layer1", "unknown part"),
        ("L1.H3.x", "unknown part"),
        ("L99999999999999.H1", "unknown part"),
    ],
)
def test_bad_names_are_refused_with_what_the_model_has(spec: str, words: str) -> None:
    with pytest.raises(ValueError, match=words):
        parse_components(spec, num_layers=12, num_heads=12)
