"""The Corpus view: open a run folder, grouped statistics and distributions, a turn table, open a turn's capture
(or a single capture file)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from . import research_view, state
from .launch import LaunchOptions
from .text import md


def corpus_panel(opts: LaunchOptions) -> None:
    """Open a run folder; grouped statistics, distributions, a sortable table; open a turn's capture."""
    st.subheader("Open a corpus run")
    st.caption("A run folder is written by `inspector run --split validation --out out/runs/NAME`: one capture per "
               "turn plus a summary table.")
    picked = _run_list(opts)
    if picked is not None:  # before the box is drawn, so that it shows the folder opened
        state.remember("run_dir", picked)
    c1, c2 = st.columns([4, 1])
    state.sticky("run_dir", opts.run or "")
    path = c1.text_input("Run folder", key="run_dir", placeholder="out/runs/NAME")
    c2.write("")
    opened = c2.button("Open run", key="open_run") or picked is not None
    if opened or (path and st.session_state.get(state.RUN_PATH) is None and path == (opts.run or "")
                  and not st.session_state.get("_run_autotried")):
        st.session_state["_run_autotried"] = True
        _open_run(path)
    run_path = st.session_state.get(state.RUN_PATH)
    if not run_path:
        _capture_file_opener()
        return
    try:
        run = open_live_run(run_path)
    except Exception as exc:  # noqa: BLE001 - the folder changed under us
        st.error(f"Could not read run {run_path!r}: {exc}")
        st.session_state[state.RUN_PATH] = None
        return
    summary = run.summary
    _run_info(run, run_path)
    if summary.empty:
        st.info("This run has no finished turns yet.")
        return
    _corpus_stats(run, summary)
    research_view.difficulty_panel(summary)
    research_view.compare_panel(run_path, summary)
    _corpus_table(run_path, summary)
    _capture_file_opener()


#: Run folders listed per folder of runs, newest first.
LISTED_RUNS = 20


def runs_roots(opts: LaunchOptions) -> list[Path]:
    """The folders whose run folders the page lists: where the page starts runs (``out/runs``) and the folder
    holding the run given at launch."""
    from .run_launch_view import DEFAULT_OUT

    roots = [Path(DEFAULT_OUT).parent]
    if opts.run:
        roots.append(Path(opts.run).expanduser().parent)
    out: list[Path] = []
    for root in roots:
        if root.resolve() not in [r.resolve() for r in out]:
            out.append(root)
    return out


def run_button_key(path: str | Path) -> str:
    """The key of the Open button of the listed run in ``path``."""
    import hashlib

    return "open_listed_" + hashlib.sha1(str(path).encode()).hexdigest()[:12]


def _listed(root: Path, opts: LaunchOptions) -> list[tuple[Path, str]] | None:
    """``(folder, status line)`` of each run folder in ``root``, newest first (by the folder's time);
    ``None`` where the page may not look (shared beyond its machine)."""
    from .access import PathNotAllowed, check_path

    try:
        check_path(root, opts)
    except PathNotAllowed:
        return None
    try:
        folders = [p for p in root.iterdir() if p.is_dir()] if root.is_dir() else []
    except OSError:
        return []
    from inspector.runs import RunError, run_status

    found = []
    for folder in sorted(folders, key=lambda p: p.stat().st_mtime_ns, reverse=True):
        try:
            status = run_status(folder)
        except (RunError, OSError) as exc:
            found.append((folder, f"unreadable: {exc}"))
            continue
        if status.state != "new":  # a folder that is no run
            found.append((folder, status.describe()))
        if len(found) == LISTED_RUNS:
            break
    return found


def _run_list(opts: LaunchOptions) -> str | None:
    """The run folders under :func:`runs_roots`, each with its status and an Open button; the one clicked."""
    picked = None
    for root in runs_roots(opts):
        runs = _listed(root, opts)
        if runs is None:
            continue
        with st.expander(f"Runs in {root} ({len(runs)})", expanded=not st.session_state.get(state.RUN_PATH)):
            if not runs:
                st.caption(f"No run folders in {md(str(root))} yet: start one below, or with `inspector run`.")
            for folder, line in runs:
                c1, c2 = st.columns([5, 1], vertical_alignment="center")
                c1.markdown(f"**{md(folder.name)}** · {md(line)}")
                if c2.button("Open", key=run_button_key(folder)):
                    picked = str(folder)
    return picked


def open_live_run(path: str) -> Any:
    """The run in ``path`` (:func:`state.open_run`: one still being written is read again as batches finish)."""
    return state.open_run(path)


def _open_run(path: str) -> None:
    try:
        state.open_run(path)
    except Exception as exc:  # noqa: BLE001 - missing, not a run, corrupted: say so, keep going
        st.error(f"Could not open run {path!r}: {exc}")
        st.session_state[state.RUN_PATH] = None
        return
    st.session_state[state.RUN_PATH] = path
    state.forget("corpus_row")


def _run_info(run: Any, path: str) -> None:
    doc = getattr(run, "settings", None) or {}
    model = doc.get("model") or {}
    counts = doc.get("counts") or {}
    n = len(run.summary)
    what = f"{n} turns"
    if counts.get("turns") and counts.get("turns") != n:
        what += f" of {counts['turns']} planned (status: {_live_state(run.path, doc)})"
    name = model.get("name") if isinstance(model, dict) else model
    st.success(f"Opened **{md(path)}**: {what}" + (f" · model {md(str(name))}" if name else "")
               + (f" · attention kept: {doc['attention']}" if doc.get("attention") else ""))
    if isinstance(model, dict) and model.get("random_weights"):
        st.warning("This run used **random weights**: its generated texts are meaningless.", icon=":material/warning:")
    with st.expander("Run settings (run.json)"):
        st.json(doc, expanded=False)


def _live_state(path: Any, doc: dict[str, Any]) -> str:
    """running / stopped / failed / finished as the folder says now (run.json keeps "running" after a crash)."""
    from inspector.runs import RunError, run_status

    try:
        return run_status(path).state
    except (RunError, OSError):
        return str(doc.get("status", "?"))


def _corpus_stats(run: Any, summary: Any) -> None:
    from inspector.plots import GROUP_COLUMNS, interactive

    st.subheader("By dialogue act and emotion")
    state.sticky("corpus_by", "emotion", GROUP_COLUMNS)
    by = st.segmented_control("Group by", list(GROUP_COLUMNS), key="corpus_by", required=True,
                              format_func=lambda c: c.replace("_", " ")) or "emotion"
    table = _group_stats(summary, by)
    st.caption("Mean per group (count = turns). Hover a column header for what it measures.")
    st.dataframe(table, key="corpus_stats", width="stretch", column_config=_metric_columns(table.columns))
    st.plotly_chart(interactive.corpus_distributions(summary, by=by), key="fig_corpus", width="stretch")


def _metric_columns(columns: Any) -> dict[str, Any]:
    """Readable headers (the plots' metric labels) for summary columns, keeping their names as help."""
    from inspector._formatting import PRINTF_FORMAT
    from inspector.plots import METRIC_LABELS

    out: dict[str, Any] = {}
    for col in columns:
        label = METRIC_LABELS.get(col)
        if label:
            out[col] = st.column_config.NumberColumn(label, help=f"{label} (column {col})", format=PRINTF_FORMAT)
    return out


def _group_stats(summary: Any, by: str) -> Any:
    from inspector.runs.stats import stats

    return stats(summary, by)


TABLE_COLUMNS = ("dial_id", "turn", "act", "emotion", "response_act", "response_emotion", "entropy_mean",
                 "chosen_prob_mean", "attn_prompt_share", "attn_first_share", "generated_text", "prompt_text")


def with_no_label(table: Any) -> Any:
    """``table`` with empty label cells (the last turn has no response) shown as the package's NO_LABEL."""
    from inspector.data.schema import LABEL_COLUMNS, NO_LABEL

    table = table.copy()
    for col in LABEL_COLUMNS:
        if col in table.columns:
            table[col] = table[col].astype(object).where(table[col].notna(), NO_LABEL)
    return table


def _corpus_table(run_path: str, summary: Any) -> None:
    st.subheader("Turns")
    st.caption("Click a column header to sort; select a row (or use the list below) to open that turn's capture "
               "in the Generation, Attention and Export views.")
    cols = [c for c in TABLE_COLUMNS if c in summary.columns]
    table = with_no_label(summary[cols].reset_index(drop=True))
    keys = [(int(d), int(t)) for d, t in zip(table["dial_id"], table["turn"], strict=True)]

    def on_select() -> None:
        sel = st.session_state.get("corpus_table")
        rows = (sel or {}).get("selection", {}).get("rows", []) if isinstance(sel, dict) else \
            getattr(getattr(sel, "selection", None), "rows", [])
        if rows:
            state.remember("corpus_row", keys[rows[0]])

    st.dataframe(table, key="corpus_table", on_select=on_select, selection_mode="single-row", hide_index=True,
                 width="stretch", height=320, column_config=_metric_columns(table.columns))
    labels = {k: f"dialogue {d} · turn {t} · {a}/{e}" for k, d, t, a, e in
              zip(keys, table["dial_id"], table["turn"], table.get("act", [""] * len(keys)),
                  table.get("emotion", [""] * len(keys)), strict=True)}
    state.sticky("corpus_row", None, [None, *keys])
    picked = st.selectbox("Open turn", keys, key="corpus_row", format_func=lambda k: labels[k],
                          placeholder="choose a turn (or select a row above) to open its capture")
    if picked is None:
        return
    current = st.session_state.get("_corpus_opened")
    if current == (run_path, picked):
        st.caption(f"Dialogue {picked[0]}, turn {picked[1]} is open in the other views.")
        return
    try:
        run = open_live_run(run_path)
        # a run still being written: its cached table may predate the picked turn's batch
        cap = state.run_capture(run_path, *picked) if run.complete else run.load_capture(*picked)
    except Exception as exc:  # noqa: BLE001 - missing or corrupted capture file
        st.error(f"Could not open the capture of dialogue {picked[0]}, turn {picked[1]}: {exc}")
        return
    st.session_state["_corpus_opened"] = (run_path, picked)
    state.set_capture(cap, f"run {Path(run_path).name}, dialogue {picked[0]}, turn {picked[1]}")
    st.success(f"Opened dialogue {picked[0]}, turn {picked[1]}: see the **Generation** and **Attention** tabs.")


def _capture_file_opener() -> None:
    with st.expander("Open a single capture file (.safetensors)"):
        state.sticky("capture_path", "")
        path = st.text_input("Capture file", key="capture_path",
                             placeholder="out/captures/hi.safetensors")
        if st.button("Open capture", key="open_capture"):
            try:
                cap = state.capture_file(path)
            except Exception as exc:  # noqa: BLE001 - missing, truncated, not a capture
                st.error(f"Could not open capture {path!r}: {exc}")
                return
            state.set_capture(cap, f"file {Path(path).name}", switch_to="Generation")
            state.flash(f"Opened capture file {path}.")
            st.rerun()
