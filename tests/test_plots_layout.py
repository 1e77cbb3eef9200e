"""The figures package's shape: light to import, its public names where users find them, one list of choices."""

from __future__ import annotations

import argparse
import ast
import inspect
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from plot_helpers import summary_frame, synthetic_capture

import inspector.plots as plots
from inspector._aggregate import AGGREGATE_MODES
from inspector.data.dailydialog import ACT_NAMES, EMOTION_NAMES, LABEL_COLUMNS

ROOT = Path(__file__).resolve().parents[1]

# Every name code outside the package imported from a plot module before the package was split.
PUBLIC = {
    "inspector.plots": ["GROUP_COLUMNS", "KINDS", "METRIC_LABELS", "SUMMARY_FILE", "ExportError", "builder",
                        "export_bytes", "export_figure", "load_source", "make_figure"],
    "inspector.plots.static": ["attention_heatmap", "head_grid", "topk_steps", "text_html", "text_figure",
                               "token_attention", "corpus_distributions", "PROMPT_INK", "GENERATED_INK", "BOUNDARY",
                               "HEATMAP_CMAP", "MASKED"],
    "inspector.plots.interactive": ["attention_heatmap", "head_grid", "topk_steps", "text_html", "token_attention",
                                    "corpus_distributions", "colorscale_gamma", "TOPK_MARGIN", "TOPK_COLORBAR_PX",
                                    "BOUNDARY", "HEATMAP_SCALE"],
    "inspector.plots.export": ["FORMATS", "HTML_CONFIG", "ExportError", "format_of", "export_bytes", "export_figure"],
}


def _loaded_after(statement: str) -> set[str]:
    """Top-level modules a fresh interpreter has loaded after running ``statement``."""
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted({{m.split('.')[0] for m in sys.modules}})))"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120,
                         check=True)
    return set(json.loads(out.stdout.strip().splitlines()[-1]))


@pytest.mark.slow
def test_importing_the_package_loads_no_plotting_library_and_no_torch():
    loaded = _loaded_after("import inspector.plots\nfrom inspector.plots import GROUP_COLUMNS, default_position")
    assert "inspector" in loaded
    assert not {"matplotlib", "plotly", "torch"} & loaded


@pytest.mark.slow
def test_importing_the_builders_loads_no_plotting_library():
    loaded = _loaded_after("import inspector.plots.static, inspector.plots.interactive")
    assert "torch" in loaded  # the data builders are there
    assert not {"matplotlib", "plotly"} & loaded


@pytest.mark.parametrize("module", sorted(PUBLIC))
def test_public_names_stay_importable(module):
    mod = __import__(module, fromlist=["_"])
    missing = [n for n in PUBLIC[module] if not hasattr(mod, n)]
    assert not missing, f"{module} lost {missing}"
    assert not [n for n in getattr(mod, "__all__", []) if not hasattr(mod, n)]


def test_every_kind_has_a_builder_in_both_renderers():
    for kind in plots.KINDS:
        for interactive in (False, True):
            fn = plots.builder(kind, interactive)
            first = next(iter(inspect.signature(fn).parameters))
            assert first == ("summary" if kind == "corpus" else "capture"), (kind, interactive)


def test_group_columns_are_dailydialogs_label_columns_in_its_label_order():
    from inspector.plots.corpus_data import corpus_data

    assert plots.GROUP_COLUMNS is LABEL_COLUMNS
    df = summary_frame(60)
    for by in LABEL_COLUMNS:
        names = list((ACT_NAMES if by.endswith("act") else EMOTION_NAMES).values())
        groups = corpus_data(df, by=by).groups
        known = [g for g in groups if g in names]
        assert known == [n for n in names if n in known], by  # DailyDialog's order, not alphabetical


def test_cli_choices_are_the_options():
    from inspector.cli.plot import register

    sub = argparse.ArgumentParser().add_subparsers()
    register(sub)
    plot = sub.choices["plot"]
    choices = {a.dest: tuple(a.choices) for a in plot._actions if a.choices is not None}
    from inspector.analysis import ALIGN_CHOICES, KL_CHOICES, ROW_CHOICES
    from inspector.analysis.choices import ATTRIBUTION_TARGETS, DISTRIBUTION_CHOICES

    assert choices == {"kind": plots.KINDS, "agg": tuple(AGGREGATE_MODES), "scores": plots.SCORES,
                       "color_by": plots.COLOR_BY, "by": plots.GROUP_COLUMNS, "rows": ROW_CHOICES,
                       "align": ALIGN_CHOICES, "kl": KL_CHOICES, "target": ATTRIBUTION_TARGETS,
                       "distributions": DISTRIBUTION_CHOICES}


def test_default_position_is_the_first_generated_token_else_the_last():
    from inspector.plots.attention_data import token_attention_data

    cap = synthetic_capture(seq=12, prompt_len=9, n_layer=1, n_head=1, k=3)
    assert plots.default_position(cap) == 9 == cap.seq_len - cap.num_steps
    assert token_attention_data(cap).position == 9
    empty = synthetic_capture(seq=7, prompt_len=7, n_layer=1, n_head=1, k=3)
    assert empty.attentions is not None
    assert empty.num_steps == 0 and plots.default_position(empty) == 6
    assert torch.equal(torch.as_tensor(token_attention_data(empty).matrix), empty.attentions[:, 0, 6, :].float())


def _private_plot_imports(tree: ast.AST) -> list[str]:
    """Imports of ``inspector.plots`` modules whose dotted name has a ``_``-prefixed part."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and not node.level:
            names = [f"{node.module}.{a.name}" for a in node.names]
        else:
            continue
        for name in names:
            parts = name.split(".")
            if parts[:2] == ["inspector", "plots"] and any(p.startswith("_") for p in parts[2:]):
                found.append(name)
    return found


def test_the_private_import_finder_finds_one():
    tree = ast.parse("def f():\n    from inspector.plots import _common as C\nimport inspector.plots.static._draw")
    assert sorted(_private_plot_imports(tree)) == ["inspector.plots._common", "inspector.plots.static._draw"]
    assert _private_plot_imports(ast.parse("from inspector.plots.options import GROUP_COLUMNS")) == []


def test_no_code_outside_the_package_imports_private_plot_modules():
    """The CLI, the dashboard, benchmarks and examples use public names (tests may look inside)."""
    offenders = {}
    for folder in ("inspector", "dashboard", "benchmarks", "examples"):
        for src in sorted((ROOT / folder).rglob("*.py")):
            rel = src.relative_to(ROOT)
            if rel.parts[:2] == ("inspector", "plots"):
                continue
            found = _private_plot_imports(ast.parse(src.read_text(encoding="utf-8")))
            if found:
                offenders[str(rel)] = found
    assert not offenders


@pytest.mark.parametrize("statistics", [None, ["entropy", "sink", "previous"], ["entropy"]])
def test_head_stats_colour_bars_stay_inside_their_own_panels_band(statistics):
    """Each colour bar lies under its own panel, no wider than it, below the panel's x axis and above the next
    row's title; only the first column labels the layer axis. The page stretches the figure's width and keeps
    its height, so horizontal extents are checked as fractions of the panels and vertical gaps in pixels."""
    from inspector.plots import interactive

    cap = synthetic_capture(seq=12, prompt_len=9, n_layer=12, n_head=12, k=3)
    fig = interactive.head_stats_heatmap(cap, statistics=statistics)
    lay = fig.layout
    plot_px = lay.height - lay.margin.t - lay.margin.b
    axis_px, title_px = 40, 24  # room for the head axis's ticks and title; for a one-line panel title
    xdomains = [lay[t.xaxis.replace("x", "xaxis")].domain for t in fig.data]
    ydomains = [lay[t.yaxis.replace("y", "yaxis")].domain for t in fig.data]
    row_tops = sorted({y1 for _, y1 in ydomains}, reverse=True)
    for trace, (x0, x1), (y0, _) in zip(fig.data, xdomains, ydomains, strict=True):
        bar = trace.colorbar
        assert bar.orientation == "h" and bar.lenmode == "fraction" and bar.xanchor == "center"
        left, right = bar.x - bar.len / 2, bar.x + bar.len / 2
        assert x0 - 1e-9 <= left and right <= x1 + 1e-9, (trace.name, (left, right), (x0, x1))
        assert bar.ticklabeloverflow == "hide past domain"  # the end labels do not spill sideways
        assert bar.yanchor == "top" and (y0 - bar.y) * plot_px >= axis_px, trace.name
        bottom_px = (bar.y * plot_px) - bar.thickness - 16  # the bar, then one line of tick labels
        below = [t for t in row_tops if t < y0]
        floor_px = (below[0] * plot_px + title_px) if below else -lay.margin.b
        assert bottom_px >= floor_px, (trace.name, bottom_px, floor_px)
    # no tick labels between panels: the layer axis is labelled in the first column only
    for trace, (x0, _) in zip(fig.data, xdomains, strict=True):
        yaxis = lay[trace.yaxis.replace("y", "yaxis")]
        if x0 > 0:
            assert yaxis.showticklabels is False and not (yaxis.title and yaxis.title.text), trace.name
