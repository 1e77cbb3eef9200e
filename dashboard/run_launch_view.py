"""The Corpus view's run launcher: start a corpus run in the background from the page, watch it, stop and resume it.

The page computes nothing itself. The form and the sidebar's decoding settings make a
:class:`inspector.runs.RunConfig`; :func:`inspector.runs.start_run` starts ``inspector run`` for it
as a child process that outlives the page; what the run is doing is read from its folder
(:func:`inspector.runs.run_status`), so a reloaded page, a second page, or a run started from a
terminal in that folder all show the same thing.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import streamlit as st

from . import state
from .access import check_path
from .dailydialog_picker import prompt_form
from .launch import LaunchOptions
from .text import md

#: Where a run goes unless the form says otherwise (under the CLI's output folder, which .gitignore covers).
DEFAULT_OUT = "out/runs/dashboard"
#: Seconds between status refreshes while a run is going.
REFRESH_S = 1.0
#: Session key: the folder the corpus view follows (opened as soon as its run.json exists).
FOLLOW = "_run_follow"
#: Session key: what the page last showed of the watched run (a change reruns the page).
SEEN = "_run_seen"


@st.cache_resource(show_spinner=False)
def _launched() -> list[str]:
    """Folders started from this server process, most recent last (a new page offers the last one)."""
    return []


def child_model(loaded: Any, request: state.ModelRequest) -> Any:
    """The model the page uses, as ``inspector run`` names it (``ValueError`` when the command line cannot load it)."""
    from inspector.runs import RunModel

    if loaded.level == "requested":
        return RunModel(request.name, request.random_weights, request.device)
    if loaded.level == "demo":  # the offline demo model stands in for the model asked for
        return RunModel(str(loaded.model.name), False, request.device)
    if loaded.level == "local-config":  # the fallback: this folder's config with random weights
        return RunModel(str(loaded.model.name), True, request.device)
    raise ValueError("the page uses the built-in model, which `inspector run` cannot load; set the sidebar's model "
                     "to a hub id or a model folder (with Random weights for a folder holding only config.json)")


def launch_panel(opts: LaunchOptions, loaded: Any, request: state.ModelRequest, settings: Any,
                 settings_error: str | None) -> None:
    """The "Start a run" form, then the status of the run in its output folder."""
    st.subheader("Start a run")
    if opts.remote:
        st.caption("Starting corpus runs is off on a page served beyond this machine; start them with `inspector run`.")
        return
    st.caption("Runs `inspector run` in the background into a resumable run folder: it goes on when the page is "
               "reloaded or closed, and the same command resumes it from the page or the command line.")
    launched = _launched()
    state.sticky("run_out", launched[-1] if launched else DEFAULT_OUT)
    config = _form(settings, settings_error, loaded.model.tokenizer)
    folder = (st.session_state.get("run_out") or "").strip()
    if st.button("Start run", key="run_start", type="primary", disabled=config is None or not folder):
        _start(config, folder, loaded, request)
    if folder:
        _follow(folder)
        status = _status(folder)
        if status is not None:
            st.session_state[SEEN] = _seen(status)
            st.fragment(_watch, run_every=REFRESH_S if status.running else None)(folder)


def _form(settings: Any, settings_error: str | None, tokenizer: Any) -> Any:
    """The form's widgets; the :class:`~inspector.runs.RunConfig` they make (``None`` when they cannot)."""
    from inspector.data.schema import LABEL_NAMES, SPLITS
    from inspector.runs import ATTENTION_MODES, CONDITIONS, RunConfig

    c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
    c1.text_input("Output folder", key="run_out", placeholder="out/runs/NAME",
                  help="A new folder, or a stopped run's folder to resume it (the same settings are needed).")
    state.sticky("run_split", "validation", SPLITS)
    split = c2.selectbox("Split", list(SPLITS), key="run_split")
    state.sticky("run_limit", 32)
    limit = int(c3.number_input("Turns (0 = all)", min_value=0, step=1, key="run_limit",
                                help="The first N selected turns, in (dialogue, turn) order."))
    state.sticky("run_batch", 16)
    batch = int(c4.number_input("Batch size", min_value=1, max_value=256, step=1, key="run_batch"))
    c1, c2 = st.columns(2)
    state.sticky("run_act", [])
    acts = c1.multiselect("Dialogue acts (none = all)", list(LABEL_NAMES["act"].values()), key="run_act")
    state.sticky("run_emotion", [])
    emotions = c2.multiselect("Emotions (none = all)", list(LABEL_NAMES["emotion"].values()), key="run_emotion")
    c1, c2, c3, c4 = st.columns(4)
    state.sticky("run_attention", "summary", ATTENTION_MODES)
    attention = c1.selectbox("Attention kept", list(ATTENTION_MODES), key="run_attention",
                             help="summary: the mean over heads (small); full: every head; none: no attention.")
    state.sticky("run_condition", "none", list(CONDITIONS))
    condition = c2.selectbox("Conditioning", list(CONDITIONS), key="run_condition",
                             help="State the reference reply's emotion or act in the reply cue (implies scoring "
                                  "the reference).")
    template = prompt_form(c3, "run_template", tokenizer,
                           "chat: the model's chat template; notebook: 'User:'/'Agent:' lines; auto: chat where the "
                           "model has a chat template. Part of the run's identity.")
    state.sticky("run_score", False)
    score = c4.checkbox("Score the reference reply", key="run_score",
                        help="Teacher-force each turn's reference reply: the difficulty columns (ref_ppl, ...).")
    if settings is None:
        st.error(f"Fix the sidebar's decoding settings first: {settings_error}")
        return None
    st.caption(f"Decoding: the sidebar's settings ({_describe(settings)}).")
    filters = {k: ",".join(v) for k, v in (("act", acts), ("emotion", emotions)) if v}
    try:
        return RunConfig(split=str(split), data=state.dailydialog_source(), filters=filters, limit=limit or None,
                         batch_size=batch, attention=str(attention), settings=settings, template=str(template),
                         score_reference=bool(score) or condition != "none", condition=str(condition))
    except ValueError as exc:
        st.error(f"Run settings: {exc}")
        return None


def _describe(settings: Any) -> str:
    mode = "sampling" if settings.do_sample else (f"beam search, {settings.num_beams} beams"
                                                  if settings.num_beams > 1 else "greedy")
    return f"{mode}, up to {settings.max_new_tokens} new tokens"


def _start(config: Any, folder: str, loaded: Any, request: state.ModelRequest) -> None:
    from inspector.runs import RunAlreadyRunning, start_run

    try:
        check_path(folder)
        start_run(config, folder, child_model(loaded, request))
    except RunAlreadyRunning as exc:
        st.error(str(exc), icon=":material/block:")
        return
    except (ValueError, OSError) as exc:
        st.error(f"Could not start the run: {exc}")
        return
    launched = _launched()
    if folder in launched:
        launched.remove(folder)
    launched.append(folder)
    del launched[:-8]
    st.session_state[FOLLOW] = folder


def _follow(folder: str) -> None:
    """Open the run in the corpus view below once it has a run.json, when it was started here or nothing is open."""
    if not (Path(folder) / "run.json").is_file():
        return
    if st.session_state.get(FOLLOW) == folder or not st.session_state.get(state.RUN_PATH):
        st.session_state[state.RUN_PATH] = folder
        state.remember("run_dir", folder)
        st.session_state.pop(FOLLOW, None)


def _status(folder: str) -> Any:
    from inspector.runs import RunError, run_status

    try:
        check_path(folder)
        return run_status(folder)
    except (RunError, OSError) as exc:
        st.error(f"Could not read the run in {folder!r}: {exc}")
        return None


def _seen(status: Any) -> tuple[Any, ...]:
    return str(status.path), status.state, status.batches_done, status.exit_code


def _watch(folder: str) -> None:
    """The run's status, progress, Stop and Resume; refreshed every :data:`REFRESH_S` while it runs."""
    status = _status(folder)
    if status is None:
        return
    if st.session_state.get(SEEN) != _seen(status):
        st.session_state[SEEN] = _seen(status)
        st.rerun()  # a batch finished, or the run ended: redraw the whole page (table, statistics)
    line = f"**{md(folder)}**: {md(status.describe())}"
    if status.state == "new":
        return
    st.progress(status.fraction, text=f"{status.turns_done} of {status.turns_planned or '?'} turns")
    if status.running:
        st.info(line, icon=":material/sync:")
        if st.button("Stop", key="run_stop"):
            _act("stop", folder)
    elif status.state == "finished":
        st.success(line, icon=":material/check_circle:")
    else:
        (st.error if status.state == "failed" else st.warning)(line)
        if st.button("Resume", key="run_resume", help="Start the same command again: it continues where it stopped."):
            _act("resume", folder)
    if status.log_tail:
        with st.expander("run.log (last lines)"):
            st.code(status.log_tail, language=None)


def _act(what: str, folder: str) -> None:
    from inspector.runs import RunError, resume_run, stop_run

    try:
        if what == "stop":
            with st.spinner("Stopping the run…"):
                stop_run(folder)
        else:
            resume_run(folder)
            st.session_state[FOLLOW] = folder
    except (RunError, OSError) as exc:
        st.error(f"Could not {what} the run: {exc}")
        return
    st.rerun()
