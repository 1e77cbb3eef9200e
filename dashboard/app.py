"""inspector dashboard: page layout only (``inspector dashboard``, or ``streamlit run dashboard/app.py``).

Sidebar: model and decoding. Main page: banners, the running generation's progress, then one tab per view
(the generation runs in the background, see ``job_view.py``); each view lives
in its own module of this folder, caches and session keys in ``state.py``. The folder is
the package ``dashboard`` in a source checkout and ``inspector_dashboard`` when installed.
"""

from __future__ import annotations

import importlib
import sys
from pathlib import Path
from types import ModuleType

import streamlit as st

# Streamlit runs this file as a script, not as part of its package: import the sibling modules
# through the folder's own name, whatever it is installed as.
_HERE = Path(__file__).resolve().parent
if str(_HERE.parent) not in sys.path:
    sys.path.insert(0, str(_HERE.parent))


def _view(name: str) -> ModuleType:
    return importlib.import_module(f"{_HERE.name}.{name}")


access, launch, state = _view("access"), _view("launch"), _view("state")
banners, sidebar, decoding = _view("banners"), _view("sidebar"), _view("decoding")
prompt_view, generation_view, attention_view = _view("prompt_view"), _view("generation_view"), _view("attention_view")
corpus_view, export_view, job_view = _view("corpus_view"), _view("export_view"), _view("job_view")
analysis_view, run_launch_view, why_view = _view("analysis_view"), _view("run_launch_view"), _view("why_view")

st.set_page_config(page_title="inspector · inside a language model", page_icon=":material/search:", layout="wide")
opts = launch.launch_options()
refusal = access.exposure_refusal(st.get_option("server.address"), opts.remote)
if refusal:
    st.error(refusal, icon=":material/lock:")
    st.stop()

banners.title()  # drawn first: the first visit shows the page, then what it waits for
with st.sidebar:
    request = sidebar.sidebar_model(opts)
loaded = sidebar.load_model(request)
sidebar.reflect_loaded(request, loaded)
with st.sidebar:
    sidebar.sidebar_loaded(loaded, request)
    settings, settings_error = decoding.sidebar_decoding()

banners.open_launch_capture(opts)
banners.header(loaded, request)
generating = job_view.progress(request, settings)
banners.flash()
banners.capture_line(settings)

state.apply_pending_view()
tabs = st.tabs(list(state.VIEWS), key=state.VIEW, on_change="rerun")
prompt_tab, generation_tab, attention_tab, analysis_tab, why_tab, corpus_tab, export_tab = tabs
capture = state.current_capture()
with prompt_tab:
    if prompt_tab.open:
        prompt_view.prompt_panel(loaded, request, settings, settings_error)
with generation_tab:
    if generation_tab.open:
        generation_view.generation_panel(capture)
with attention_tab:
    if attention_tab.open:
        attention_view.attention_panel(capture)
with analysis_tab:
    if analysis_tab.open:
        analysis_view.analysis_panel(capture, loaded, request, settings)
with why_tab:
    if why_tab.open:
        why_view.why_panel(capture, loaded, request, settings)
with corpus_tab:
    if corpus_tab.open:
        run_launch_view.launch_panel(opts, loaded, request, settings, settings_error)
        corpus_view.corpus_panel(opts)
with export_tab:
    if export_tab.open:
        export_view.export_panel(capture, loaded)
job_view.wait(generating)  # last: the page is drawn; a click meanwhile reruns it, the generation goes on
