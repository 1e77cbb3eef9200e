"""The Streamlit dashboard (installed as ``inspector_dashboard``): ``app.py`` lays out one module per view.

Modules: ``app`` (layout), ``launch`` (start-up options), ``access`` (where it may serve, which paths it
opens), ``state`` (caches, session keys, serialised generation), ``text`` (markdown helpers), ``sidebar``
and ``decoding`` (the sidebar), ``banners`` (above the views), ``prompt_view`` with ``dailydialog_picker``,
``generation_view``, ``attention_view``, ``corpus_view``, ``export_view``. Every number, table and figure
comes from the ``inspector`` package.
"""
