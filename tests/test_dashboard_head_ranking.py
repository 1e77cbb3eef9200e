"""The Analysis view's head rankings (induction and previous-token scores) with AppTest, against loops."""

from __future__ import annotations

import pytest
from dashboard_helpers import free_text, new_app, ok, texts

pytest.importorskip("streamlit.testing.v1")


def _loop_ranking(att, ids: list[int], rows: range, score: str, top: int) -> list[tuple[str, float]]:
    """``(name, score)`` of the ``top`` heads by a loop over ``att [layer, head, q, k]`` on the given rows."""
    found = []
    for layer in range(att.shape[0]):
        for head in range(att.shape[1]):
            values = []
            for i in rows:
                if score == "previous":
                    values.append(float(att[layer, head, i, i - 1]))
                elif ids[i] in ids[:i]:
                    j = max(k for k in range(i) if ids[k] == ids[i])
                    values.append(float(att[layer, head, i, j + 1]))
            if values:
                found.append((f"L{layer}.H{head}", sum(values) / len(values)))
    found.sort(key=lambda kv: -kv[1])  # stable: ties stay in layer, head order
    return found[:top]


def test_rankings_show_the_top_heads_by_induction_and_previous_token_score(fresh):
    from dashboard.analysis_view import RANKING_TOP

    state = fresh
    at = new_app().run()
    ok(at)
    free_text(at, "User: abc abc abc\nAgent:")
    at.slider(key="max_new_tokens").set_value(6)
    at.button(key="generate").click().run()
    ok(at)
    cap = at.session_state[state.CAPTURE]
    at.session_state[state.VIEW] = "Analysis"
    at.run()
    ok(at)
    assert not at.error, texts(at.error)
    att, ids = cap.attentions.float(), cap.token_ids.tolist()
    assert len(at.dataframe) == 2
    for table, score in zip(at.dataframe, ("induction", "previous"), strict=True):
        frame = table.value
        want = _loop_ranking(att, ids, range(1, cap.seq_len), score, RANKING_TOP)
        assert list(frame["name"]) == [n for n, _ in want]
        assert frame[score].tolist() == pytest.approx([v for _, v in want], abs=1e-5)
        assert list(frame["rank"]) == list(range(1, len(want) + 1))

    # Over the generated rows only; the prompt's repeats no longer count unless a generated token repeats.
    at.segmented_control(key="an_hs_rows").set_value("generated").run()
    ok(at)
    rows = range(cap.prompt_len, cap.seq_len)
    want = _loop_ranking(att, ids, rows, "previous", RANKING_TOP)
    assert list(at.dataframe[-1].value["name"]) == [n for n, _ in want]
    induction = _loop_ranking(att, ids, rows, "induction", RANKING_TOP)
    if induction:
        assert list(at.dataframe[0].value["name"]) == [n for n, _ in induction]
    else:
        assert len(at.dataframe) == 1 and "no token in them occurred earlier" in texts(at.info)
