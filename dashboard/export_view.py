"""The Export view: download the current figure (PNG, SVG, PDF, HTML) with its view's settings, and the capture."""

from __future__ import annotations

import json
from typing import Any

import streamlit as st

from . import state
from .attention_view import ALL

EXPORT_FORMATS = ("png", "svg", "pdf", "html")
_MIME = {"png": "image/png", "svg": "image/svg+xml", "pdf": "application/pdf", "html": "text/html"}

FIGURES = {
    "heatmap": "Attention heatmap (current layer/head/aggregate)",
    "heads": "Head grid (all layers × heads)",
    "token": "Where the picked token looks",
    "topk": "Top-k candidates and entropy per step",
    "text": "Coloured text",
    "corpus": "Corpus distributions (open run)",
    "lens": "Logit lens grid (Analysis view's window)",
    "rollout": "Attention rollout (Analysis view's layers, heads, residual weight)",
    "head-stats": "Head statistics (Analysis view's rows and statistics)",
    "compare": "Comparison with B (Analysis view)",
    "beams": "Two beams of the search (Analysis view)",
}
_ANALYSIS = ("lens", "rollout", "head-stats", "compare", "beams")
#: Export entries drawn by another figure kind: the beams are the "compare" kind of a list of captures.
_KIND = {"beams": "compare"}


def figure_options(kind: str) -> dict[str, Any]:
    """The options the views currently show for ``kind`` (layer, head, aggregate, token, colouring, grouping)."""
    get = state.remembered
    if kind == "heatmap":
        layer, head = get("att_layer", ALL), get("att_head", ALL)
        return {"layer": None if layer == ALL else layer, "head": None if head == ALL else head,
                "agg": get("att_agg") or "mean"}
    if kind == "token":
        from inspector.plots import default_position

        cap = state.current_capture()
        default = default_position(cap) if cap is not None else 0
        position = get("att_token", default)
        return {"position": position if cap is not None and 0 <= position < cap.seq_len else default}
    if kind == "topk":
        return {"k": get("gen_topk")}
    if kind == "text":
        return {"color_by": get("gen_color_by") or "prob"}
    if kind == "corpus":
        return {"by": get("corpus_by") or "emotion"}
    return _analysis_options(kind)


def _analysis_options(kind: str) -> dict[str, Any]:
    """The Analysis view's choices for ``kind`` (the figure's defaults where the view was not opened)."""
    from .analysis_view import LENS_WINDOW

    get = state.remembered
    cap = state.current_capture()
    if kind == "lens" and cap is not None:
        start = get("an_lens_start", 0)
        start = start if isinstance(start, int) and 0 <= start < cap.seq_len else 0
        return {"positions": list(range(start, min(cap.seq_len, start + LENS_WINDOW)))}
    if kind == "rollout":
        return {"layers": get("an_roll_layers") or None, "heads": get("an_roll_heads") or None,
                "residual_weight": get("an_roll_r")}
    if kind == "head-stats":
        return {"rows": get("an_hs_rows"), "statistics": get("an_hs_stats") or None}
    if kind == "beams":
        return {"pair": (int(get("an_beam_a", 0)), int(get("an_beam_b", 1)))}
    return {}


def analysis_sources(capture: Any, loaded: Any = None) -> dict[str, Any]:
    """What each analysis export draws from, for the kinds the current capture allows.

    ``lens``: the capture (its stored lens) or, for hidden states without one, the
    capture plus ``model`` (the loaded model); ``rollout``/``head-stats``: a capture with
    attention; ``compare``: the capture and the Analysis view's B; ``beams``: the beams
    the Analysis view fetched for this capture.
    """
    from .analysis_view import BEAMS_CAPTURE, COMPARE_CAPTURE, capture_id

    out: dict[str, Any] = {}
    if capture is None:
        return out
    if getattr(capture, "lens", None) is not None:
        out["lens"] = (capture, {})
    elif getattr(capture, "hidden_states", None) is not None and loaded is not None:
        out["lens"] = (capture, {"model": loaded.model})
    if capture.attentions is not None and capture.attention_layout.whole_grid:
        out["rollout"] = (capture, {})
        out["head-stats"] = (capture, {})
    saved = st.session_state.get(COMPARE_CAPTURE)
    if saved is not None and saved[0] == capture_id(capture):
        out["compare"] = (capture, {"other": saved[1]})
    beams = st.session_state.get(BEAMS_CAPTURE)
    if beams is not None and beams[0] == capture_id(capture):
        out["beams"] = (beams[1], {})
    return out


def figure_bytes(kind: str, source: Any, fmt: str, **opts: Any) -> bytes:
    """The figure ``kind`` of ``source`` (a capture, a run summary for ``corpus``, a search's beams for
    ``beams``) as ``fmt`` bytes."""
    from inspector.plots import make_figure
    from inspector.plots.export import export_bytes

    fig = make_figure(_KIND.get(kind, kind), source, interactive=fmt == "html", **opts)
    return export_bytes(fig, fmt)


def export_panel(capture: Any, loaded: Any = None) -> None:
    """Download the current figure (PNG, SVG, PDF, HTML) and the capture file.

    ``loaded``: the loaded model, which the lens of a capture that kept hidden states
    (but no stored lens) decodes them with; without it such a lens is not offered.
    """
    from inspector._store import capture_bytes

    run_path = st.session_state.get(state.RUN_PATH)
    analysis = analysis_sources(capture, loaded)
    kinds = [k for k in FIGURES if (k != "corpus" or run_path) and (k not in _ANALYSIS or k in analysis)]
    if capture is None:
        kinds = [k for k in kinds if k == "corpus"]
    if not kinds:
        st.info("Nothing to export yet: generate, or open a corpus run.")
        return
    st.subheader("Download a figure")
    state.sticky("export_kind", kinds[0], kinds)
    state.sticky("export_format", "png", EXPORT_FORMATS)
    c1, c2 = st.columns([3, 1])
    kind = c1.selectbox("Figure", kinds, key="export_kind", format_func=lambda k: FIGURES[k]) or kinds[0]
    fmt = c2.selectbox("Format", EXPORT_FORMATS, key="export_format", format_func=lambda f: f.upper(),
                       help="PNG, SVG and PDF are drawn with matplotlib; HTML is the interactive plotly figure "
                       "(opens offline).") or "png"
    opts = figure_options(kind)
    if kind == "heatmap" and capture is not None and not capture.attention_layout.whole_grid:
        st.warning(f"This capture kept part of the attention ({capture.attention_layout.describe()}); the heatmap "
                   "draws every layer, head and row.")
        return
    if kind == "heatmap" and capture is not None and capture.attentions is None:
        st.warning("This capture kept no attention weights.")
        return
    described = ", ".join(f"{k}={_shown(v)}" for k, v in opts.items())
    st.caption(f"With the settings of its view: {described or 'defaults'}.")
    try:
        if kind == "corpus":
            source = state.open_run(str(run_path)).summary
            stem = f"corpus_{opts['by']}"
        elif kind in analysis:
            source, extra = analysis[kind]
            opts = {**opts, **extra}
            stem = kind
        else:
            source = capture
            stem = kind
        with st.spinner("Drawing…"):
            data = figure_bytes(kind, source, fmt, **opts)
    except Exception as exc:  # noqa: BLE001 - show the exporter's message (e.g. bad option, no attention)
        st.error(f"Could not export this figure: {exc}")
    else:
        st.download_button(f"Download {stem}.{fmt}", data, file_name=f"{stem}.{fmt}", mime=_MIME[fmt],
                           key="dl_figure", icon=":material/download:", on_click="ignore", type="primary")
        if fmt == "png":
            with st.expander("Preview", expanded=True):
                st.image(data)
    if capture is not None:
        st.subheader("Download the capture")
        st.caption("A .safetensors file with every token, score and attention weight, and its settings; open "
                   "it with `inspector.load_capture(path)` or `inspector plot`.")
        st.download_button("Download capture.safetensors", capture_bytes(capture),
                           file_name="capture.safetensors", mime="application/octet-stream", key="dl_capture",
                           icon=":material/download:", on_click="ignore")
        meta = {"model": capture.meta.model, "random_weights": capture.meta.random_weights,
                "generation": capture.meta.generation, "source": capture.meta.source}
        with st.expander("Capture metadata"):
            st.code(json.dumps(meta, indent=2, ensure_ascii=False, default=str), language="json")


def _shown(value: Any) -> str:
    if value is None:
        return "all"
    if isinstance(value, list) and len(value) > 8:
        return f"{value[0]}..{value[-1]}"
    return str(value)
