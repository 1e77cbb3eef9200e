"""Numbers print with their significant digits and units; tokens print readably with a legend."""

from __future__ import annotations

import math
import re

import numpy as np
import pandas as pd
import pytest
import torch

from inspector._formatting import format_prob
from inspector.plots.labels import TOKEN_LEGEND, byte_level_text, display_token, table_token, token_text


def test_a_tiny_probability_prints_as_a_percentage_not_scientific():
    assert format_prob(0.00015) == "0.015%"  # 0.00015 x 100 = 0.015; printed as 2e-04 before


def test_cli_step_table_prints_teacher_forced_probabilities_with_format_prob(tiny):
    from inspector._report import step_table

    cap = tiny.generate("User: hi\nAgent:", max_new_tokens=4)
    with torch.no_grad():
        logits = tiny.model(cap.token_ids[None]).logits[0].double()
    probs = logits.softmax(-1)
    text = step_table(cap)
    assert not re.search(r"\de-\d", text)  # no scientific notation anywhere
    rows = text.splitlines()[2 : 2 + cap.num_steps]
    for i, row in enumerate(rows):
        pos = cap.prompt_len + i
        p = float(probs[pos - 1, cap.token_ids[pos]])
        assert p < 1e-3  # random weights over 50257 tokens
        assert format_prob(p) in row.split()
    assert "entropy: of the next-token distribution, in nats" in text and TOKEN_LEGEND in text


def test_byte_level_pieces_read_as_the_tokenizer_decodes_them(tokenizer):
    pieces = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
    special = set(tokenizer.all_special_tokens)
    decoded_all = tokenizer.batch_decode([[i] for i in range(len(pieces))], clean_up_tokenization_spaces=False)
    split = 0
    for piece, decoded in zip(pieces, decoded_all, strict=True):
        if piece in special:
            continue
        text = byte_level_text(piece)
        assert text is not None
        if "<0x" in text:
            assert "\ufffd" in decoded  # only pieces the tokenizer cannot decode alone show bytes
            split += 1
        else:
            assert text == decoded
    assert split > 100  # GPT-2 has hundreds of pieces of multi-byte characters


def test_a_split_character_shows_its_bytes(tokenizer):
    ids = tokenizer.encode("’")  # U+2019, UTF-8 E2 80 99, split by GPT-2 into two tokens
    assert len(ids) == 2
    shown = "".join(token_text(tokenizer, i) for i in ids)
    raw = re.sub(r"<0x([0-9A-F]{2})>", lambda m: f"\\x{m.group(1).lower()}", shown)
    assert raw.encode("latin-1").decode("unicode_escape").encode("latin-1") == "’".encode()
    assert token_text(tokenizer, ids[0]).startswith("<0xE2>")


def test_table_tokens_mark_edge_spaces():
    assert table_token(" the") == "␣the" and table_token("a b ") == "a b␣"
    assert table_token("\n") == "↵" and table_token("  ") == display_token("  ") == "␣␣"


def test_lens_words_never_show_bare_ids(tiny):
    from inspector.plots.analysis_data import lens_data

    cap = tiny.generate("User: hi\nAgent:", max_new_tokens=3, keep_hidden_states=True)
    data = lens_data(cap, tiny, k=3)
    for row in data.words:
        for word in row:
            assert not re.fullmatch(r"<\d+>", word), word


def test_stats_leaves_out_empty_columns_and_explains_the_none_group():
    from inspector.cli.runs import stats_legend
    from inspector.runs.stats import stats

    summary = pd.DataFrame({
        "response_act": ["inform", "question", None, "inform"],
        "entropy_mean": [1.0, 2.0, 3.0, 5.0],
        "chosen_prob_mean": [0.5, 0.25, 0.125, 0.5],
        "cond_kl_mean": [math.nan] * 4,  # a run without --condition
        "attn_prompt_share": [0.5, math.nan, 0.25, 0.75],
    })
    table = stats(summary, "response_act")
    assert "cond_kl_mean" not in table.columns
    assert table.loc["inform", "entropy_mean"] == pytest.approx(3.0)  # (1 + 5) / 2
    assert table.loc["(none)", "count"] == 1
    assert math.isnan(table.loc["question", "attn_prompt_share"])  # NaN skipped; the column is kept
    legend = stats_legend(table, "response_act")
    assert "entropy_mean: entropy of the next-token distribution, nats" in legend
    assert "(none): turns without a response_act label" in legend
    assert "cond_kl_mean" not in legend


def test_a_max_over_layers_and_heads_says_it_is_not_a_distribution(tiny):
    from inspector.plots.attention_data import heatmap_data

    cap = tiny.generate("User: hi there\nAgent:", max_new_tokens=3)
    att = cap.attentions.float()  # [layer, head, query, key]
    by_hand = att.amax(dim=(0, 1))
    assert float(by_hand.sum(-1).max()) > 1.0  # rows of the max sum above 1: the title must say so
    data = heatmap_data(cap, agg="max")
    assert np.allclose(data.matrix, by_hand.numpy(), atol=1e-3)
    assert "not a distribution" in data.title and "rows can sum above 1" in data.title
    mean = heatmap_data(cap, agg="mean")
    assert "not a distribution" not in mean.title
    assert np.allclose(mean.matrix.sum(-1), 1.0, atol=1e-2)


def test_text_figure_coloured_by_entropy_names_its_unit(tiny):
    from inspector.plots.text_data import text_data

    cap = tiny.generate("User: hi\nAgent:", max_new_tokens=2)
    assert "coloured by entropy (nats)" in text_data(cap, color_by="entropy").title
    assert "(nats)" not in text_data(cap, color_by="prob").title
