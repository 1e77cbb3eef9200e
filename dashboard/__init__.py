"""The Streamlit dashboard: ``app.py`` (layout), ``state.py`` (caches, session), ``panels.py`` (views)."""
