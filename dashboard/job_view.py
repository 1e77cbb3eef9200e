"""The generation running in the background, above every view: its progress and Stop button, the cancel when a
setting it uses changes, and, when it ends, its capture (or what stopped it).

A Generate click starts a :class:`dashboard.jobs.GenerationJob` and reruns the page. Every run then draws
the progress at the top (:func:`progress`) and, after all the views are drawn, waits for the job
(:func:`wait`), moving the bar. A click anywhere (a tab, a view's widget) interrupts that wait, not the
generation: the next run draws the page and waits again. Stop, or a change to the model or to a decoding
setting the generation uses, cancels it, and the page says which.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from . import jobs, state
from .decoding import SETTING_LABELS
from .text import stop_label

#: Seconds between progress-bar moves while the page waits for the generation.
POLL_S = 0.25


def start(load: Any, req: state.ModelRequest, prompt: str, settings: Any, source: dict[str, Any]) -> None:
    """Start generating ``prompt`` in the background and rerun the page (which then shows the progress)."""
    job = jobs.GenerationJob(origin=source.get("label") or "free-text prompt", settings=settings,
                             settings_key=state.settings_key(settings), model_key=req.key,
                             total=settings.max_new_tokens)
    calls = state.generate_calls()
    store, lock = state.capture_store(), state.generation_lock()  # resolved here, on the page's thread

    def work(job: jobs.GenerationJob) -> Any:
        cap = state.generate(load, req, prompt, settings, source, on_step=job.on_step, on_start=job.on_start,
                             store=store, lock=lock)
        job.from_cache = state.generate_calls() == calls
        return cap

    st.session_state[state.JOB] = job
    jobs.start(job, work)
    st.rerun()


def running() -> bool:
    """Whether this browser session has a generation going (Generate is disabled meanwhile)."""
    job = st.session_state.get(state.JOB)
    return job is not None and job.outcome == "running"


def changed(job: jobs.GenerationJob, req: state.ModelRequest, settings: Any) -> str | None:
    """What changed that the generation uses ("the temperature", "the model"), or ``None``."""
    if req.key != job.model_key:
        return "the model"
    if settings is None:
        return "the decoding settings (now invalid)"
    if state.settings_key(settings) == job.settings_key:
        return None
    before, now = job.settings.to_dict(), settings.to_dict()
    names = [SETTING_LABELS.get(k, k) for k in before if before[k] != now.get(k)]
    return " and ".join(names) or "the decoding settings"


def progress(req: state.ModelRequest, settings: Any) -> Any:
    """The running generation's progress bar (returned, for :func:`wait`) and Stop button; nothing when none
    runs. Cancels the generation on Stop or on a change to what it uses."""
    job = st.session_state.get(state.JOB)
    if job is None or job.outcome != "running":
        return None
    left, right = st.columns([6, 1], vertical_alignment="bottom")
    if right.button("Stop", key="stop_generation", icon=":material/stop_circle:",
                    help="Stops the generation at once; nothing is kept."):
        job.cancel("you pressed Stop")
    what = changed(job, req, settings)
    if what is not None:
        job.cancel(f"{what} changed")
    bar = left.progress(_fraction(job), text=_bar_text(job))
    st.caption("It goes on while you look at other tabs; Stop, or changing the model or a decoding setting, "
               "cancels it.")
    return bar


def wait(bar: Any) -> None:
    """Wait for this page's generation (moving ``bar``, from :func:`progress`), then show its capture or
    say why it stopped.

    Called after every view is drawn: a click meanwhile interrupts the wait (Streamlit reruns the page),
    never the generation.
    """
    job = st.session_state.get(state.JOB)
    if job is None:
        return
    while not job.finished.wait(POLL_S):
        if bar is not None:
            bar.progress(_fraction(job), text=_bar_text(job))  # also where Streamlit stops this run on a click
    st.session_state.pop(state.JOB, None)
    _finish(job)
    st.rerun()


def _fraction(job: jobs.GenerationJob) -> float:
    return min(job.done / max(job.total, 1), 1.0)


def _bar_text(job: jobs.GenerationJob) -> str:
    if job.waiting:
        return f"Waiting for another page's generation to finish, then up to {job.total} tokens…"
    if job.cancel_reason:
        return f"Stopping ({job.cancel_reason}) after {job.done} of up to {job.total} tokens…"
    return f"Generated {job.done} of up to {job.total} tokens…"


def _finish(job: jobs.GenerationJob) -> None:
    """Leave the outcome for the next run to show (see :func:`dashboard.banners.flash`)."""
    outcome = job.outcome
    if outcome == "cancelled":
        state.flash(f"Generation stopped after {job.done} of up to {job.total} tokens (stopped: {job.error}); "
                    "nothing was kept. Press **Generate** to start again.", "warning")
        return
    if outcome == "failed":
        exc = job.error
        if isinstance(exc, ValueError):  # empty, too long, bad settings; CaptureError is a ValueError
            state.flash(f"Could not generate: {exc}", "error")
        else:  # e.g. out of memory on the device
            state.flash(f"Generation failed ({type(exc).__name__}): {exc}. Try fewer new tokens, a shorter "
                        "prompt or the CPU.", "error")
        return
    cap = job.result
    secs = cap.meta.extra.get("dashboard_seconds")
    # Switch to the result only from the Prompt tab: a reader who moved on to another view stays there.
    switch = "Generation" if st.session_state.get(state.VIEW, state.VIEWS[0]) == state.VIEWS[0] else None
    state.set_capture(cap, job.origin, job.settings_key, switch_to=switch)
    took = f" in {secs:.1f} s" if isinstance(secs, (int, float)) else ""
    if job.from_cache:
        took += ", from the cache (same model, prompt and settings)"
    state.flash(f"Generated {cap.num_steps} tokens{took} (stopped at: {stop_label(cap.stop_reason)}). "
                "Open **Attention** to see where each token looked.")
