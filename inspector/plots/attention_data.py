"""The numbers of the attention figures: one ``[query, key]`` map, every head's map, one token's row.

Each ``*_data`` function validates its arguments, pulls the matrices out of a
:class:`~inspector._records.capture.Capture` as float32 NumPy arrays and writes the words around
them, so that the matplotlib and the plotly version of a figure show the same data
under the same names.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inspector._aggregate import AGGREGATE_MODES, NOT_A_DISTRIBUTION, aggregate_by_mode, attention_from
from inspector.plots.arrays import causal_mask, pool_factor, pool_mean, to_numpy
from inspector.plots.labels import capture_title, check_index, display_token, html_label, quoted_token
from inspector.plots.options import default_position

if TYPE_CHECKING:  # pragma: no cover
    from inspector._records.capture import Capture


# --------------------------------------------------------------------------- one map
@dataclass(frozen=True)
class HeatmapData:
    """``matrix``: ``[query, key]`` float32 attention; ``masked``: cells above the diagonal."""

    matrix: np.ndarray
    masked: np.ndarray
    tokens: list[str]
    prompt_len: int
    description: str
    title: str


def describe_selection(layer: int | None, head: int | None, agg: str) -> str:
    """The title's words for a selection; a reduction whose rows are not distributions says so."""
    what = _selection(layer, head, agg)
    if agg in NOT_A_DISTRIBUTION and (layer is None or head is None):
        what += f" (not a distribution: each key's {agg} weight, rows can sum above 1)"
    return what


def _selection(layer: int | None, head: int | None, agg: str) -> str:
    if agg == "stacked-mean":
        if head is None:
            return "stacked mean (mean over layers, then over heads)"
        return f"stacked mean over layers, head {head}"
    if layer is not None and head is not None:
        return f"layer {layer}, head {head}"
    if layer is not None:
        return f"layer {layer}, {agg} over heads"
    if head is not None:
        return f"head {head}, {agg} over layers"
    return f"{agg} over layers and heads"


def heatmap_data(capture: Capture, layer: int | None = None, head: int | None = None, agg: str = "mean") -> HeatmapData:
    """The ``[query, key]`` matrix of one layer/head, or of an aggregate (see :data:`AGGREGATE_MODES`)."""
    att = capture.require_attentions()
    if agg not in AGGREGATE_MODES:
        raise ValueError(f"unknown aggregate mode {agg!r}; choose one of {list(AGGREGATE_MODES)}")
    layer = check_index(layer, int(att.shape[0]), "layer")
    head = check_index(head, int(att.shape[1]), "head")
    mat = to_numpy(aggregate_by_mode(att, agg, layer, head, value_norms=capture.value_norms))
    n = mat.shape[0]
    what = describe_selection(layer, head, agg)
    return HeatmapData(
        matrix=mat,
        masked=causal_mask(n),
        tokens=list(capture.tokens),
        prompt_len=capture.prompt_len,
        description=what,
        title=capture_title(capture, f"Attention, {what}"),
    )


# --------------------------------------------------------------------------- head grid
@dataclass(frozen=True)
class HeadGridData:
    """``matrices``: ``[layer, head, query_cell, key_cell]``; ``factor`` positions per cell."""

    matrices: np.ndarray
    masked: np.ndarray
    factor: int
    vmax: float
    tokens: list[str]
    prompt_len: int
    title: str

    @property
    def num_layers(self) -> int:
        return int(self.matrices.shape[0])

    @property
    def num_heads(self) -> int:
        return int(self.matrices.shape[1])


def head_grid_data(capture: Capture, max_cells: int | None = 96) -> HeadGridData:
    """Every layer's and head's attention, mean-pooled to at most ``max_cells`` per side."""
    att = capture.require_attentions()
    n = int(att.shape[-1])
    factor = pool_factor(n, max_cells)
    # One layer at a time: a float32 copy of all of GPT-2's attention at 1024 tokens is 600 MB.
    mats = np.stack([pool_mean(to_numpy(att[i]), factor) for i in range(int(att.shape[0]))]) if att.shape[0] else (
        np.zeros((0, int(att.shape[1]), n, n), dtype=np.float32)
    )
    what = "Attention of every layer and head"
    if factor > 1:
        what += f" (mean over {factor}x{factor}-token blocks)"
    return HeadGridData(
        matrices=mats,
        masked=causal_mask(n, factor),
        factor=factor,
        vmax=float(mats.max()) if mats.size else 1.0,
        tokens=list(capture.tokens),
        prompt_len=capture.prompt_len,
        title=capture_title(capture, what),
    )


@dataclass(frozen=True)
class Mosaic:
    """All panels of a head grid tiled into one image, ``gap`` empty cells between panels.

    ``image`` is ``[layer * (cells + gap) - gap, head * (cells + gap) - gap]`` float32
    with NaN above each panel's diagonal and in the gaps (``gaps`` marks the latter).
    Panel ``(layer, head)`` starts at row ``layer * (cells + gap)``, column ``head * (cells + gap)``.
    """

    image: np.ndarray
    gaps: np.ndarray
    cells: int
    gap: int
    boundary: float
    row_labels: list[str]
    col_labels: list[str]

    def origin(self, layer: int, head: int) -> tuple[int, int]:
        stride = self.cells + self.gap
        return layer * stride, head * stride

    def centres(self, count: int) -> list[int]:
        stride = self.cells + self.gap
        return [i * stride + self.cells // 2 for i in range(count)]


def head_mosaic(d: HeadGridData, gap: int | None = None) -> Mosaic:
    """Tile a :class:`HeadGridData` into one image (one heatmap draws much faster than 144)."""
    n_layer, n_head, cells = d.num_layers, d.num_heads, int(d.matrices.shape[-1])
    gap = max(1, round(cells * 0.08)) if gap is None else gap
    stride = cells + gap
    rows, cols = n_layer * stride - gap, n_head * stride - gap
    image = np.full((rows, cols), np.nan, dtype=np.float32)
    gaps = np.ones((rows, cols), dtype=bool)
    panel = np.where(d.masked, np.nan, 0.0).astype(np.float32)
    for li in range(n_layer):
        for hi in range(n_head):
            r, c = li * stride, hi * stride
            image[r : r + cells, c : c + cells] = d.matrices[li, hi] + panel
            gaps[r : r + cells, c : c + cells] = False
    n = len(d.tokens)
    cell_names = [f"{s}" if d.factor == 1 else f"{s}–{min(s + d.factor, n) - 1}" for s in range(0, n, d.factor)]
    if d.factor == 1:
        cell_names = [f"{i} {html_label(display_token(t))}" for i, t in enumerate(d.tokens)]

    def labels(count: int, what: str, side: str) -> list[str]:
        out: list[str] = []
        for i in range(count):
            out += [f"{what} {i} · {side} {name}" for name in cell_names]
            if i < count - 1:
                out += [f"{what} {i} · gap {j}" for j in range(gap)]
        return out

    return Mosaic(
        image=image,
        gaps=gaps,
        cells=cells,
        gap=gap,
        boundary=d.prompt_len / d.factor - 0.5,
        row_labels=labels(n_layer, "layer", "query"),
        col_labels=labels(n_head, "head", "key"),
    )


# --------------------------------------------------------------------------- token strip
@dataclass(frozen=True)
class TokenAttentionData:
    """``matrix``: ``[layer, key]`` attention from ``position`` to keys ``0..position``."""

    matrix: np.ndarray
    position: int
    tokens: list[str]
    prompt_len: int
    description: str
    title: str


def token_attention_data(capture: Capture, position: int | None = None, head: int | None = None) -> TokenAttentionData:
    """Where the token at ``position`` looks, per layer: mean over heads, or one ``head``.

    ``position`` counts from 0 over prompt and generated tokens (negative: from the end);
    ``None`` is :func:`default_position`.
    """
    att = capture.require_attentions()
    if position is None:
        position = default_position(capture)
    pos = check_index(position, int(att.shape[2]), "token position")
    assert pos is not None
    if head is None:
        strip = attention_from(att, pos)
        how = "mean over heads"
    else:
        head = check_index(head, int(att.shape[1]), "head")
        strip = att[:, head, pos, :].float()
        how = f"head {head}"
    tok = quoted_token(capture.tokens[pos])
    where = "prompt" if pos < capture.prompt_len else f"generated step {pos - capture.prompt_len}"
    what = f"Attention from {tok} (position {pos}, {where}), {how}"
    return TokenAttentionData(
        matrix=to_numpy(strip)[:, : pos + 1],
        position=pos,
        tokens=list(capture.tokens[: pos + 1]),
        prompt_len=capture.prompt_len,
        description=how,
        title=capture_title(capture, what),
    )

