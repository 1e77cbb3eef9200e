"""The Corpus view's research panels: turns ordered and binned by difficulty, and a paired comparison of two runs."""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import state

#: Difficulty columns a run has with ``--score-reference`` (lower = easier), in the order offered.
DIFFICULTY_COLUMNS = ("ref_ppl", "ref_nll_mean", "ref_nll", "entropy_mean")


def difficulty_panel(summary: Any) -> None:
    """Sort and bin the run's turns by difficulty; difficulty against act and emotion."""
    from inspector.plots import GROUP_COLUMNS, interactive
    from inspector.plots.interactive.research import difficulty_bins_figure
    from inspector.research.curriculum import order_turns

    st.subheader("Difficulty")
    if "ref_ppl" not in summary.columns or not summary["ref_ppl"].notna().any():
        st.caption("This run did not score the reference replies; start it with `inspector run --score-reference` "
                   "(or `--condition emotion`) for the difficulty columns (ref_ppl, ref_nll_mean).")
        return
    options = [c for c in DIFFICULTY_COLUMNS if c in summary.columns]
    c1, c2, c3 = st.columns([2, 1, 2])
    state.sticky("difficulty_by", options[0], options)
    by = c1.selectbox("Order by", options, key="difficulty_by") or options[0]
    ranked = int(summary[by].notna().sum())
    state.sticky("difficulty_bins", min(5, max(ranked, 1)))
    bins = int(c2.number_input("Bins", min_value=1, max_value=max(ranked, 1), step=1, key="difficulty_bins"))
    state.sticky("difficulty_label", "response_emotion", GROUP_COLUMNS)
    label = c3.selectbox("Against", list(GROUP_COLUMNS), key="difficulty_label",
                         format_func=lambda c: c.replace("_", " ")) or "response_emotion"
    try:
        order = order_turns(summary, by=by, bins=min(bins, ranked))
    except ValueError as exc:
        st.error(str(exc))
        return
    st.caption(f"{ranked} turns ranked from easy to hard (lowest {by} first) in equal-count bins; "
               "turns without a value (no reference reply) come last. `inspector order` writes this table.")
    st.dataframe(order, key="difficulty_table", hide_index=True, width="stretch")
    st.plotly_chart(difficulty_bins_figure(order, label), key="fig_difficulty_bins", width="stretch")
    metrics = [c for c in ("ref_ppl", "ref_nll_mean", "cond_delta_loglik_mean", "cond_kl_mean", "attn_condition")
               if c in summary.columns and summary[c].notna().any()]
    st.plotly_chart(interactive.corpus_distributions(summary, by=label, metrics=metrics), key="fig_difficulty",
                    width="stretch")


def compare_panel(run_path: str, summary: Any) -> None:
    """Compare this run (A) with another run folder (B) over the same turns: a figure per metric."""
    from inspector.plots import GROUP_COLUMNS
    from inspector.plots.interactive.research import comparison_figure
    from inspector.research.compare_runs import compare_runs

    with st.expander("Compare with another run"):
        st.caption("Paired per turn: B - A for every numeric column both runs have, with bootstrap intervals. "
                   "`inspector compare A B` prints the same table.")
        other = st.text_input("Run B folder", key="compare_run", placeholder="runs/OTHER")
        if not other:
            return
        try:
            run_b = state.open_run(other)
        except Exception as exc:  # noqa: BLE001 - missing, not a run, corrupted: say so
            st.error(f"Could not open run {other!r}: {exc}")
            return
        state.sticky("compare_by", "(all turns)", ["(all turns)", *GROUP_COLUMNS])
        by = st.selectbox("Group by", ["(all turns)", *GROUP_COLUMNS], key="compare_by")
        try:
            result = compare_runs(summary, run_b.summary, by=None if by == "(all turns)" else by, n_resamples=1000)
        except ValueError as exc:
            st.error(str(exc))
            return
        st.text(f"A: {run_path}\nB: {other}\n{result.describe()}")
        columns = list(result.columns)
        default = [c for c in ("entropy_mean", "chosen_prob_mean", "ref_ppl") if c in columns] or columns[:1]
        state.sticky("compare_columns", default)
        chosen = st.multiselect("Metrics", columns, key="compare_columns")
        st.dataframe(result.to_frame(), key="compare_table", hide_index=True, width="stretch")
        for i, column in enumerate(chosen):
            st.plotly_chart(comparison_figure(result, column), key=f"fig_compare_{i}", width="stretch")
