"""Data preparation shared by the static and interactive figures: no drawing happens here.

Each ``*_data`` function validates its inputs, pulls the numbers a figure shows out
of a :class:`~inspector.records.Capture` (or a run summary) as NumPy arrays, and
writes the words around them (titles, axis labels), so that the matplotlib and the
plotly version of a figure show the same data under the same names.
"""

from __future__ import annotations

import html
import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from inspector.aggregate import AGGREGATE_MODES, aggregate_by_mode, attention_from

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from inspector.records import Capture

#: Summary columns a corpus figure can group by (the first is the default).
GROUP_COLUMNS: tuple[str, ...] = ("emotion", "act", "response_emotion", "response_act")

#: Metrics shown by :func:`corpus_data` when none are named. The first two are required;
#: the attention shares are shown when the run kept attention (columns present, not all empty).
DEFAULT_METRICS: tuple[str, ...] = (
    "entropy_mean",
    "chosen_prob_mean",
    "attn_prompt_share",
    "attn_first_share",
    "attn_last_user_turn",
    "attn_earlier_turns",
)
_REQUIRED_DEFAULT_METRICS = ("entropy_mean", "chosen_prob_mean")

METRIC_LABELS: dict[str, str] = {
    "entropy_mean": "mean entropy (nats)",
    "entropy_max": "max entropy (nats)",
    "chosen_prob_mean": "mean chosen-token probability",
    "attn_prompt_share": "attention share: prompt",
    "attn_generated_share": "attention share: generated",
    "attn_first_share": "attention share: first token",
    "attn_entropy_mean": "mean attention entropy (nats)",
    "attn_last_user_turn": "attention share: last user turn",
    "attn_earlier_turns": "attention share: earlier turns",
    "attn_speaker_user": "attention share: user turns",
    "attn_speaker_agent": "attention share: agent turns",
    "prompt_tokens": "prompt tokens",
    "generated_tokens": "generated tokens",
}

COLOR_BY: tuple[str, ...] = ("prob", "entropy")
SCORES: tuple[str, ...] = ("raw", "processed")

#: Above this many generated steps the top-k table drops the words in its cells.
TOPK_TEXT_LIMIT = 60


# --------------------------------------------------------------------------- labels
#: Unicode categories written as escapes: controls, format characters (zero-width, bidi marks),
#: surrogates, private use, unassigned, line and paragraph separators. Fonts have no glyph for
#: them (matplotlib warns "Glyph 19 missing from font") and most are invisible anyway.
_ESCAPED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"})


def _escape_char(c: str) -> str:
    return repr(c)[1:-1] if unicodedata.category(c) in _ESCAPED_CATEGORIES else c


def escape_controls(text: str, keep: str = "") -> str:
    r"""``text`` with control and other invisible characters written as Python escapes.

    A byte-level tokenizer makes tokens such as ``"\x13"``; they show as ``\x13``
    (as :func:`repr` writes them, without the quotes), ``"\u200b"`` as ``\u200b``.
    Characters in ``keep`` (e.g. ``"\n"`` where line breaks are laid out) stay as they are.
    Every token label of every figure passes through here (via :func:`display_token`).
    """
    if text.isprintable() and not keep:
        return text  # fast path: nothing to escape (also true for "")
    return "".join(c if c in keep else _escape_char(c) for c in text)


def display_token(token: str) -> str:
    r"""A token as a visible label: line breaks and tabs become symbols (``↵``, ``⇥``),
    other control characters escapes (``\x13``, see :func:`escape_controls`), blank tokens ``␣``."""
    out = token.replace("\r\n", "↵").replace("\n", "↵").replace("\r", "↵").replace("\t", "⇥")
    out = escape_controls(out)
    if out.strip() == "":
        return "␣" * max(len(out), 1)
    return out


def quoted_token(token: str) -> str:
    r""":func:`display_token` in quotes, for titles and tooltips: ``'\x13'``, ``"'s"``.

    Unlike ``repr(display_token(t))`` it does not double the backslash of an escape.
    """
    shown = display_token(token)
    quote = '"' if "'" in shown and '"' not in shown else "'"
    return f"{quote}{shown}{quote}"


def html_label(text: str) -> str:
    """Escape ``&``, ``<`` and ``>`` for plotly, which reads labels as a little HTML."""
    return html.escape(text, quote=False)


def thin_indices(n: int, max_labels: int, keep: Sequence[int] = ()) -> list[int]:
    """Positions to label on an axis of ``n`` items: all of them, or every k-th plus ``keep``.

    ``max_labels`` bounds the count (``keep`` aside); ``max_labels <= 0`` labels nothing.
    """
    if n <= 0 or max_labels <= 0:
        return []
    if n <= max_labels:
        return list(range(n))
    step = math.ceil(n / max_labels)
    kept = {i for i in keep if 0 <= i < n}
    regular = set(range(0, n, step))
    # A regular label closer than a step to a kept one would crowd it: drop it.
    crowded = {j for j in regular for i in kept if j != i and abs(j - i) < max(step, 2)}
    return sorted((regular - crowded) | kept)


def axis_labels(
    tokens: Sequence[str], max_labels: int, prompt_len: int | None = None, keep: Sequence[int] = ()
) -> tuple[list[int], list[str]]:
    """Tick positions and labels for a token axis, thinned to about ``max_labels``.

    The first generated token (``prompt_len``) and ``keep`` are always labelled. When
    every token fits, labels are the tokens; when thinned, each carries its position
    (``"37 the"``) so the reader knows where it is.
    """
    keep = (*keep, *(() if prompt_len is None else (prompt_len,)))
    idx = thin_indices(len(tokens), max_labels, keep=keep)
    thinned = len(idx) < len(tokens)
    labels = [f"{i} {display_token(tokens[i])}" if thinned else display_token(tokens[i]) for i in idx]
    return idx, labels


def position_labels(tokens: Sequence[str]) -> list[str]:
    """Unique ``"position token"`` labels, one per token (plotly category axes need unique names)."""
    return [f"{i} {html_label(display_token(t))}" for i, t in enumerate(tokens)]


def capture_title(capture: Capture, what: str) -> str:
    """``what`` followed by the model name, flagged loudly when the weights are random."""
    model = capture.meta.model or "model"
    if capture.meta.random_weights:
        return f"{what}\n{model}: RANDOM WEIGHTS (not real GPT-2)"
    return f"{what}\n{model}"


def format_prob(p: float) -> str:
    """A probability as a short percentage that stays informative when tiny (``0.0021%``)."""
    if p >= 0.995:
        return "100%"
    if p >= 0.1:
        return f"{p:.0%}"
    if p >= 1e-6:
        return f"{100 * p:.2g}%"
    return "<0.0001%" if p > 0 else "0%"


def check_index(value: int | None, size: int, what: str) -> int | None:
    """``value`` made non-negative, or a ``ValueError`` naming the valid range."""
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{what} must be an integer, got {value!r}")
    if not -size <= value < size:
        raise ValueError(f"{what} {value} out of range: valid {what}s are 0..{size - 1}")
    return int(value) % size


def _attention(capture: Capture):
    return capture.require_attentions()


def _to_numpy(t) -> np.ndarray:
    return t.detach().to("cpu").float().numpy()


# --------------------------------------------------------------------------- pooling
def pool_factor(n: int, max_cells: int | None) -> int:
    """How many positions share one cell so that ``n`` fits into ``max_cells``."""
    if not max_cells or n <= max_cells:
        return 1
    return math.ceil(n / max_cells)


def pool_mean(mat: np.ndarray, factor: int) -> np.ndarray:
    """Mean over ``factor x factor`` blocks of the last two dimensions (edge blocks may be smaller)."""
    if factor <= 1:
        return mat
    *lead, rows, cols = mat.shape
    r_out, c_out = math.ceil(rows / factor), math.ceil(cols / factor)
    padded = np.zeros((*lead, r_out * factor, c_out * factor), dtype=np.float32)
    padded[..., :rows, :cols] = mat
    sums = padded.reshape(*lead, r_out, factor, c_out, factor).sum(axis=(-3, -1))
    r_count = np.minimum(factor, rows - np.arange(r_out) * factor)
    c_count = np.minimum(factor, cols - np.arange(c_out) * factor)
    return (sums / np.outer(r_count, c_count)).astype(np.float32)


def causal_mask(n: int, factor: int = 1) -> np.ndarray:
    """``True`` where a (pooled) cell lies wholly above the diagonal: keys after the query."""
    n_cells = math.ceil(n / factor)
    first_key = np.arange(n_cells) * factor
    last_query = np.minimum(np.arange(n_cells) * factor + factor - 1, n - 1)
    return first_key[None, :] > last_query[:, None]


# --------------------------------------------------------------------------- heatmap
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
    att = _attention(capture)
    if agg not in AGGREGATE_MODES:
        raise ValueError(f"unknown aggregate mode {agg!r}; choose one of {list(AGGREGATE_MODES)}")
    layer = check_index(layer, int(att.shape[0]), "layer")
    head = check_index(head, int(att.shape[1]), "head")
    mat = _to_numpy(aggregate_by_mode(att, agg, layer, head))
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
    att = _attention(capture)
    n = int(att.shape[-1])
    factor = pool_factor(n, max_cells)
    # One layer at a time: a float32 copy of all of GPT-2's attention at 1024 tokens is 600 MB.
    mats = np.stack([pool_mean(_to_numpy(att[i]), factor) for i in range(int(att.shape[0]))]) if att.shape[0] else (
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

    def panel(self, layer: int, head: int) -> np.ndarray:
        r, c = self.origin(layer, head)
        return self.image[r : r + self.cells, c : c + self.cells]

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


# --------------------------------------------------------------------------- top-k
@dataclass(frozen=True)
class TopkData:
    """Per generated step: ``probs`` ``[step, k]``, candidate ``labels``, chosen ``chosen_col``
    (-1 when the chosen token is outside the top k), ``entropy`` ``[step]``."""

    probs: np.ndarray
    logprobs: np.ndarray
    ids: np.ndarray
    labels: list[list[str]]
    chosen_col: np.ndarray
    chosen_rank: np.ndarray
    chosen_prob: np.ndarray
    chosen_tokens: list[str]
    entropy: np.ndarray
    row_labels: list[str]
    scores: str
    title: str

    @property
    def num_steps(self) -> int:
        return int(self.probs.shape[0])

    @property
    def k(self) -> int:
        return int(self.probs.shape[1])


def topk_data(capture: Capture, k: int | None = None, scores: str = "raw") -> TopkData:
    """The ``k`` most likely candidates of every generated step under ``scores`` (raw or processed)."""
    if scores not in SCORES:
        raise ValueError(f"unknown scores {scores!r}; choose one of {list(SCORES)}")
    sc = capture.raw if scores == "raw" else capture.processed
    if capture.num_steps == 0:
        raise ValueError("this capture has no generated steps to show")
    if k is None:
        k = sc.k
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k <= sc.k:
        raise ValueError(f"k={k!r} out of range: this capture kept the top {sc.k} candidates, use 1..{sc.k}")
    ids = sc.topk_ids[:, :k].numpy().astype(np.int64)
    logprobs = _to_numpy(sc.topk_logprobs[:, :k])
    chosen = capture.generated_ids.numpy().astype(np.int64)
    hit = ids == chosen[:, None]
    chosen_col = np.where(hit.any(axis=1), hit.argmax(axis=1), -1)
    rank = sc.chosen_rank.numpy().astype(np.int64)
    chosen_tokens = [display_token(t) for t in capture.generated_tokens]
    row_labels = []
    for i, tok in enumerate(chosen_tokens):
        extra = "" if chosen_col[i] >= 0 else f" (rank {rank[i]})"
        row_labels.append(f"{i}: {tok}{extra}")
    label = "processed scores" if scores == "processed" else "raw logits"
    return TopkData(
        probs=np.exp(logprobs),
        logprobs=logprobs,
        ids=ids,
        labels=[[display_token(capture.label(t)) for t in row] for row in ids.tolist()],
        chosen_col=chosen_col,
        chosen_rank=rank,
        chosen_prob=np.exp(_to_numpy(sc.chosen_logprob)),
        chosen_tokens=chosen_tokens,
        entropy=_to_numpy(sc.entropy),
        row_labels=row_labels,
        scores=scores,
        title=capture_title(capture, f"Top-{k} next-token candidates per step ({label})"),
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


def default_position(capture: Capture) -> int:
    """The token a token-attention view starts on: the first generated one (the last, if none was)."""
    return capture.prompt_len if capture.num_steps else capture.seq_len - 1


def token_attention_data(capture: Capture, position: int | None = None, head: int | None = None) -> TokenAttentionData:
    """Where the token at ``position`` looks, per layer: mean over heads, or one ``head``.

    ``position`` counts from 0 over prompt and generated tokens (negative: from the end);
    ``None`` is :func:`default_position`.
    """
    att = _attention(capture)
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
        matrix=_to_numpy(strip)[:, : pos + 1],
        position=pos,
        tokens=list(capture.tokens[: pos + 1]),
        prompt_len=capture.prompt_len,
        description=how,
        title=capture_title(capture, what),
    )


# --------------------------------------------------------------------------- corpus
@dataclass(frozen=True)
class CorpusData:
    """``values[metric][group]``: the non-missing values of ``metric`` in each group."""

    by: str
    metrics: list[str]
    groups: list[str]
    counts: dict[str, int]
    values: dict[str, dict[str, np.ndarray]]
    title: str

    def metric_label(self, metric: str) -> str:
        return METRIC_LABELS.get(metric, metric)


NO_LABEL = "(none)"


def _group_keys(col: pd.Series) -> pd.Series:
    """Label of every row as a string; rows without one (the last turn has no response) are ``(none)``."""
    return col.astype(object).where(col.notna(), NO_LABEL).astype(str)


def _group_order(by: str, keys: pd.Series) -> list[str]:
    """DailyDialog's label order (inform, question, ...; no emotion, anger, ...), then others sorted,
    ``(none)`` last: the rows of ``inspector stats``."""
    from inspector.data.dailydialog import ACT_NAMES, EMOTION_NAMES

    present = set(keys)
    names = list((ACT_NAMES if by.endswith("act") else EMOTION_NAMES).values())
    known = [n for n in names if n in present]
    rest = sorted(present - set(names) - {NO_LABEL})
    return known + rest + ([NO_LABEL] if NO_LABEL in present else [])


def corpus_data(summary: pd.DataFrame, by: str = "emotion", metrics: Sequence[str] | None = None) -> CorpusData:
    """Group a run summary's per-turn metrics by ``by``; missing columns raise ``ValueError``.

    The title flags random weights when ``summary.attrs["random_weights"]`` (set by
    :func:`inspector.plots.load_source`) or a ``random_weights`` column says so.
    """
    import pandas as pd

    if not isinstance(summary, pd.DataFrame):
        raise ValueError(f"a corpus figure needs a run summary DataFrame, got {type(summary).__name__}")
    if by not in GROUP_COLUMNS:
        raise ValueError(f"cannot group by {by!r}; choose one of {list(GROUP_COLUMNS)}")
    if isinstance(metrics, str):
        metrics = [m.strip() for m in metrics.split(",") if m.strip()]
    if metrics is None:
        required = [by, *_REQUIRED_DEFAULT_METRICS]
        chosen = list(_REQUIRED_DEFAULT_METRICS) + [
            m
            for m in DEFAULT_METRICS
            if m not in _REQUIRED_DEFAULT_METRICS and m in summary.columns and summary[m].notna().any()
        ]
    else:
        if not metrics:
            raise ValueError("name at least one metric")
        chosen = list(dict.fromkeys(metrics))
        required = [by, *chosen]
    missing = [c for c in required if c not in summary.columns]
    if missing:
        raise ValueError(
            f"the run summary lacks column(s) {missing} needed for this figure; "
            f"it has {list(summary.columns)}"
        )
    for m in chosen:
        if not pd.api.types.is_numeric_dtype(summary[m]) or pd.api.types.is_bool_dtype(summary[m]):
            raise ValueError(f"metric column {m!r} is not numeric ({summary[m].dtype})")
    if len(summary) == 0:
        raise ValueError("the run summary has no rows")
    keys = _group_keys(summary[by])
    groups = _group_order(by, keys)
    rows = {g: (keys == g).to_numpy() for g in groups}
    counts = {g: int(rows[g].sum()) for g in groups}
    values = {
        m: {g: pd.to_numeric(summary.loc[rows[g], m]).dropna().to_numpy(dtype=np.float64) for g in groups}
        for m in chosen
    }
    what = f"Per-turn metrics by {by.replace('_', ' ')} ({len(summary)} turns)"
    random = bool(summary.attrs.get("random_weights", False))
    if "random_weights" in summary.columns:
        random = random or bool(summary["random_weights"].fillna(False).astype(bool).any())
    model = str(summary.attrs.get("model") or "")
    if random:
        what += f"\n{model + ': ' if model else ''}RANDOM WEIGHTS (not real GPT-2)"
    elif model:
        what += f"\n{model}"
    return CorpusData(by=by, metrics=chosen, groups=groups, counts=counts, values=values, title=what)


# --------------------------------------------------------------------------- coloured text
@dataclass(frozen=True)
class TextToken:
    """One token of the coloured text; ``value`` is what its colour shows (generated tokens only).

    ``tip``: the top alternatives as ``(label, probability, is_chosen)``; ``prob``,
    ``rank`` and ``entropy`` describe the chosen token's step under the raw logits.
    """

    text: str
    generated: bool
    value: float | None
    colour: str | None
    ink: str
    tip: list[tuple[str, float, bool]]
    prob: float = float("nan")
    rank: int = 0
    entropy: float = float("nan")


@dataclass(frozen=True)
class TextData:
    tokens: list[TextToken]
    color_by: str
    legend: str
    vmin: float
    vmax: float
    cmap: str
    title: str


TEXT_CMAP = "YlOrRd"


def _rgba_hex(rgba: Sequence[float]) -> str:
    return "#{:02x}{:02x}{:02x}".format(*(round(255 * c) for c in rgba[:3]))


def _ink(rgba: Sequence[float]) -> str:
    r, g, b = rgba[:3]
    return "#000000" if 0.299 * r + 0.587 * g + 0.114 * b > 0.55 else "#ffffff"


def text_scale(color_by: str, values: np.ndarray) -> tuple[float, float, str]:
    if color_by == "prob":
        return 0.0, 1.0, "probability of the chosen token (red: surprising)"
    vmax = float(values.max()) if values.size and float(values.max()) > 0 else 1.0
    return 0.0, vmax, "entropy of the next-token distribution, nats (red: uncertain)"


def colour_of(color_by: str, value: float, vmin: float, vmax: float) -> tuple[float, float, float, float]:
    """Colour of one value: red means surprising (low probability) or uncertain (high entropy)."""
    from matplotlib import colormaps

    frac = (value - vmin) / (vmax - vmin) if vmax > vmin else 0.0
    frac = min(max(frac, 0.0), 1.0)
    if color_by == "prob":
        frac = 1.0 - frac
    # Stay off the darkest end so black text remains readable on most cells.
    return tuple(colormaps[TEXT_CMAP](0.05 + 0.85 * frac))


def text_data(capture: Capture, color_by: str = "prob", alternatives: int = 5) -> TextData:
    """The prompt (uncoloured) and the generated tokens coloured by probability or entropy."""
    if color_by not in COLOR_BY:
        raise ValueError(f"unknown color_by {color_by!r}; choose one of {list(COLOR_BY)}")
    values = (_to_numpy(capture.chosen_probs) if color_by == "prob" else _to_numpy(capture.raw.entropy)).astype(
        np.float64
    )
    vmin, vmax, legend = text_scale(color_by, values)
    out: list[TextToken] = [
        TextToken(text=t, generated=False, value=None, colour=None, ink="#666666", tip=[])
        for t in capture.tokens[: capture.prompt_len]
    ]
    probs = _to_numpy(capture.chosen_probs)
    entropy = _to_numpy(capture.raw.entropy)
    ranks = capture.raw.chosen_rank.tolist()
    for i, tok in enumerate(capture.generated_tokens):
        rgba = colour_of(color_by, float(values[i]), vmin, vmax)
        chosen = int(capture.generated_ids[i])
        tip = [
            (capture.label(tid), math.exp(lp), tid == chosen)
            for tid, lp in zip(
                capture.raw.topk_ids[i, :alternatives].tolist(), capture.raw.topk_logprobs[i, :alternatives].tolist()
            )
        ]
        out.append(
            TextToken(text=tok, generated=True, value=float(values[i]), colour=_rgba_hex(rgba), ink=_ink(rgba), tip=tip,
                      prob=float(probs[i]), rank=int(ranks[i]), entropy=float(entropy[i]))
        )
    what = "Generated text coloured by " + ("chosen-token probability" if color_by == "prob" else "entropy")
    return TextData(
        tokens=out,
        color_by=color_by,
        legend=legend,
        vmin=vmin,
        vmax=vmax,
        cmap=TEXT_CMAP,
        title=capture_title(capture, what),
    )


def char_width(text: str) -> int:
    """Monospace cells a string takes (wide East Asian characters take two)."""
    return sum(2 if unicodedata.east_asian_width(c) in "WF" else 1 for c in text)


# Every rule is scoped to .insp-text: the page may be embedded in another (the dashboard's st.html).
_HTML_STYLE = """
.insp-text { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; color: #222; }
.insp-text h1 { font-size: 1.05em; font-weight: 600; margin: 0 0 0.8em 0; }
.insp-text .insp-body { font-family: ui-monospace, "DejaVu Sans Mono", Menlo, Consolas, monospace;
        font-size: 15px; line-height: 1.9; white-space: pre-wrap; overflow-wrap: anywhere; max-width: 60em; }
.insp-text .insp-prompt { color: #666; }
.insp-text .insp-tok { border-radius: 3px; padding: 1px 0; position: relative; }
.insp-text .insp-tip { display: none; position: absolute; left: 0; top: 1.7em; z-index: 10; background: #fff;
        color: #222; border: 1px solid #aaa; border-radius: 4px; padding: 4px 8px; white-space: pre;
        font-size: 13px; line-height: 1.4; box-shadow: 0 2px 6px rgba(0,0,0,.2); }
.insp-text .insp-tok:hover .insp-tip { display: block; }
.insp-text .insp-tok:hover { outline: 2px solid #333; }
.insp-text .insp-legend { margin-top: 1.5em; font-size: 13px; }
.insp-text .insp-bar { display: inline-block; width: 240px; height: 12px; vertical-align: middle;
        margin: 0 0.5em; border: 1px solid #999; }
"""


def _legend_gradient(data: TextData, stops: int = 11) -> str:
    cols = [
        _rgba_hex(colour_of(data.color_by, data.vmin + (data.vmax - data.vmin) * i / (stops - 1), data.vmin, data.vmax))
        for i in range(stops)
    ]
    return f"linear-gradient(to right, {', '.join(cols)})"


def _step_summary(tok: TextToken) -> str:
    return f"p = {format_prob(tok.prob)} (rank {tok.rank}), entropy {tok.entropy:.3f} nats"


def text_document(data: TextData, tooltips: bool) -> str:
    """A self-contained HTML page of the coloured text (no scripts, no external resources).

    With ``tooltips`` each generated token shows its top alternatives on hover
    (CSS only); without, a plain ``title`` gives its probability, rank and entropy.
    All styles are scoped to the ``insp-text`` wrapper, so the page can be embedded.
    """
    parts: list[str] = []
    prompt_open = False
    for tok in data.tokens:
        text = html.escape(escape_controls(tok.text.replace("\r", ""), keep="\n\t"))
        if not tok.generated:
            if not prompt_open:
                parts.append('<span class="insp-prompt">')
                prompt_open = True
            parts.append(text)
            continue
        if prompt_open:
            parts.append("</span>")
            prompt_open = False
        shown = text
        if tok.text.strip() == "":
            # Blank tokens (spaces, line breaks) still need a visible cell to colour.
            shown = html.escape(display_token(tok.text)) + ("\n" if "\n" in tok.text else "")
        style = f"background:{tok.colour};color:{tok.ink}"
        if tooltips:
            rows = [f"{html.escape(quoted_token(tok.text))}: {_step_summary(tok)}", "top alternatives:"]
            for cand, prob, is_chosen in tok.tip:
                line = f"{format_prob(prob):>8}  {html.escape(quoted_token(cand))}"
                rows.append(f"<b>{line}  ← chosen</b>" if is_chosen else line)
            tip = '<span class="insp-tip">' + "\n".join(rows) + "</span>"
            parts.append(f'<span class="insp-tok" style="{style}">{shown}{tip}</span>')
        else:
            title = html.escape(_step_summary(tok))
            parts.append(f'<span class="insp-tok" style="{style}" title="{title}">{shown}</span>')
    if prompt_open:
        parts.append("</span>")
    lo, hi = (f"{data.vmin:.2f}", f"{data.vmax:.2f}")
    legend = (
        f'<div class="insp-legend">{html.escape(data.legend)}: {lo}<span class="insp-bar" '
        f'style="background:{_legend_gradient(data)}"></span>{hi}'
        + ("<br>Hover a generated token to see the top alternatives." if tooltips else "")
        + "<br>Grey: prompt.</div>"
    )
    title = "<br>".join(html.escape(line) for line in data.title.split("\n"))
    plain_title = html.escape(data.title.replace("\n", " — "))
    return (
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n"
        f"<title>{plain_title}</title>\n<style>{_HTML_STYLE}</style>\n</head>\n<body>\n"
        f"<div class=\"insp-text\">\n<h1>{title}</h1>\n<div class=\"insp-body\">{''.join(parts)}</div>\n{legend}\n"
        "</div>\n</body>\n</html>\n"
    )


def figure_size(
    n_cols: float,
    n_rows: float,
    per_col: float,
    per_row: float,
    base: tuple[float, float],
    limit: tuple[float, float] = (22.0, 22.0),
) -> tuple[float, float]:
    """A figure size (inches) growing with the data, between ``base`` and ``limit``."""
    w = min(max(base[0], n_cols * per_col), limit[0])
    h = min(max(base[1], n_rows * per_row), limit[1])
    return float(w), float(h)
