"""inspector dashboard: page layout only (``streamlit run dashboard/app.py`` or ``inspector dashboard``).

Sidebar: model and decoding. Main page: banners, then one tab per view. Panels live
in :mod:`dashboard.panels`, caches and session keys in :mod:`dashboard.state`.
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[1]
if str(_ROOT) not in sys.path:  # `streamlit run dashboard/app.py` puts only dashboard/ on the path
    sys.path.insert(0, str(_ROOT))

import streamlit as st  # noqa: E402

from dashboard import panels, state  # noqa: E402

st.set_page_config(page_title="inspector · inside GPT-2", page_icon=":material/search:", layout="wide")
opts = state.launch_options()

with st.sidebar:
    request = panels.sidebar_model(opts)
    loaded = panels.load_model(request)
    panels.sidebar_loaded(loaded)
with st.sidebar:
    settings, settings_error = panels.sidebar_decoding()

panels.open_launch_capture(opts)
panels.header(loaded)
panels.flash()
panels.capture_line(settings)

state.apply_pending_view()
tabs = st.tabs(list(state.VIEWS), key=state.VIEW, on_change="rerun")
prompt_tab, generation_tab, attention_tab, corpus_tab, export_tab = tabs
capture = state.current_capture()
with prompt_tab:
    if prompt_tab.open:
        panels.prompt_panel(loaded, request, settings, settings_error)
with generation_tab:
    if generation_tab.open:
        panels.generation_panel(capture)
with attention_tab:
    if attention_tab.open:
        panels.attention_panel(capture)
with corpus_tab:
    if corpus_tab.open:
        panels.corpus_panel(opts)
with export_tab:
    if export_tab.open:
        panels.export_panel(capture)
