"""Figures of captures and corpus runs: static (matplotlib) and interactive (plotly), one API.

``inspector.plots.static`` and ``inspector.plots.interactive`` define the same
builders, each returning a figure object; :func:`make_figure` dispatches on a kind
name (shared by the CLI and the dashboard), and :func:`inspector.plots.export.export_figure`
saves any of them, picking the format from the suffix. Importing this package loads
neither matplotlib nor plotly.

=========  ========================  ==========================================
kind       builder                   source
=========  ========================  ==========================================
heatmap    attention_heatmap         Capture: one layer/head or an aggregate
heads      head_grid                 Capture: all layers x heads
topk       topk_steps                Capture: top-k candidates per step, entropy
text       text_html / text_figure   Capture: text coloured by prob or entropy
token      token_attention           Capture: attention from one token, per layer
corpus     corpus_distributions      run summary DataFrame
lens       lens_grid                 Capture + model (or a LensResult): logit lens
rollout    rollout_heatmap           Capture: attention rollout [query, key]
head-stats head_stats_heatmap         Capture, HeadStats or one group of
                                     ``Run.head_stats()``: layer x head panels
compare    compare_view              two Captures (``other=``): KL, agreement,
                                     attention difference
compare    beams_view                the list of Captures one search returned
                                     (``pair=(i, j)``): two beams, the same way
logit-     logit_attribution_view    Capture + model (or a LogitAttribution): direct
attribution                          logit attribution, parts x steps or one step
attri-     context_attribution_view  Capture + model (or a ContextAttribution): the
bution                               text coloured by context attribution, one step
=========  ========================  ==========================================

The choices a figure takes by name (:data:`KINDS`, :data:`SCORES`, :data:`COLOR_BY`,
:data:`GROUP_COLUMNS`, :data:`METRIC_LABELS`) and :func:`default_position` come from
:mod:`inspector.plots.options`, for the CLI's flags and the dashboard's pickers.

How the package is laid out, in the order data flows through it:

* ``options``: the choices above; ``labels``: token labels, escapes, thinned axes,
  percentages, titles; ``arrays``: tensors to NumPy, block pooling, causal masks;
* ``attention_data``, ``scores_data``, ``text_data``, ``corpus_data``: the numbers and
  words of each figure, shared by the renderers;
* the renderers: ``static/`` (matplotlib), ``interactive/`` (plotly), ``html_text`` (the
  coloured text as an HTML page), each with one module per subject;
* ``export``: saving any figure, the format picked from the suffix.

A new figure kind gets a ``*_data`` function, a builder in ``static/`` and in
``interactive/``, and an entry in :data:`KINDS` and ``_BUILDERS``.
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

# Light modules only (no torch, no plotting library): the builders load theirs when called.
from inspector.plots.export import ExportError, export_bytes, export_figure
from inspector.plots.options import COLOR_BY, GROUP_COLUMNS, KINDS, METRIC_LABELS, SCORES, default_position

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector._records.capture import Capture

_BUILDERS: dict[str, str] = {
    "heatmap": "attention_heatmap",
    "heads": "head_grid",
    "topk": "topk_steps",
    "token": "token_attention",
    "corpus": "corpus_distributions",
    "lens": "lens_grid",
    "rollout": "rollout_heatmap",
    "head-stats": "head_stats_heatmap",
    "compare": "compare_view",
    "logit-attribution": "logit_attribution_view",
    "attribution": "context_attribution_view",
}

SUMMARY_FILE = "summary.parquet"

__all__ = ["COLOR_BY", "GROUP_COLUMNS", "KINDS", "METRIC_LABELS", "SCORES", "SUMMARY_FILE", "ExportError", "builder",
           "default_position", "export_bytes", "export_figure", "load_source", "make_figure"]


def builder(kind: str, interactive: bool, beams: bool = False) -> Callable[..., Any]:
    """The function that draws ``kind``: from :mod:`.interactive` or :mod:`.static`.

    ``text`` is :func:`.interactive.text_html` (an HTML string with hover tooltips) when
    interactive, else :func:`.static.text_figure` (a matplotlib figure). ``compare`` of
    the sequences of one search (``beams=True``) is ``beams_view``.
    """
    if kind not in KINDS:
        raise ValueError(f"unknown figure kind {kind!r}; choose one of {', '.join(KINDS)}")
    name = "text_html" if kind == "text" and interactive else "text_figure" if kind == "text" else _BUILDERS[kind]
    if beams and kind == "compare":
        name = "beams_view"
    if interactive:
        from inspector.plots import interactive as plotly_figures

        draw: Callable[..., Any] = getattr(plotly_figures, name)
        return draw
    from inspector.plots import static as matplotlib_figures

    draw = getattr(matplotlib_figures, name)
    return draw


def make_figure(kind: str, source: Capture | pd.DataFrame | list[Capture], interactive: bool = False,
                **opts: Any) -> Any:
    """Draw ``kind`` from ``source``: a plotly figure (or HTML text) when ``interactive``, else matplotlib.

    ``source`` is a :class:`~inspector._records.capture.Capture` for every kind but ``corpus``,
    which takes a run summary DataFrame, and ``head-stats``, which also takes a
    :class:`~inspector.analysis.head_stats.HeadStats` or one group of a run's
    ``Run.head_stats()`` table, and ``compare``, which also takes the list of captures
    one search returned (its beams, compared two at a time: ``pair=(i, j)``). ``opts`` go
    to the builder; options set to ``None`` are dropped so the builder's defaults apply.
    An option the kind does not take raises ``ValueError`` naming the ones it does.
    """
    beams = kind == "compare" and isinstance(source, (list, tuple))
    fn = builder(kind, interactive, beams=beams)
    if not beams:
        _check_source(kind, source)
    params = inspect.signature(fn).parameters
    names = [p for p in params if p not in ("capture", "summary", "beams")]
    opts = {k: v for k, v in opts.items() if v is not None}
    unknown = sorted(set(opts) - set(names))
    if unknown:
        raise ValueError(f"option(s) {unknown} do not apply to the {kind!r} figure; it takes {names}")
    return fn(source, **opts)


def _check_source(kind: str, source: Any) -> None:
    from inspector._records.capture import Capture

    if kind == "head-stats":
        import pandas as pd

        from inspector.analysis.head_stats import HeadStats

        if not isinstance(source, (Capture, HeadStats, pd.DataFrame)):
            raise ValueError("the head-stats figure needs a capture, a HeadStats or a run's head_stats() table, "
                             f"got {type(source).__name__}")
    elif kind == "corpus":
        import pandas as pd

        if not isinstance(source, pd.DataFrame):
            raise ValueError(
                f"the corpus figure needs a run summary (a DataFrame, or a run folder holding {SUMMARY_FILE}), "
                f"got {type(source).__name__}"
            )
    elif not isinstance(source, Capture):
        raise ValueError(f"the {kind!r} figure needs a capture (a .safetensors file), got {type(source).__name__}")


def load_source(path: str | os.PathLike[str]) -> Capture | pd.DataFrame:
    """A capture from a ``.safetensors`` file, or a run's summary table from its folder.

    A run folder with ``run.json`` is read through :func:`inspector.runs.load_run` (an
    unfinished run gives the rows done so far); the table's ``attrs`` then carry
    ``model`` and ``random_weights``, which the corpus figure's title shows. A folder with
    only ``summary.parquet`` is read as it is.
    """
    p = Path(path)
    if p.is_dir():
        import pandas as pd

        if (p / "run.json").is_file():
            from inspector.runs import load_run

            run = load_run(p)
            summary = run.summary
            model = run.settings.get("model") or {}
            summary.attrs["model"] = model.get("name", "")
            summary.attrs["random_weights"] = bool(model.get("random_weights", False))
            return summary
        table = p / SUMMARY_FILE
        if not table.is_file():
            raise FileNotFoundError(f"{p} is not a run folder: it has neither run.json nor {SUMMARY_FILE}")
        try:
            return pd.read_parquet(table)
        except Exception as exc:  # pyarrow raises its own error types
            raise ValueError(f"{table}: not a readable parquet table ({type(exc).__name__}: {exc})") from exc
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such capture file or run folder")
    if p.suffix.lower() != ".safetensors":
        raise ValueError(f"{p}: expected a capture (.safetensors) or a run folder")
    from inspector._store import load_capture

    return load_capture(p)
